//! cdi-rs's own clone stream: what `cdi-cloner` sends to the upload server of the target claim
//! (the layout is in [`wire`]). Sparse (only data frames travel, holes and zero granules never
//! do), self-checking (every frame is hashed and the end record carries the stream's digest,
//! verified before the target is committed) and cut into frames of at most 1 MiB so that a
//! sender resumes at a frame boundary. Never detected from magic bytes: the data path decodes
//! it only when the caller says the bytes are a clone stream.

mod error;
pub mod limits;
pub mod wire;

use bytes::Bytes;

use crate::decoder::limits::MAX_VIRTUAL_SIZE;
use crate::decoder::{DecodeError, Decoder, DecoderSpec, DecoderStats, OpenContext, Output};
use crate::detect::Format;
use crate::fields::{le_u32, le_u64};

pub use error::CloneStreamError;
use limits::{MAX_FRAME_LEN, MAX_FRAMES};
use wire::{
    END_PAYLOAD_LEN, FrameHasher, HEADER_LEN, KIND_DATA, KIND_END, MAGIC, RECORD_HEAD_LEN,
    StreamDigest, VERSION, hex,
};

/// How the data path makes a clone stream decoder (only ever chosen by the caller).
pub const SPEC: DecoderSpec = DecoderSpec {
    format: Format::CloneStream,
    head_len: |_| Ok(HEADER_LEN),
    open,
};

/// A validated header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The source's size in bytes: the target must hold at least this much.
    pub virtual_size: u64,
}

impl Header {
    pub fn parse(b: &[u8]) -> Result<Header, CloneStreamError> {
        if b.len() < HEADER_LEN {
            return Err(CloneStreamError::MalformedHeader(format!(
                "{} bytes, a header has {HEADER_LEN}",
                b.len()
            )));
        }
        if b[..8] != MAGIC {
            return Err(CloneStreamError::BadMagic);
        }
        let version = le_u32(b, 8);
        if version != VERSION {
            return Err(CloneStreamError::UnsupportedVersion(version, VERSION));
        }
        let header_len = le_u32(b, 12);
        if header_len as usize != HEADER_LEN {
            return Err(CloneStreamError::MalformedHeader(format!(
                "header length {header_len}, not {HEADER_LEN}"
            )));
        }
        let virtual_size = le_u64(b, 16);
        if virtual_size > MAX_VIRTUAL_SIZE {
            return Err(CloneStreamError::MalformedHeader(format!(
                "source size {virtual_size} exceeds the limit of {MAX_VIRTUAL_SIZE} bytes"
            )));
        }
        if le_u64(b, 24) != 0 {
            return Err(CloneStreamError::MalformedHeader(
                "reserved field is not zero".into(),
            ));
        }
        Ok(Header { virtual_size })
    }
}

fn open(head: &[u8], _ctx: OpenContext) -> Result<Box<dyn Decoder>, DecodeError> {
    let header = Header::parse(head)?;
    let mut raw = [0u8; HEADER_LEN];
    raw.copy_from_slice(&head[..HEADER_LEN]);
    Ok(Box::new(CloneStreamDecoder::new(header, &raw)))
}

/// Where the decoder is in the stream.
#[derive(Debug)]
enum State {
    /// Skipping the header (already parsed at open).
    Header,
    /// Gathering a record's head.
    RecordHead {
        buf: [u8; RECORD_HEAD_LEN],
        have: usize,
    },
    /// Inside a data frame.
    Data {
        guest: u64,
        remaining: u32,
        len: u32,
        /// Boxed: a CRC state is large beside the other states.
        hasher: Box<FrameHasher>,
    },
    /// Gathering the end record's payload.
    End {
        buf: [u8; END_PAYLOAD_LEN],
        have: usize,
    },
    /// The end record checked out; nothing may follow.
    Done,
}

/// The streaming decoder: see the module documentation.
#[derive(Debug)]
pub struct CloneStreamDecoder {
    header: Header,
    state: State,
    /// Stream bytes consumed.
    pos: u64,
    /// Where the previous frame ended on the disk.
    previous_end: u64,
    digest: StreamDigest,
}

impl CloneStreamDecoder {
    pub fn new(header: Header, raw: &[u8; HEADER_LEN]) -> CloneStreamDecoder {
        CloneStreamDecoder {
            header,
            state: State::Header,
            pos: 0,
            previous_end: 0,
            digest: StreamDigest::new(raw),
        }
    }

