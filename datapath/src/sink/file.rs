//! A regular-file target. The image is written sparsely into a hidden partial file beside the
//! destination and renamed into place only after it is complete and synced, so an interrupted
//! or failed import never leaves a file that looks like a finished image. With direct I/O
//! asked for, large runs of whole pages bypass the page cache; the rest goes through it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rustix::fs::{FallocateFlags, fallocate};

use super::target::TargetWriter;
use super::{RangeSet, Sink, SinkReport, TargetOptions};
use crate::error::Error;

#[derive(Debug)]
pub struct FileSink {
    dest: PathBuf,
    partial: PathBuf,
    file: Option<File>,
    options: TargetOptions,
    /// The largest image taken without growing the file to it (a clone's target keeps the
    /// source's size); `requested_size` otherwise.
    limit: Option<u64>,
    target: TargetWriter,
}

/// The hidden name a file target is written under until it is complete.
pub fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.cdi-partial"))
}

impl FileSink {
    pub fn create(dest: &Path, options: TargetOptions) -> Result<Self, Error> {
        let partial = partial_path(dest);
        // Truncate: a partial file left by a crash must not leak old data into holes.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .map_err(|e| Error::target("creating", &partial, e))?;
        let target = match TargetWriter::new(&file, &partial, options.cache, true) {
            Ok(target) => target,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        Ok(FileSink {
            dest: dest.to_path_buf(),
            partial,
            file: Some(file),
            options,
            limit: None,
            target,
        })
    }

    /// Refuses images larger than `limit` (before the first write, when the format says its
    /// size up front) without growing the file to it.
    pub fn with_limit(mut self, limit: Option<u64>) -> Self {
        self.limit = limit;
        self
    }

    fn file(&self) -> Result<&File, Error> {
        self.file.as_ref().ok_or(Error::Cancelled)
    }
}

impl Sink for FileSink {
    fn describe(&self) -> String {
        self.dest.display().to_string()
    }

    fn capacity(&self) -> Option<u64> {
        match (self.options.requested_size, self.limit) {
            (Some(requested), Some(limit)) => Some(requested.min(limit)),
            (requested, limit) => requested.or(limit),
        }
    }

    fn write_at(&mut self, offset: u64, run: &[Bytes]) -> Result<(), Error> {
        self.target.write(offset, run)
    }

    fn preferred_run(&self) -> usize {
        self.target.preferred_run()
    }

    fn commit(&mut self, image_size: u64, written: &RangeSet) -> Result<SinkReport, Error> {
        self.target.finish()?;
        let file = self.file()?;
        let final_size = image_size.max(self.options.requested_size.unwrap_or(0));
        file.set_len(final_size)
            .map_err(|e| Error::target("resizing", &self.partial, e))?;
        let mut preallocated = false;
        if self.options.preallocate && final_size > 0 {
            match fallocate(file, FallocateFlags::empty(), 0, final_size) {
                Ok(()) => preallocated = true,
                Err(rustix::io::Errno::OPNOTSUPP) => {
                    // No fallocate on this filesystem: allocate by writing the zeros.
                    for (from, to) in written.gaps(0, final_size) {
                        write_zeros(file, from, to)
                            .map_err(|e| Error::target("preallocating", &self.partial, e))?;
                    }
                    preallocated = true;
                }
                Err(e) => return Err(Error::target("preallocating", &self.partial, e.into())),
            }
        }
        let syncing = std::time::Instant::now();
        file.sync_all()
            .map_err(|e| Error::target("syncing", &self.partial, e))?;
        tracing::debug!(seconds = syncing.elapsed().as_secs_f64(), "Target synced.");
        std::fs::rename(&self.partial, &self.dest)
            .map_err(|e| Error::target("renaming into place", &self.dest, e))?;
        if let Some(dir) = self.dest.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.file = None;
        Ok(SinkReport {
            final_size,
            preallocated,
            zeroed: 0,
        })
    }

    fn abort(&mut self) -> String {
        // Writes still in flight must land before the file is removed.
        let _ = self.target.finish();
        self.file = None;
        match std::fs::remove_file(&self.partial) {
            Ok(()) => format!("removed the partial file {}", self.partial.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "nothing was written".into(),
            Err(e) => format!(
                "could not remove the partial file {} ({e}); it is not a usable image, delete it",
                self.partial.display()
            ),
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        // Never leave a partial file behind, whatever path led here.
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Writes zeros over `[from, to)`.
pub(crate) fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; (1 << 20).min((to - from) as usize)];
    let mut at = from;
    while at < to {
        let n = zeros.len().min((to - at) as usize);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}
