//! Where the raw image goes: a regular file (sparse, renamed into place only when complete) or
//! a block device (zero ranges punched, written or skipped). The [`writer`] in front of every
//! sink turns all-zero runs into holes.

mod block;
mod direct;
mod file;
pub mod memory;
mod ranges;
mod writeback;
pub(crate) mod writer;

use std::path::Path;

use bytes::Bytes;

use crate::error::Error;

pub use block::BlockSink;
pub use file::FileSink;
pub use memory::MemorySink;
pub use ranges::RangeSet;

/// Granule for hole detection: all-zero runs of at least this many aligned bytes are skipped.
pub const HOLE_GRANULE: usize = 4096;

/// How a block device's zero ranges are made zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroMode {
    /// Discard/zero-out with `fallocate(PUNCH_HOLE)`, falling back to writing zeros.
    #[default]
    Punch,
    /// Write zeros (full allocation; what preallocation means on a block device).
    Write,
    /// The device is known to read back zeros already; skip them.
    Skip,
}

/// What the caller asked of the target.
#[derive(Debug, Clone, Default)]
pub struct TargetOptions {
    /// Size the image must have at least (files grow to it; a larger image is refused).
    pub requested_size: Option<u64>,
    pub preallocate: bool,
    pub zero_mode: ZeroMode,
    /// Write whole aligned pages with direct I/O where the target supports it (CDI's
    /// `CACHE_MODE=TRYNONE`): less CPU and no page cache, but each write waits for the storage.
    pub direct_io: bool,
}

/// What committing the target did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SinkReport {
    /// Size of the image on the target (file length, or the image part of a device).
    pub final_size: u64,
    pub preallocated: bool,
    /// Bytes explicitly zeroed (punched or written) on a block device.
    pub zeroed: u64,
}

/// A target for the raw image.
pub trait Sink: Send {
    fn describe(&self) -> String;
    /// Largest image this target holds, when bounded.
    fn capacity(&self) -> Option<u64>;
    /// Writes `run`, pieces that follow each other in the image, from `offset` on. The write
    /// may still be in flight when this returns; its failure then shows at a later write or at
    /// [`Sink::commit`].
    fn write_at(&mut self, offset: u64, run: &[Bytes]) -> Result<(), Error>;
    /// How many contiguous bytes (at most 4 MiB) the sink would like in one
    /// [`Sink::write_at`]. 0, the default, hands on every piece at once: page-cache writes gain
    /// nothing from waiting, and the buffers go back to their pool while still in the caches.
    fn preferred_run(&self) -> usize {
        0
    }
    /// After the last write: make every byte of `[0, image_size)` not in `written` read as
    /// zero, size, sync, and make the image visible. Nothing may look complete before this.
    fn commit(&mut self, image_size: u64, written: &RangeSet) -> Result<SinkReport, Error>;
    /// After a failure: remove or neutralise what was written. Says what is left.
    fn abort(&mut self) -> String;
}

/// Opens `path` as a block device when it is one, else as a regular file (created).
pub fn open_target(path: &Path, options: TargetOptions) -> Result<Box<dyn Sink>, Error> {
    use std::os::unix::fs::FileTypeExt;
    let is_block = std::fs::metadata(path)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
    if is_block {
        Ok(Box::new(BlockSink::open(path, options)?))
    } else {
        Ok(Box::new(FileSink::create(path, options)?))
    }
}
