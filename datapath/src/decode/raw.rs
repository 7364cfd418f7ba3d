//! Raw (and ISO) images: bytes pass straight through in order; the writer finds the holes.
//!
//! Two formats keep their magic in the last sector, where a raw copy would not look: a fixed
//! vhd (the disk, then a 512-byte footer) and Apple's dmg (a `koly` trailer). With random
//! access (a local file) that sector is read before anything else: a fixed vhd goes to its
//! decoder, a dmg is refused. Over a stream the last sector is held back until the end: a valid
//! fixed-vhd footer is then dropped (the disk is what came before it), a dmg trailer fails the
//! import (its target is removed), anything else is written as the rest of the disk.

use std::collections::VecDeque;

use bytes::Bytes;
use crossbeam_channel::Sender;

use cdi_formats::{Format, TAIL_LEN, detect_tail, vhd};

use super::layers::read_error;
use super::{DecodeConfig, DecodeReport, Direct, FormatChoice, driver, input::Input};
use crate::buffer::BufferPool;
use crate::error::Error;
use crate::sink::HOLE_GRANULE;
use crate::sink::writer::WriteOp;

const BLOCK: usize = 1 << 20;
/// Decompressed blocks kept for reuse: enough for the writer's queue and its current run.
const POOLED_BLOCKS: usize = 24;
/// Largest write handed on from a chunk as it arrived.
const MAX_WRITE: usize = 4 << 20;

/// Streams a raw image; see the module documentation.
pub(crate) fn run(
    input: Input,
    direct: Option<&Direct>,
    cfg: &DecodeConfig,
    out: &Sender<WriteOp>,
    report: &mut DecodeReport,
) -> Result<(), Error> {
    let exact = cfg.format == FormatChoice::Raw;
    let mut tail_known = false;
    if !exact
        && let Some(d) = direct
        && let (Some(len), Some(source)) = (d.len, &d.random_access)
        && len >= TAIL_LEN as u64
    {
        let mut tail = vec![0u8; TAIL_LEN];
        read_exact_at(source.as_ref(), &mut tail, d.base + len - TAIL_LEN as u64)
            .map_err(Error::Source)?;
        match detect_tail(&tail) {
            Some(Format::Vhd) => {
                report.image_format = Some(Format::Vhd);
                let opener = driver::Opener {
                    head_len: &|_| Ok(0),
                    open: &|_, ctx| vhd::open_fixed(&tail, len, ctx),
                };
                return driver::run(&opener, input, direct, cfg, out, report);
            }
            Some(Format::Dmg) => return Err(refuse_dmg()),
            _ => tail_known = true,
        }
    }
    // A raw stream of announced length is the image itself: refuse it before any byte is
    // written when it cannot fit (allowing for a fixed vhd's footer when we cannot look yet).
    if let Some(d) = direct
        && let (Some(len), Some(capacity)) = (d.len, cfg.capacity)
    {
        let footer = if exact || tail_known {
            0
        } else {
            TAIL_LEN as u64
        };
        if len > capacity + footer {
            return Err(Error::TooLarge {
                needed: len,
                capacity,
            });
        }
    }
    let mut sink = Held::new(out, cfg.capacity, !exact && !tail_known);
    match input {
        Input::Chunks(mut r) => {
            while let Some(bytes) = r
                .next_block(HOLE_GRANULE, MAX_WRITE)
                .map_err(Error::Source)?
            {
                sink.push(bytes)?;
            }
        }
        stream => {
            let mut reader = stream.into_reader();
            let pool = BufferPool::new(BLOCK, POOLED_BLOCKS);
            while let Some(bytes) = pool
                .read_from(&mut reader)
                .map_err(|e| read_error(&report.layers, e))?
            {
                sink.push(bytes)?;
            }
        }
    }
    let (size, fixed_vhd) = sink.finish()?;
    if fixed_vhd {
        report.image_format = Some(Format::Vhd);
    }
    report.image_size = size;
    Ok(())
}

fn refuse_dmg() -> Error {
    Error::UnsupportedFormat {
        format: Format::Dmg.name(),
        message: Format::Dmg
            .refusal()
            .unwrap_or("dmg images are not supported"),
    }
}

fn read_exact_at(
    source: &dyn crate::source::ReadAt,
    buf: &mut [u8],
    at: u64,
) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read_at(&mut buf[filled..], at + filled as u64)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    Ok(())
}

/// Sends blocks to the writer, holding back the last sector's worth when the tail must be
/// looked at before it is written.
struct Held<'a> {
    out: &'a Sender<WriteOp>,
    capacity: Option<u64>,
    check_tail: bool,
    blocks: VecDeque<(u64, Bytes)>,
    held: usize,
    offset: u64,
}

impl<'a> Held<'a> {
    fn new(out: &'a Sender<WriteOp>, capacity: Option<u64>, check_tail: bool) -> Self {
        Held {
            out,
            capacity,
            check_tail,
            blocks: VecDeque::new(),
            held: 0,
            offset: 0,
        }
    }

    fn send(&self, offset: u64, bytes: Bytes) -> Result<(), Error> {
        let end = offset + bytes.len() as u64;
        if let Some(capacity) = self.capacity
            && end > capacity
        {
            return Err(Error::TooLarge {
                needed: end,
                capacity,
            });
        }
        self.out
            .send(WriteOp { offset, bytes })
            .map_err(|_| Error::Cancelled)
    }

    fn push(&mut self, bytes: Bytes) -> Result<(), Error> {
        let at = self.offset;
        self.offset += bytes.len() as u64;
        if !self.check_tail {
            return self.send(at, bytes);
        }
        self.held += bytes.len();
        self.blocks.push_back((at, bytes));
        while let Some((_, front)) = self.blocks.front()
            && self.held - front.len() >= TAIL_LEN
        {
            let Some((at, front)) = self.blocks.pop_front() else {
                break;
            };
            self.held -= front.len();
            self.send(at, front)?;
        }
        Ok(())
    }

    /// Looks at the tail (when asked to), writes what belongs to the disk; returns the disk's
    /// size and whether a fixed-vhd footer was dropped.
    fn finish(mut self) -> Result<(u64, bool), Error> {
        let total = self.offset;
        let mut end = total;
        let mut fixed_vhd = false;
        if self.check_tail {
            let mut tail: Vec<u8> = self
                .blocks
                .iter()
                .flat_map(|(_, b)| b.iter().copied())
                .collect();
            let keep = tail.len().min(TAIL_LEN);
            tail.drain(..tail.len() - keep);
            match detect_tail(&tail) {
                Some(Format::Vhd) => {
                    if let Some(size) = vhd::fixed_footer(&tail, total)
                        .map_err(|e| Error::from(cdi_formats::decoder::DecodeError::from(e)))?
                    {
                        end = size;
                        fixed_vhd = true;
                    }
                }
                Some(Format::Dmg) => return Err(refuse_dmg()),
                _ => {}
            }
        }
        for (at, bytes) in std::mem::take(&mut self.blocks) {
            if at < end {
                let n = bytes.len().min((end - at) as usize);
                self.send(at, bytes.slice(..n))?;
            }
        }
        Ok((end, fixed_vhd))
    }
}
