//! How file and block sinks put runs of the image on their target: through the page cache with
//! early writeback, or, with direct I/O asked for, large aligned runs with `O_DIRECT` and only
//! the edges through the page cache. One place for both sinks.

use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::direct::DirectWriter;
use super::write_run_at;
use super::writeback::Writeback;
use super::writer::{BUFFERED_RUN, MAX_RUN};
use crate::error::Error;

#[derive(Debug)]
pub(crate) struct TargetWriter {
    /// A descriptor of its own, so the sink may close or replace its own.
    file: File,
    path: PathBuf,
    writeback: Writeback,
    direct: Option<DirectWriter>,
}

impl TargetWriter {
    /// Writes to `file` (opened at `path`). `allocate`: reserve the blocks of each direct run
    /// first (regular files; see [`DirectWriter::open`]).
    pub fn new(file: &File, path: &Path, direct_io: bool, allocate: bool) -> Result<Self, Error> {
        let own = file
            .try_clone()
            .map_err(|e| Error::target("opening", path, e))?;
        let direct = if direct_io {
            DirectWriter::open(path, file, allocate)
        } else {
            None
        };
        tracing::debug!(direct = direct.is_some(), target = %path.display(), "Target opened.");
        Ok(TargetWriter {
            writeback: Writeback::start(&own),
            file: own,
            path: path.to_path_buf(),
            direct,
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
        let Some(direct) = self.direct.as_mut() else {
            return self.write_buffered(offset, run);
        };
        let buffered = direct
            .submit_aligned(offset, run)
            .map_err(|e| Error::target("writing", &self.path, e))?;
        for (at, run) in buffered {
            self.write_buffered(at, &run)?;
        }
        Ok(())
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
            Some(mut direct) => direct
                .finish()
                .map_err(|e| Error::target("writing", &self.path, e)),
            None => Ok(()),
        };
        self.writeback.stop();
        direct
    }
}
