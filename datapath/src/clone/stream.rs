//! Produces the clone stream from a [`CloneSource`], piece by piece, from its start or from
//! any window boundary ([`Checkpoint`]), and from there to any later byte ([`Producer::skip_to`]):
//! a resumed sender regenerates exactly the bytes the server has not taken yet. Memory: one
//! window (1 MiB) at a time, read into recycled page-aligned buffers.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use cdi_formats::clonestream::wire::{
    FrameHasher, HEADER_LEN, StreamDigest, encode_end, encode_frame_head, encode_header,
};

use super::plan::{WINDOW, data_runs, window_end};
use super::source::CloneSource;
use crate::buffer::BufferPool;
use crate::error::Error;

/// Window buffers kept for reuse (those still held by the sender's queue come back later).
const POOLED_WINDOWS: usize = 8;

/// A place in the stream from which the rest can be regenerated: a window boundary, with the
/// stream digest's state there.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Bytes of the stream before this point.
    pub stream_offset: u64,
    /// Where the next window starts looking for data on the disk.
    disk_pos: u64,
    digest: StreamDigest,
}

impl Checkpoint {
    /// How far into the disk the stream has come at this point.
    pub fn disk_position(&self) -> u64 {
        self.disk_pos
    }

    /// The start of the stream for `source`.
    pub fn start(source: &CloneSource) -> Checkpoint {
        Checkpoint {
            stream_offset: 0,
            disk_pos: 0,
            digest: StreamDigest::new(&encode_header(source.size())),
        }
    }
}

/// Generates the stream's bytes.
#[derive(Debug)]
pub struct Producer {
    source: Arc<CloneSource>,
    pool: BufferPool,
    at: Checkpoint,
    /// Pieces of the current window not handed out yet.
    pending: VecDeque<Bytes>,
    /// Stream bytes handed out (or skipped).
    offset: u64,
    ended: bool,
}

impl Producer {
    /// A producer that continues from `checkpoint`.
    pub fn new(source: Arc<CloneSource>, checkpoint: Checkpoint) -> Producer {
        let mut pending = VecDeque::new();
        let offset = checkpoint.stream_offset;
        let mut at = checkpoint;
        if offset == 0 {
            pending.push_back(Bytes::copy_from_slice(&encode_header(source.size())));
            at.stream_offset = HEADER_LEN as u64;
        }
        Producer {
            source,
            pool: BufferPool::new(WINDOW as usize, POOLED_WINDOWS),
            offset,
            at,
            pending,
            ended: false,
        }
    }

    /// Stream bytes handed out so far (from the start of the stream).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Where the stream can be regenerated from, when the producer stands at a window
    /// boundary (nothing of a window is pending), else `None`.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        (self.pending.is_empty() && !self.ended).then(|| self.at.clone())
    }

    /// The next piece of the stream, or `None` after the end record.
    pub fn next_piece(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            if let Some(piece) = self.pending.pop_front() {
                self.offset += piece.len() as u64;
                return Ok(Some(piece));
            }
            if self.ended {
                return Ok(None);
            }
            self.next_window()?;
        }
    }

    /// Discards pieces until the stream is at `target` (not before the current offset).
    pub fn skip_to(&mut self, target: u64) -> Result<(), Error> {
        while self.offset < target {
            let Some(mut piece) = self.next_piece()? else {
                return Err(Error::Config(format!(
                    "the server has {target} bytes of the clone stream but it is only {} bytes \
                     long: the source changed since that upload began",
                    self.offset
                )));
            };
            let over = self.offset.saturating_sub(target) as usize;
            if over > 0 {
                let keep = piece.split_off(piece.len() - over);
                self.offset -= over as u64;
                self.pending.push_front(keep);
            }
        }
        Ok(())
    }

    /// Queues the next window's frames, or the end record when no data remains.
    fn next_window(&mut self) -> Result<(), Error> {
        let Some((start, extent_end)) = self.source.next_extent(self.at.disk_pos)? else {
            self.source.check_unchanged()?;
            self.pending
                .push_back(Bytes::copy_from_slice(&encode_end(&self.at.digest)));
            self.ended = true;
            return Ok(());
        };
        let end = window_end(start, extent_end);
        let len = (end - start) as usize;
        let mut buf = self.pool.buffer();
        buf.fill_with(len, |out| self.source.read_exact_at(out, start))?;
        let window = self.pool.freeze(buf);
        let mut stream_len = 0u64;
        for run in data_runs(start, &window) {
            let offset = start + run.start as u64;
            let data = window.slice(run);
            let flen = data.len() as u32;
            let mut hasher = FrameHasher::new(offset, flen);
            hasher.update(&data);
            self.at.digest.add(&hasher.finish(), flen);
            let head = encode_frame_head(offset, flen);
            stream_len += (head.len() + data.len()) as u64;
            self.pending.push_back(Bytes::copy_from_slice(&head));
            self.pending.push_back(data);
        }
        self.at.disk_pos = end;
        self.at.stream_offset += stream_len;
        Ok(())
    }
}
