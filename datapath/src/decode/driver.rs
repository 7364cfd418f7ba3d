//! Runs any format's decoder (the contract in `cdi_formats::decoder`): reads its head, opens it
//! with a stash (re-reading a local file, else memory then a spill file), feeds it the stream
//! in blocks, and decodes compressed blocks on a small worker pool while the stream goes on.
//!
//! Data pieces are passed to the writer as they come, except that a piece ending inside a
//! 4 KiB granule of the disk waits for the piece that completes that granule (formats whose
//! blocks sit at sector offsets in the file would otherwise cut every granule that straddles
//! two source chunks, and the writer only skips whole zero granules).

use bytes::{Bytes, BytesMut};
use cdi_formats::decoder::{
    CompressedBlock, DecodeError, Decoder, OpenContext, Output, OutputClosed, Stash,
    decompress_block_into, limits::MAX_HEAD_LEN,
};
use cdi_formats::{DETECT_LEN, Format};
use crossbeam_channel::{Receiver, Sender, bounded};

use super::input::Input;
use super::layers::read_error;
use super::stash::{SourceStash, SpillStash};
use super::{DecodeConfig, DecodeReport, Direct};
use crate::buffer::BufferPool;
use crate::error::Error;
use crate::sink::HOLE_GRANULE;
use crate::sink::writer::WriteOp;

type HeadLen<'a> = dyn Fn(&[u8]) -> Result<usize, DecodeError> + 'a;
type Open<'a> = dyn Fn(&[u8], OpenContext) -> Result<Box<dyn Decoder>, DecodeError> + 'a;

/// How to make the decoder: how many head bytes it needs (from a prefix), and the opener.
pub(crate) struct Opener<'a> {
    pub head_len: &'a HeadLen<'a>,
    pub open: &'a Open<'a>,
}

/// Sends decoded output on; see the module documentation for the granule joining.
struct Outputs<'a> {
    writes: &'a Sender<WriteOp>,
    compressed: &'a Sender<CompressedBlock>,
    capacity: Option<u64>,
    size: Option<u64>,
    /// Bytes of a granule still waiting for the rest of it: where they start in the disk.
    fragment: Option<(u64, BytesMut)>,
    /// Why output stopped, when it was our decision (the decoder then reports `Closed`).
    failure: Option<Error>,
}

impl Outputs<'_> {
    fn send(&mut self, offset: u64, bytes: Bytes) -> Result<(), OutputClosed> {
        if bytes.is_empty() {
            return Ok(());
        }
        let end = offset + bytes.len() as u64;
        if let Some(capacity) = self.capacity
            && end > capacity
        {
            self.failure = Some(Error::TooLarge {
                needed: self.size.unwrap_or(end).max(end),
                capacity,
            });
            return Err(OutputClosed);
        }
        self.writes
            .send(WriteOp { offset, bytes })
            .map_err(|_| OutputClosed)
    }

    fn flush_fragment(&mut self) -> Result<(), OutputClosed> {
        match self.fragment.take() {
            Some((at, bytes)) => self.send(at, bytes.freeze()),
            None => Ok(()),
        }
    }
}

impl Output for Outputs<'_> {
    fn data(&mut self, mut guest: u64, mut bytes: Bytes) -> Result<(), OutputClosed> {
        let g = HOLE_GRANULE as u64;
        if let Some((at, frag)) = self.fragment.as_mut() {
            if *at + frag.len() as u64 == guest {
                let end = *at + frag.len() as u64;
                let take = ((end.next_multiple_of(g) - end) as usize).min(bytes.len());
                frag.extend_from_slice(&bytes[..take]);
                guest += take as u64;
                let _ = bytes.split_to(take);
                if guest.is_multiple_of(g) {
                    self.flush_fragment()?;
                }
                if bytes.is_empty() {
                    return Ok(());
                }
            } else {
                self.flush_fragment()?;
            }
        }
        let end = guest + bytes.len() as u64;
        if !end.is_multiple_of(g) {
            // The tail waits for the rest of its granule (unless it is the whole piece and
            // starts inside a granule too: then it joins what follows the same way).
            let tail_start = (end / g * g).max(guest);
            let tail = bytes.split_off((tail_start - guest) as usize);
            self.send(guest, bytes)?;
            self.fragment = Some((tail_start, BytesMut::from(&tail[..])));
            return Ok(());
        }
        self.send(guest, bytes)
    }

    fn zero(&mut self, _guest: u64, _len: u64) -> Result<(), OutputClosed> {
        // The target reads as zeros wherever nothing is written.
        Ok(())
    }

    fn compressed(&mut self, block: CompressedBlock) -> Result<(), OutputClosed> {
        if let Some(capacity) = self.capacity
            && block.guest_offset + block.guest_len as u64 > capacity
        {
            self.failure = Some(Error::TooLarge {
                needed: self
                    .size
                    .unwrap_or(0)
                    .max(block.guest_offset + block.guest_len as u64),
                capacity,
            });
            return Err(OutputClosed);
        }
        self.compressed.send(block).map_err(|_| OutputClosed)
    }

    fn disk_size(&mut self, size: u64) -> Result<(), OutputClosed> {
        self.size = Some(size);
        if let Some(capacity) = self.capacity
            && size > capacity
        {
            self.failure = Some(Error::TooLarge {
                needed: size,
                capacity,
            });
            return Err(OutputClosed);
        }
        Ok(())
    }
}

