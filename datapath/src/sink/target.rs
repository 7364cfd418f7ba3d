//! How file and block sinks put runs of the image on their target: whole aligned pages with
//! direct I/O where the target and the [`CacheMode`] allow it, the rest through the page cache
//! with early writeback. One place for both sinks.

use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::direct::{DirectWriter, MIN_DIRECT, Split, split_run};
use super::uring::UringWriter;
use super::writeback::Writeback;
use super::writer::{BUFFERED_RUN, MAX_RUN};
use super::{CacheMode, write_run_at};
use crate::buffer::ALIGN;
use crate::error::Error;

/// How far past the last direct write a regular file's length is set ahead of it. A direct
/// write past the end of a file is one the filesystem must finish before it returns (ext4
/// and xfs wait for it under the inode lock), so the file is grown first, in steps this large;
/// the sink gives it its real length at commit. Not a reservation: the file stays sparse.
const GROW_AHEAD: u64 = 1 << 30;

#[derive(Debug)]
pub(crate) struct TargetWriter {
    /// A descriptor of its own, so the sink may close or replace its own.
    file: File,
    path: PathBuf,
    writeback: Writeback,
    direct: Option<Direct>,
    /// A regular file: grown ahead of direct writes (see [`GROW_AHEAD`]) up to `grown`.
    regular_file: bool,
    grown: u64,
}

/// How whole aligned pages reach the target with direct I/O.
#[derive(Debug)]
enum Direct {
    /// Asynchronous writes from the writer thread: runs of any size go direct.
    Uring(Box<UringWriter>),
    /// Synchronous writes on a few threads: only large runs are worth it.
    Threads(DirectWriter),
}

impl TargetWriter {
    /// Writes to `file` (opened at `path`), the way `cache` asks. `regular_file`: the target is
    /// a file, whose length may be grown ahead of direct writes and whose blocks the writer
    /// threads reserve before writing (see [`DirectWriter::open`]).
    pub fn new(
        file: &File,
        path: &Path,
        cache: CacheMode,
        regular_file: bool,
    ) -> Result<Self, Error> {
        let own = file
            .try_clone()
            .map_err(|e| Error::target("opening", path, e))?;
        let direct = match cache {
            CacheMode::PageCache => None,
            CacheMode::Auto | CacheMode::Direct => {
                let uring = DirectWriter::open_direct(path).and_then(|direct| {
                    UringWriter::open(direct, file.try_clone().ok()?)
                        .map(|w| Direct::Uring(Box::new(w)))
                });
                match uring {
                    Some(uring) => Some(uring),
                    // Synchronous direct writes cost more time than the page cache; they are
                    // only for a target that must stay out of it (`CACHE_MODE=TRYNONE`).
                    None if cache == CacheMode::Direct => {
                        DirectWriter::open(path, file, regular_file).map(Direct::Threads)
                    }
                    None => None,
                }
            }
        };
        let grown = if regular_file {
            file.metadata()
                .map_err(|e| Error::target("opening", path, e))?
                .len()
        } else {
            0
        };
        tracing::debug!(
            direct = ?direct.as_ref().map(|d| match d {
                Direct::Uring(_) => "io_uring",
                Direct::Threads(_) => "threads",
            }),
            target = %path.display(),
            "Target opened."
        );
        Ok(TargetWriter {
            writeback: Writeback::start(&own),
            file: own,
            path: path.to_path_buf(),
            direct,
            regular_file,
            grown,
        })
    }

    /// The run length to ask the writer for: direct writes want large requests, page-cache
    /// writes a chunk's worth per call.
    pub fn preferred_run(&self) -> usize {
        if self.direct.is_some() {
            MAX_RUN
        } else {
            BUFFERED_RUN
        }
    }

    pub fn write(&mut self, offset: u64, run: &[Bytes]) -> Result<(), Error> {
        let (min, usable) = match &self.direct {
            None => return self.write_buffered(offset, run),
            Some(Direct::Uring(d)) => (ALIGN, d.usable()),
            Some(Direct::Threads(d)) => (MIN_DIRECT, d.usable()),
        };
        let split = if usable {
            split_run(offset, run, min)
        } else {
            Split::Whole
        };
        let Split::Parts { middle, edges } = split else {
            return self.write_buffered(offset, run);
        };
        let (at, parts) = middle;
        let len = parts.iter().map(Bytes::len).sum::<usize>() as u64;
        self.grow_to(at + len);
        let submitted = match self.direct.as_mut() {
            Some(Direct::Uring(d)) => d.submit(at, parts),
            Some(Direct::Threads(d)) => d.submit(at, parts),
            None => Ok(()),
        };
        submitted.map_err(|e| Error::target("writing", &self.path, e))?;
        for (at, run) in edges {
            if !run.is_empty() {
                self.write_buffered(at, &run)?;
            }
        }
        Ok(())
    }

    /// Grows a regular file's length past `end` before a direct write up to there. Only for
    /// speed: where the file cannot be grown that far, the write extends it itself.
    fn grow_to(&mut self, end: u64) {
        if !self.regular_file || end <= self.grown {
            return;
        }
        let len = end.saturating_add(GROW_AHEAD);
        if self.file.set_len(len).is_ok() {
            self.grown = len;
        }
    }

    fn write_buffered(&mut self, offset: u64, run: &[Bytes]) -> Result<(), Error> {
        write_run_at(&self.file, offset, run)
            .map_err(|e| Error::target("writing", &self.path, e))?;
        self.writeback.wrote(run.iter().map(Bytes::len).sum());
        Ok(())
    }

    /// After the last write (or on abort): waits for the direct writes in flight and stops the
    /// writeback thread. The first failed direct write, if any, is the error.
    pub fn finish(&mut self) -> Result<(), Error> {
        let direct = match self.direct.take() {
            Some(Direct::Uring(mut d)) => d.finish(),
            Some(Direct::Threads(mut d)) => d.finish(),
            None => Ok(()),
        };
        self.writeback.stop();
        direct.map_err(|e| Error::target("writing", &self.path, e))
    }
}
