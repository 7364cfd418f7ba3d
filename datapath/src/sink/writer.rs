//! The stage in front of every sink: checks bounds, skips all-zero granules, coalesces the rest
//! into as few writes as possible, and records what was written.

use std::sync::Arc;

use bytes::Bytes;
use cdi_formats::zero::is_zero;

use super::{HOLE_GRANULE, RangeSet, Sink};
use crate::error::Error;
use crate::progress::Progress;

/// One unit of work for the writer.
#[derive(Debug)]
pub(crate) struct WriteOp {
    pub offset: u64,
    pub bytes: Bytes,
}

pub(crate) struct Writer {
    pub sink: Box<dyn Sink>,
    pub written: RangeSet,
    capacity: Option<u64>,
    progress: Arc<Progress>,
}

impl Writer {
    pub fn new(sink: Box<dyn Sink>, progress: Arc<Progress>) -> Self {
        let capacity = sink.capacity();
        Writer {
            sink,
            written: RangeSet::new(),
            capacity,
            progress,
        }
    }

    pub fn apply(&mut self, op: WriteOp) -> Result<(), Error> {
        let WriteOp { offset, bytes } = op;
        let end = offset + bytes.len() as u64;
        if let Some(capacity) = self.capacity
            && end > capacity
        {
            return Err(Error::TooLarge {
                needed: end,
                capacity,
            });
        }
        let g = HOLE_GRANULE as u64;
        let mut at = 0usize;
        let mut run_start: Option<usize> = None;
        let mut holes = 0u64;
        while at < bytes.len() {
            // Granules are aligned to the image, not to this buffer.
            let abs = offset + at as u64;
            let next = (((abs / g) + 1) * g - offset) as usize;
            let next = next.min(bytes.len());
            let zero = next - at == HOLE_GRANULE && is_zero(&bytes[at..next]);
            match (zero, run_start) {
                (true, Some(s)) => {
                    self.write(offset, &bytes, s, at)?;
                    run_start = None;
                    holes += (next - at) as u64;
                }
                (true, None) => holes += (next - at) as u64,
                (false, None) => run_start = Some(at),
                (false, Some(_)) => {}
            }
            at = next;
        }
        if let Some(s) = run_start {
            self.write(offset, &bytes, s, bytes.len())?;
        }
        self.progress.add_holes(holes);
        Ok(())
    }

    fn write(&mut self, offset: u64, bytes: &[u8], from: usize, to: usize) -> Result<(), Error> {
        let at = offset + from as u64;
        self.sink.write_at(at, &bytes[from..to])?;
        self.written.insert(at, at + (to - from) as u64);
        self.progress.add_written((to - from) as u64);
        Ok(())
    }
}
