//! Where the raw image goes: a regular file (sparse, renamed into place only when complete) or
//! a block device (zero ranges punched, written or skipped). The [`writer`] in front of every
//! sink turns all-zero runs into holes.

mod block;
mod direct;
mod file;
pub mod memory;
mod ranges;
mod target;
mod uring;
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

/// How the image's bytes reach the target's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Whole aligned pages with direct I/O submitted through io_uring, where the kernel and the
    /// target allow both: no page cache is filled (so none is charged to a pod's memory), and
    /// the writer never waits for a single write. Through the page cache otherwise.
    #[default]
    Auto,
    /// Direct I/O wherever the target takes it, through io_uring or, without it, on writer
    /// threads (CDI's `CACHE_MODE=TRYNONE`, set after an import was OOM-killed).
    Direct,
    /// Always through the page cache, with early writeback (qemu-img's `-t writeback`).
    PageCache,
}

/// What the caller asked of the target.
#[derive(Debug, Clone, Default)]
pub struct TargetOptions {
    /// Size the image must have at least (files grow to it; a larger image is refused).
    pub requested_size: Option<u64>,
    pub preallocate: bool,
    pub zero_mode: ZeroMode,
    /// Direct I/O or the page cache.
    pub cache: CacheMode,
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
    /// [`Sink::write_at`]; 0, the default, hands on every piece at once.
    fn preferred_run(&self) -> usize {
        0
    }
    /// After the last write: make every byte of `[0, image_size)` not in `written` read as
    /// zero, size, sync, and make the image visible. Nothing may look complete before this.
    fn commit(&mut self, image_size: u64, written: &RangeSet) -> Result<SinkReport, Error>;
    /// After a failure: remove or neutralise what was written. Says what is left.
    fn abort(&mut self) -> String;
}

/// Writes the contiguous pieces `run` at `offset` with as few `pwritev` calls as the kernel
/// allows (it may write less than asked; the rest follows).
pub(crate) fn write_run_at(
    file: &std::fs::File,
    offset: u64,
    run: &[Bytes],
) -> std::io::Result<()> {
    let mut at = offset;
    let mut parts: Vec<&[u8]> = run
        .iter()
        .map(|b| &b[..])
        .filter(|b| !b.is_empty())
        .collect();
    let mut first = 0;
    while first < parts.len() {
        let end = parts.len().min(first + direct::MAX_PARTS);
        let slices: Vec<std::io::IoSlice<'_>> = parts[first..end]
            .iter()
            .map(|p| std::io::IoSlice::new(p))
            .collect();
        let mut n = match rustix::io::pwritev(file, &slices, at) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        at += n as u64;
        while n > 0 {
            let len = parts[first].len();
            if n >= len {
                n -= len;
                first += 1;
            } else {
                parts[first] = &parts[first][n..];
                n = 0;
            }
        }
    }
    Ok(())
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

/// Files and data for the sinks' unit tests.
#[cfg(test)]
pub(crate) mod test_files {
    use std::fs::{File, OpenOptions};
    use std::path::PathBuf;

    /// An empty file in a temporary directory (kept while the `TempDir` lives).
    pub fn scratch_file() -> (tempfile::TempDir, PathBuf, File) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.img");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create");
        (dir, path, file)
    }

    /// `len` bytes of a pattern that differs with `seed`.
    pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    #[test]
    fn a_run_of_more_pieces_than_one_call_takes_lands_in_order() {
        let file = tempfile::tempfile().expect("temp file");
        // Empty pieces, uneven sizes and more pieces than one pwritev takes.
        let run: Vec<Bytes> = (0..direct::MAX_PARTS + 500)
            .map(|i| Bytes::from(vec![(i % 251) as u8; i % 7]))
            .collect();
        write_run_at(&file, 100, &run).expect("write");
        let want = run.concat();
        let mut back = vec![0u8; want.len()];
        file.read_exact_at(&mut back, 100).expect("read back");
        assert!(back == want);
        assert_eq!(
            file.metadata().expect("meta").len(),
            100 + want.len() as u64
        );
    }
}
