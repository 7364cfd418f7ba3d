//! The stage in front of every sink: checks bounds, skips all-zero granules, hands the rest on
//! (joined into runs of contiguous pieces, even from different chunks, for sinks that ask for
//! them), and records what was written.

use std::sync::Arc;

use bytes::Bytes;
use cdi_formats::zero::is_zero;

use super::direct::MAX_PARTS;
use super::{HOLE_GRANULE, RangeSet, Sink};
use crate::error::Error;
use crate::progress::Progress;

/// One unit of work for the writer.
#[derive(Debug)]
pub(crate) struct WriteOp {
    pub offset: u64,
    pub bytes: Bytes,
}

/// Longest run a sink may ask for ([`Sink::preferred_run`]): a direct write of it is one large
/// request, and it holds on to only a few chunk buffers.
pub(crate) const MAX_RUN: usize = 4 << 20;

/// Run length for page-cache writes: one `pwritev` per source chunk's worth (measured 3%
/// faster than a call per piece on the qcow2 corpus file), short enough that the buffers go
/// back to their pool while still in the caches (4 MiB runs cost a zstd import 7% more CPU).
pub(crate) const BUFFERED_RUN: usize = 1 << 20;

pub(crate) struct Writer {
    pub sink: Box<dyn Sink>,
    pub written: RangeSet,
    capacity: Option<u64>,
    progress: Arc<Progress>,
    /// Contiguous pieces not yet handed to the sink: where they start, and how long they are.
    run: Vec<Bytes>,
    run_offset: u64,
    run_len: usize,
    /// Bytes gathered before a run is handed on (0: every piece at once).
    preferred_run: usize,
}

impl Writer {
    pub fn new(sink: Box<dyn Sink>, progress: Arc<Progress>) -> Self {
        let capacity = sink.capacity();
        let preferred_run = sink.preferred_run().min(MAX_RUN);
        Writer {
            sink,
            written: RangeSet::new(),
            capacity,
            progress,
            run: Vec::new(),
            run_offset: 0,
            run_len: 0,
            preferred_run,
        }
    }

    /// Hands the last run to the sink; call after the last [`Writer::apply`].
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.run.is_empty() {
            return Ok(());
        }
        let (at, len) = (self.run_offset, self.run_len);
        let written = self.sink.write_at(at, &self.run);
        self.run.clear();
        self.run_len = 0;
        written?;
        self.written.insert(at, at + len as u64);
        self.progress.add_written(len as u64);
        Ok(())
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

    /// Adds `bytes[from..to]` to the run, handing the run to the sink first when the piece
    /// does not continue it or would make it too long, and after it once the run is as long as
    /// the sink likes.
    fn write(&mut self, offset: u64, bytes: &Bytes, from: usize, to: usize) -> Result<(), Error> {
        let at = offset + from as u64;
        let len = to - from;
        let continues = self.run_offset + self.run_len as u64 == at;
        let full = self.run_len + len > self.preferred_run || self.run.len() == MAX_PARTS;
        if !self.run.is_empty() && (!continues || full) {
            self.flush()?;
        }
        if self.run.is_empty() {
            self.run_offset = at;
        }
        self.run.push(bytes.slice(from..to));
        self.run_len += len;
        if self.run_len >= self.preferred_run {
            self.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemorySink;

    fn op(offset: u64, fill: u8, len: usize) -> WriteOp {
        WriteOp {
            offset,
            bytes: Bytes::from(vec![fill; len]),
        }
    }

    fn writer(
        run: usize,
    ) -> (
        Writer,
        Arc<std::sync::Mutex<crate::sink::memory::MemoryImage>>,
    ) {
        let (sink, image) = MemorySink::new(None);
        let sink = sink.gathering(run);
        (Writer::new(Box::new(sink), Progress::new()), image)
    }

    #[test]
    fn pieces_go_to_a_sink_that_wants_no_runs_at_once() {
        let (mut w, image) = writer(0);
        for i in 0..4u64 {
            w.apply(op(i * 65536, 1, 65536)).expect("apply");
            assert_eq!(image.lock().expect("image").writes, i as usize + 1);
        }
        w.flush().expect("flush");
        assert_eq!(image.lock().expect("image").writes, 4);
        assert_eq!(w.written.iter().collect::<Vec<_>>(), vec![(0, 4 * 65536)]);
    }

    #[test]
    fn contiguous_pieces_reach_the_sink_as_one_write() {
        let (mut w, image) = writer(MAX_RUN);
        for i in 0..4u64 {
            w.apply(op(i * 65536, 1 + i as u8, 65536)).expect("apply");
        }
        assert_eq!(image.lock().expect("image").writes, 0, "held until flushed");
        w.flush().expect("flush");
        let image = image.lock().expect("image");
        assert_eq!(image.writes, 1);
        assert_eq!(image.bytes.len(), 4 * 65536);
        assert!(image.bytes[3 * 65536..].iter().all(|&b| b == 4));
        assert_eq!(w.written.iter().collect::<Vec<_>>(), vec![(0, 4 * 65536)]);
    }

    #[test]
    fn a_zero_granule_or_a_gap_splits_the_run() {
        let (mut w, image) = writer(MAX_RUN);
        let mut bytes = vec![7u8; 3 * HOLE_GRANULE];
        bytes[HOLE_GRANULE..2 * HOLE_GRANULE].fill(0);
        w.apply(WriteOp {
            offset: 0,
            bytes: Bytes::from(bytes),
        })
        .expect("apply");
        // Not where the last run ended: a new run.
        w.apply(op(1 << 20, 9, HOLE_GRANULE)).expect("apply");
        w.flush().expect("flush");
        assert_eq!(image.lock().expect("image").writes, 3);
        let g = HOLE_GRANULE as u64;
        assert_eq!(
            w.written.iter().collect::<Vec<_>>(),
            vec![(0, g), (2 * g, 3 * g), (1 << 20, (1 << 20) + g)]
        );
    }

    #[test]
    fn runs_are_cut_at_the_preferred_length() {
        let (mut w, image) = writer(MAX_RUN);
        let piece = 1 << 20;
        for i in 0..(2 * MAX_RUN / piece) as u64 {
            w.apply(op(i * piece as u64, 3, piece)).expect("apply");
        }
        // Both runs were handed on as soon as they were long enough.
        assert_eq!(image.lock().expect("image").writes, 2);
        w.flush().expect("flush");
        assert_eq!(image.lock().expect("image").writes, 2);
        assert_eq!(image.lock().expect("image").bytes.len(), 2 * MAX_RUN);
    }
}