/// Decodes `input` with the decoder `opener` makes.
pub(crate) fn run(
    opener: &Opener<'_>,
    mut input: Input,
    direct: Option<&Direct>,
    cfg: &DecodeConfig,
    writes: &Sender<WriteOp>,
    report: &mut DecodeReport,
) -> Result<(), Error> {
    let layers = report.layers.clone();
    let read_err = |e| read_error(&layers, e);
    let prefix = input.peek(DETECT_LEN).map_err(read_err)?;
    let want = (opener.head_len)(&prefix)?.min(MAX_HEAD_LEN);
    let head = input.peek(want).map_err(read_err)?;

    // Memory split: a quarter for mappings, half for the stash, the rest for pipeline buffers.
    let stash: Box<dyn Stash + Send> =
        match direct.and_then(|d| Some((d.random_access.clone()?, d.base))) {
            Some((source, base)) => {
                report.used_random_access = true;
                Box::new(SourceStash::new(source, base))
            }
            None => Box::new(SpillStash::new(cfg.memory_limit / 2, cfg.spill_dir.clone())),
        };
    let ctx = OpenContext {
        image_len: direct.and_then(|d| d.len),
        stash,
        budget: cfg.memory_limit / 4,
    };
    let mut decoder = (opener.open)(&head, ctx)?;
    if let Some(size) = decoder.virtual_size() {
        if let Some(capacity) = cfg.capacity
            && size > capacity
        {
            return Err(Error::TooLarge {
                needed: size,
                capacity,
            });
        }
        report.image_size = size;
    }
    tracing::debug!(?decoder, "Image header accepted.");

    let workers = cfg.threads.max(1);
    let (ctx, crx) = bounded::<CompressedBlock>(workers * 8);
    std::thread::scope(|scope| -> Result<(), Error> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let crx = crx.clone();
                let writes = writes.clone();
                scope.spawn(move || decompress_worker(crx, writes))
            })
            .collect();
        drop(crx);
        let mut out = Outputs {
            writes,
            compressed: &ctx,
            capacity: cfg.capacity,
            size: decoder.virtual_size(),
            fragment: None,
            failure: None,
        };
        let result = feed(decoder.as_mut(), &mut input, &mut out, &layers, report);
        let result = match result {
            Err(Error::Cancelled) => Err(out.failure.take().unwrap_or(Error::Cancelled)),
            r => r,
        };
        drop(out);
        drop(ctx);
        let mut worker_error = None;
        for h in handles {
            if let Err(e) = h.join().unwrap_or(Err(Error::Cancelled)) {
                worker_error.get_or_insert(e);
            }
        }
        match (result, worker_error) {
            // A worker's real error explains a cancelled send on this side.
            (Err(Error::Cancelled), Some(e)) | (Ok(()), Some(e)) => Err(e),
            (r, _) => r,
        }
    })?;
    if let Some(size) = decoder.virtual_size() {
        report.image_size = size;
    }
    Ok(())
}

fn feed(
    decoder: &mut dyn Decoder,
    input: &mut Input,
    out: &mut Outputs<'_>,
    layers: &[Format],
    report: &mut DecodeReport,
) -> Result<(), Error> {
    let align = decoder.block_align().clamp(1, super::input::BLOCK);
    while let Some(block) = input.next_block(align).map_err(|e| read_error(layers, e))? {
        decoder.feed(block, out)?;
    }
    let stats = decoder.finish(out)?;
    out.flush_fragment().map_err(|_| Error::Cancelled)?;
    report.spilled_bytes = stats.spilled_bytes;
    report.qcow2 = stats.qcow2;
    report.decoder = Some(stats);
    Ok(())
}

/// Page-aligned block buffers a decompress worker keeps for reuse (more are made while the
/// writer still holds these).
const WORKER_BUFFERS: usize = 8;

fn decompress_worker(
    jobs: Receiver<CompressedBlock>,
    writes: Sender<WriteOp>,
) -> Result<(), Error> {
    // Blocks are decoded into page-aligned buffers, so a direct-I/O target writes them as
    // they are instead of copying each one.
    let mut pool: Option<BufferPool> = None;
    for job in jobs {
        let pool = match &pool {
            Some(p) if p.capacity() == job.block_size => p,
            _ => pool.insert(BufferPool::new(job.block_size, WORKER_BUFFERS)),
        };
        let mut buf = pool.buffer();
        buf.fill_with(job.block_size, |out| decompress_block_into(&job, out))?;
        let bytes = pool.freeze(buf).slice(..job.guest_len.min(job.block_size));
        writes
            .send(WriteOp {
                offset: job.guest_offset,
                bytes,
            })
            .map_err(|_| Error::Cancelled)?;
    }
    Ok(())
}
