//! Raw (and ISO) images: bytes pass straight through in order; the writer finds the holes.

use std::io::Read;

use bytes::Bytes;
use crossbeam_channel::Sender;

use cdi_formats::Format;

use super::layers::read_error;
use super::{DecodeConfig, read_full};
use crate::error::Error;
use crate::sink::writer::WriteOp;

const BLOCK: usize = 1 << 20;

/// Streams `input` to the writer; returns the image size.
pub(crate) fn stream(
    mut input: Box<dyn Read + Send>,
    cfg: &DecodeConfig,
    out: &Sender<WriteOp>,
    layers: &[Format],
) -> Result<u64, Error> {
    let mut offset = 0u64;
    loop {
        let mut buf = vec![0u8; BLOCK];
        let n = read_full(&mut input, &mut buf).map_err(|e| read_error(layers, e))?;
        if n == 0 {
            return Ok(offset);
        }
        if let Some(capacity) = cfg.capacity
            && offset + n as u64 > capacity
        {
            return Err(Error::TooLarge {
                needed: offset + n as u64,
                capacity,
            });
        }
        buf.truncate(n);
        out.send(WriteOp {
            offset,
            bytes: Bytes::from(buf),
        })
        .map_err(|_| Error::Cancelled)?;
        offset += n as u64;
    }
}
