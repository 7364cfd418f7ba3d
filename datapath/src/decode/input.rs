//! Where a decoder's bytes come from: the source's own chunks (no compression around the
//! image), or the output of a decompressor or an archive entry. Either can be peeked at (the
//! bytes stay to be fed) and then read in blocks.

use std::io::Read;

use bytes::{Bytes, BytesMut};

use super::{ChannelReader, read_full};
use crate::buffer::BufferPool;

/// Bytes read per step: a multiple of every block alignment a decoder asks for (512 B to 2 MiB).
pub(crate) const BLOCK: usize = 4 << 20;

/// Decompressed blocks kept for reuse: as many as the writer's queue and run can hold.
const POOLED_BLOCKS: usize = 8;

pub(crate) enum Input {
    /// The source's chunks: blocks are slices of them, without a copy.
    Chunks(ChannelReader),
    /// A reader, read into pooled blocks; `peeked` holds bytes read ahead, read first.
    Stream {
        reader: Box<dyn Read + Send>,
        pool: BufferPool,
        peeked: Bytes,
    },
}

impl Input {
    pub(crate) fn stream(reader: Box<dyn Read + Send>) -> Self {
        Input::Stream {
            reader,
            pool: BufferPool::new(BLOCK, POOLED_BLOCKS),
            peeked: Bytes::new(),
        }
    }

    /// The first `n` bytes not yet read (fewer at the end of the stream); they stay to be read.
    pub(crate) fn peek(&mut self, n: usize) -> std::io::Result<Bytes> {
        match self {
            Input::Chunks(r) => Ok(Bytes::copy_from_slice(r.peek(n)?)),
            Input::Stream { reader, peeked, .. } => {
                if peeked.len() < n {
                    let mut buf = BytesMut::from(&peeked[..]);
                    let have = buf.len();
                    buf.resize(n, 0);
                    let got = read_full(reader.as_mut(), &mut buf[have..])?;
                    buf.truncate(have + got);
                    *peeked = buf.freeze();
                }
                Ok(peeked.slice(..n.min(peeked.len())))
            }
        }
    }

    /// The next block: a whole multiple of `align` bytes (up to [`BLOCK`]) unless the stream
    /// ends; `None` at the end.
    pub(crate) fn next_block(&mut self, align: usize) -> std::io::Result<Option<Bytes>> {
        match self {
            Input::Chunks(r) => r.next_block(align, BLOCK / align * align),
            Input::Stream {
                reader,
                pool,
                peeked,
            } => {
                if peeked.is_empty() {
                    return pool.read_from(reader.as_mut());
                }
                // The peeked bytes (at most a decoder's head, under a block) start the first
                // block, so every block after it stays a whole, aligned pooled buffer.
                let mut buf = pool.buffer();
                let n = buf.extend_from_slice(peeked);
                *peeked = peeked.slice(n..);
                if peeked.is_empty() {
                    buf.fill_from(reader.as_mut())?;
                }
                Ok(Some(pool.freeze(buf)))
            }
        }
    }

    /// The input as a plain reader (peeked bytes first).
    pub(crate) fn into_reader(self) -> Box<dyn Read + Send> {
        match self {
            Input::Chunks(r) => Box::new(r),
            Input::Stream { reader, peeked, .. } if peeked.is_empty() => reader,
            Input::Stream { reader, peeked, .. } => {
                Box::new(std::io::Cursor::new(peeked).chain(reader))
            }
        }
    }
}