    /// Starts the record whose head is `h`, which began at stream byte `at`.
    fn record(&mut self, h: &[u8; RECORD_HEAD_LEN], at: u64) -> Result<State, CloneStreamError> {
        let kind = le_u32(h, 0);
        let len = le_u32(h, 4);
        let offset = le_u64(h, 8);
        match kind {
            KIND_DATA => {
                if len == 0 || len > MAX_FRAME_LEN {
                    return Err(CloneStreamError::FrameLength {
                        at,
                        len,
                        max: MAX_FRAME_LEN,
                    });
                }
                if offset < self.previous_end {
                    return Err(CloneStreamError::Unordered {
                        at,
                        offset,
                        len,
                        previous_end: self.previous_end,
                    });
                }
                let end = offset.saturating_add(u64::from(len));
                if end > self.header.virtual_size {
                    return Err(CloneStreamError::BeyondDisk {
                        at,
                        end,
                        size: self.header.virtual_size,
                    });
                }
                if self.digest.frames >= MAX_FRAMES {
                    return Err(CloneStreamError::TooManyFrames(MAX_FRAMES));
                }
                Ok(State::Data {
                    guest: offset,
                    remaining: len,
                    len,
                    hasher: Box::new(FrameHasher::new(offset, len)),
                })
            }
            KIND_END if len as usize == END_PAYLOAD_LEN && offset == 0 => Ok(State::End {
                buf: [0; END_PAYLOAD_LEN],
                have: 0,
            }),
            KIND_END => Err(CloneStreamError::UnknownRecord { at, kind }),
            _ => Err(CloneStreamError::UnknownRecord { at, kind }),
        }
    }

    fn check_end(&self, p: &[u8; END_PAYLOAD_LEN]) -> Result<(), CloneStreamError> {
        let frames = le_u64(p, 0);
        let bytes = le_u64(p, 8);
        if frames != self.digest.frames || bytes != self.digest.data_bytes {
            return Err(CloneStreamError::CountMismatch {
                expected_frames: frames,
                expected_bytes: bytes,
                frames: self.digest.frames,
                bytes: self.digest.data_bytes,
            });
        }
        let actual = self.digest.clone().finish();
        if p[16..48] != actual {
            return Err(CloneStreamError::DigestMismatch {
                expected: hex(&p[16..48]),
                actual: hex(&actual),
            });
        }
        Ok(())
    }

    fn step(&mut self, bytes: &mut Bytes, out: &mut dyn Output) -> Result<(), DecodeError> {
        match &mut self.state {
            State::Header => {
                let skip = (HEADER_LEN as u64 - self.pos).min(bytes.len() as u64) as usize;
                let _ = bytes.split_to(skip);
                self.pos += skip as u64;
                if self.pos == HEADER_LEN as u64 {
                    self.state = State::RecordHead {
                        buf: [0; RECORD_HEAD_LEN],
                        have: 0,
                    };
                }
            }
            State::RecordHead { buf, have } => {
                let take = (RECORD_HEAD_LEN - *have).min(bytes.len());
                buf[*have..*have + take].copy_from_slice(&bytes.split_to(take));
                *have += take;
                self.pos += take as u64;
                if *have == RECORD_HEAD_LEN {
                    let head = *buf;
                    self.state = self.record(&head, self.pos - RECORD_HEAD_LEN as u64)?;
                }
            }
            State::Data {
                guest,
                remaining,
                len,
                hasher,
            } => {
                let take = (*remaining as usize).min(bytes.len());
                let piece = bytes.split_to(take);
                hasher.update(&piece);
                let at = *guest;
                *guest += take as u64;
                *remaining -= take as u32;
                self.pos += take as u64;
                let finished = *remaining == 0;
                let (end, len) = (*guest, *len);
                out.data(at, piece)?;
                if finished {
                    let State::Data { hasher, .. } = std::mem::replace(
                        &mut self.state,
                        State::RecordHead {
                            buf: [0; RECORD_HEAD_LEN],
                            have: 0,
                        },
                    ) else {
                        unreachable!("matched Data above");
                    };
                    self.digest.add(&hasher.finish(), len);
                    self.previous_end = end;
                }
            }
            State::End { buf, have } => {
                let take = (END_PAYLOAD_LEN - *have).min(bytes.len());
                buf[*have..*have + take].copy_from_slice(&bytes.split_to(take));
                *have += take;
                self.pos += take as u64;
                if *have == END_PAYLOAD_LEN {
                    let payload = *buf;
                    self.check_end(&payload)?;
                    self.state = State::Done;
                }
            }
            State::Done => {
                return Err(CloneStreamError::TrailingBytes { at: self.pos }.into());
            }
        }
        Ok(())
    }
}

impl Decoder for CloneStreamDecoder {
    fn virtual_size(&self) -> Option<u64> {
        Some(self.header.virtual_size)
    }

    fn block_align(&self) -> usize {
        // Frames start anywhere in the stream; pieces of any size are sliced, never copied.
        1
    }

    fn feed(&mut self, mut bytes: Bytes, out: &mut dyn Output) -> Result<(), DecodeError> {
        while !bytes.is_empty() {
            self.step(&mut bytes, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut dyn Output) -> Result<DecoderStats, DecodeError> {
        match self.state {
            State::Done => Ok(DecoderStats::default()),
            _ => Err(CloneStreamError::Truncated { at: self.pos }.into()),
        }
    }
}

#[cfg(test)]
mod tests;
