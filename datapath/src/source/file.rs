//! Local files and standard input.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::{BufferPool, ReadAt, Source, chunk_pool};
use crate::error::Error;

/// A local file (regular file or block device), read sequentially; it also offers `pread`.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    file: Arc<File>,
    len: Option<u64>,
    buffers: BufferPool,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::SourceNotFound(path.display().to_string())
            } else {
                Error::Source(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", path.display()),
                ))
            }
        })?;
        let meta = file.metadata().map_err(Error::Source)?;
        let len = if meta.is_file() {
            Some(meta.len())
        } else {
            // Block devices report their size through seeking to the end.
            use std::io::Seek;
            (&file)
                .seek(std::io::SeekFrom::End(0))
                .ok()
                .filter(|&n| n > 0)
                .inspect(|_| {
                    let _ = (&file).seek(std::io::SeekFrom::Start(0));
                })
        };
        Ok(FileSource {
            path: path.to_path_buf(),
            file: Arc::new(file),
            len,
            buffers: chunk_pool(),
        })
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn total_len(&self) -> Option<u64> {
        self.len
    }

    fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        let mut f: &File = &self.file;
        self.buffers.read_from(&mut f).map_err(Error::Source)
    }

    fn random_access(&self) -> Option<Arc<dyn ReadAt>> {
        self.len.map(|_| Arc::clone(&self.file) as Arc<dyn ReadAt>)
    }
}

/// Standard input: length unknown, no random access.
#[derive(Debug)]
pub struct StdinSource {
    buffers: BufferPool,
}

impl Default for StdinSource {
    fn default() -> Self {
        StdinSource {
            buffers: chunk_pool(),
        }
    }
}

impl Source for StdinSource {
    fn describe(&self) -> String {
        "standard input".into()
    }

    fn total_len(&self) -> Option<u64> {
        None
    }

    fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        let mut stdin = std::io::stdin().lock();
        self.buffers.read_from(&mut stdin).map_err(Error::Source)
    }
}
