//! A block-device target (also usable on a pre-sized regular file, as tests do). Nothing is
//! created or truncated; ranges the image leaves zero are punched, written or skipped per
//! [`ZeroMode`]. A failed import cannot be removed from a device, so it is neutralised instead:
//! the first MiB is zeroed so the partial image is not mistaken for a bootable disk.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rustix::fs::{FallocateFlags, fallocate};

use super::file::write_zeros;
use super::target::TargetWriter;
use super::{RangeSet, Sink, SinkReport, TargetOptions, ZeroMode};
use crate::error::Error;

/// Bytes zeroed at the start of a device after a failed import.
const WIPE_ON_FAILURE: u64 = 1 << 20;

#[derive(Debug)]
pub struct BlockSink {
    path: PathBuf,
    file: File,
    target: TargetWriter,
    size: u64,
    options: TargetOptions,
    touched: bool,
}

impl BlockSink {
    pub fn open(path: &Path, options: TargetOptions) -> Result<Self, Error> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::target("opening", path, e))?;
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::target("sizing", path, e))?;
        // A device has nothing to allocate.
        let target = TargetWriter::new(&file, path, options.cache, false)?;
        Ok(BlockSink {
            path: path.to_path_buf(),
            target,
            file,
            size,
            options,
            touched: false,
        })
    }

    fn zero(&self, from: u64, to: u64, mode: ZeroMode) -> std::io::Result<()> {
        match mode {
            ZeroMode::Skip => Ok(()),
            ZeroMode::Write => write_zeros(&self.file, from, to),
            ZeroMode::Punch => {
                let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
                match fallocate(&self.file, flags, from, to - from) {
                    Ok(()) => Ok(()),
                    Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::INVAL) => {
                        write_zeros(&self.file, from, to)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

impl Sink for BlockSink {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn capacity(&self) -> Option<u64> {
        Some(self.size)
    }

    fn write_at(&mut self, offset: u64, run: &[Bytes]) -> Result<(), Error> {
        self.touched = true;
        self.target.write(offset, run)
    }

    fn preferred_run(&self) -> usize {
        self.target.preferred_run()
    }

    fn commit(&mut self, image_size: u64, written: &RangeSet) -> Result<SinkReport, Error> {
        self.target.finish()?;
        let mode = if self.options.preallocate {
            ZeroMode::Write
        } else {
            self.options.zero_mode
        };
        let mut zeroed = 0;
        if mode != ZeroMode::Skip {
            for (from, to) in written.gaps(0, image_size) {
                self.touched = true;
                self.zero(from, to, mode)
                    .map_err(|e| Error::target("zeroing", &self.path, e))?;
                zeroed += to - from;
            }
        }
        self.file
            .sync_all()
            .map_err(|e| Error::target("syncing", &self.path, e))?;
        Ok(SinkReport {
            final_size: image_size,
            preallocated: self.options.preallocate,
            zeroed,
        })
    }

    fn abort(&mut self) -> String {
        // Writes still in flight must land before the start of the device is wiped.
        let _ = self.target.finish();
        if !self.touched {
            return format!("{} was not modified", self.path.display());
        }
        let end = WIPE_ON_FAILURE.min(self.size);
        match write_zeros(&self.file, 0, end).and_then(|()| self.file.sync_all()) {
            Ok(()) => format!(
                "{} holds a partial image; its first {end} bytes were zeroed so it is not \
                 mistaken for a complete disk",
                self.path.display()
            ),
            Err(e) => format!(
                "{} holds a partial image and wiping its start failed ({e}); do not use it",
                self.path.display()
            ),
        }
    }
}
