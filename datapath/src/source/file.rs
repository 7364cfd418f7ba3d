//! Local files and standard input.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::mapped::MappedFile;
use super::{BufferPool, CHUNK, ReadAt, Source, chunk_pool};
use crate::error::Error;

/// A local file (regular file or block device), read sequentially; it also offers `pread`.
/// A regular file is read through memory mappings (see [`super::mapped`]) where possible.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    file: Arc<File>,
    len: Option<u64>,
    buffers: BufferPool,
    mapped: Option<MappedFile>,
    /// Bytes handed out so far.
    offset: u64,
    /// A regular file's modification and change times when it was opened: any write,
    /// truncation or regrowth during the import moves them.
    stamp: Option<Stamp>,
}

/// A regular file's mtime and ctime, to nanoseconds.
type Stamp = [i64; 4];

fn stamp(meta: &std::fs::Metadata) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    meta.is_file().then(|| {
        [
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
        ]
    })
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
        let file = Arc::new(file);
        let mapped = match len {
            Some(len) if meta.is_file() && len > 0 => MappedFile::new(Arc::clone(&file), len),
            _ => None,
        };
        Ok(FileSource {
            path: path.to_path_buf(),
            file,
            len,
            buffers: chunk_pool(),
            mapped,
            offset: 0,
            stamp: stamp(&meta),
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
        if let Some(mapped) = &self.mapped {
            if self.offset >= mapped.len() {
                return Ok(None);
            }
            let len = (mapped.len() - self.offset).min(CHUNK as u64) as usize;
            let window = mapped.window(self.offset, len).map_err(|e| {
                if mapped.shrunk() {
                    Error::SourceShrank(self.path.display().to_string())
                } else {
                    Error::Source(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", self.path.display()),
                    ))
                }
            })?;
            if let Some(chunk) = window {
                self.offset += len as u64;
                return Ok(Some(chunk));
            }
            // No window free: read this chunk instead, from the same offset.
            let mut at = ReadAtOffset {
                file: &self.file,
                offset: self.offset,
                left: len as u64,
            };
            let chunk = self.buffers.read_from(&mut at).map_err(Error::Source)?;
            self.offset += len as u64;
            return match chunk {
                Some(chunk) => Ok(Some(chunk)),
                None => Err(Error::SourceShrank(self.path.display().to_string())),
            };
        }
        let mut f: &File = &self.file;
        self.buffers.read_from(&mut f).map_err(Error::Source)
    }

    fn random_access(&self) -> Option<Arc<dyn ReadAt>> {
        self.len.map(|_| Arc::clone(&self.file) as Arc<dyn ReadAt>)
    }

    fn mapped(&self) -> bool {
        self.mapped.is_some()
    }

    fn check_unchanged(&self) -> Result<(), Error> {
        if self.mapped.as_ref().is_some_and(MappedFile::shrunk) {
            return Err(Error::SourceShrank(self.path.display().to_string()));
        }
        // A file cut and grown back reads as zeros where it was cut, and a file written to
        // reads partly old, partly new: neither is the image, whatever its length now.
        let now = self.file.metadata().map_err(Error::Source)?;
        if self.stamp.is_some() && stamp(&now) != self.stamp {
            return Err(Error::SourceChanged(self.path.display().to_string()));
        }
        Ok(())
    }
}

/// `left` bytes of a file from `offset` on, read without its cursor.
struct ReadAtOffset<'a> {
    file: &'a File,
    offset: u64,
    left: u64,
}

impl std::io::Read for ReadAtOffset<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(self.left as usize);
        let n = FileExt::read_at(self.file, &mut buf[..want], self.offset)?;
        self.offset += n as u64;
        self.left -= n as u64;
        Ok(n)
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
