//! Live progress of one import: lock-free counters any thread bumps and any observer (the CLI's
//! progress bar, later a Prometheus collector) reads as a snapshot whenever it likes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared counters. Clone the `Arc` to observe from another thread.
#[derive(Debug, Default)]
pub struct Progress {
    source_read: AtomicU64,
    source_total: AtomicU64,
    written: AtomicU64,
    holes: AtomicU64,
}

/// A point-in-time copy of [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgressSnapshot {
    /// Bytes consumed from the source, as transferred (compressed if it is compressed).
    pub source_read: u64,
    /// Source length when known (Content-Length, file size).
    pub source_total: Option<u64>,
    /// Image bytes written to the target.
    pub written: u64,
    /// Image bytes left as holes (zeros never written).
    pub holes: u64,
}

impl ProgressSnapshot {
    /// Percentage of the source consumed, when its length is known: CDI's progress metric.
    pub fn percent(&self) -> Option<f64> {
        self.source_total
            .filter(|&t| t > 0)
            .map(|t| (self.source_read as f64 * 100.0 / t as f64).min(100.0))
    }
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Progress::default())
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        let total = self.source_total.load(Ordering::Relaxed);
        ProgressSnapshot {
            source_read: self.source_read.load(Ordering::Relaxed),
            source_total: (total != 0).then_some(total),
            written: self.written.load(Ordering::Relaxed),
            holes: self.holes.load(Ordering::Relaxed),
        }
    }

    /// Back to zero, for a worker that starts another transfer after a failed one.
    pub fn reset(&self) {
        for counter in [
            &self.source_read,
            &self.source_total,
            &self.written,
            &self.holes,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// For a producer outside the pipeline (the cloner): `done` of `total` bytes.
    pub fn set_position(&self, done: u64, total: u64) {
        self.source_total.store(total, Ordering::Relaxed);
        self.source_read.store(done, Ordering::Relaxed);
    }

    pub(crate) fn set_total(&self, total: Option<u64>) {
        self.source_total
            .store(total.unwrap_or(0), Ordering::Relaxed);
    }

    pub(crate) fn add_read(&self, n: u64) {
        self.source_read.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_holes(&self, n: u64) {
        self.holes.fetch_add(n, Ordering::Relaxed);
    }
}
