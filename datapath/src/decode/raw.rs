//! Raw (and ISO) images: bytes pass straight through in order; the writer finds the holes.

use std::io::Read;

use crossbeam_channel::Sender;

use cdi_formats::Format;

use super::DecodeConfig;
use super::layers::read_error;
use crate::buffer::BufferPool;
use crate::error::Error;
use crate::sink::HOLE_GRANULE;
use crate::sink::writer::WriteOp;

const BLOCK: usize = 1 << 20;
/// Decompressed blocks kept for reuse: enough for the writer's queue and its current run.
const POOLED_BLOCKS: usize = 24;
/// Largest write handed on from a chunk as it arrived.
const MAX_WRITE: usize = 4 << 20;

/// Streams `input` to the writer; returns the image size.
pub(crate) fn stream(
    mut input: Box<dyn Read + Send>,
    cfg: &DecodeConfig,
    out: &Sender<WriteOp>,
    layers: &[Format],
) -> Result<u64, Error> {
    let pool = BufferPool::new(BLOCK, POOLED_BLOCKS);
    let mut offset = 0u64;
    loop {
        let Some(bytes) = pool
            .read_from(&mut input)
            .map_err(|e| read_error(layers, e))?
        else {
            return Ok(offset);
        };
        let n = bytes.len();
        if let Some(capacity) = cfg.capacity
            && offset + n as u64 > capacity
        {
            return Err(Error::TooLarge {
                needed: offset + n as u64,
                capacity,
            });
        }
        out.send(WriteOp { offset, bytes })
            .map_err(|_| Error::Cancelled)?;
        offset += n as u64;
    }
}

/// Streams chunks as they arrived (no decompression layer), cut at hole-granule boundaries so
/// the writer sees every granule whole: a copy only for the few bytes around a chunk boundary
/// that is not aligned (network sources).
pub(crate) fn stream_chunks(
    mut input: super::ChannelReader,
    cfg: &DecodeConfig,
    out: &Sender<WriteOp>,
) -> Result<u64, Error> {
    let mut offset = 0u64;
    while let Some(bytes) = input
        .next_block(HOLE_GRANULE, MAX_WRITE)
        .map_err(Error::Source)?
    {
        let end = offset + bytes.len() as u64;
        if let Some(capacity) = cfg.capacity
            && end > capacity
        {
            return Err(Error::TooLarge {
                needed: end,
                capacity,
            });
        }
        out.send(WriteOp { offset, bytes })
            .map_err(|_| Error::Cancelled)?;
        offset = end;
    }
    Ok(offset)
}
