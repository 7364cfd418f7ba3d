//! The clone's source: a disk image file (its data extents found with `SEEK_DATA`/`SEEK_HOLE`)
//! or a block device (read whole), with what it looked like when opened so that a source
//! changed or shrunk under the clone fails it.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// How the source's data is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A regular file: only its data extents are read.
    File,
    /// A block device (or a file given as one): read whole.
    Device,
}

/// What must not change while the clone runs: size, and for a file its inode, mtime and ctime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    size: u64,
    file: Option<[i64; 5]>,
}

/// An open clone source.
#[derive(Debug)]
pub struct CloneSource {
    file: File,
    path: PathBuf,
    kind: SourceKind,
    stamp: Stamp,
}

impl CloneSource {
    /// Opens `path` read-only as `kind`.
    pub fn open(path: &Path, kind: SourceKind) -> Result<CloneSource, Error> {
        let file = File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::SourceNotFound(path.display().to_string())
            } else {
                Error::Source(e)
            }
        })?;
        let mut source = CloneSource {
            file,
            path: path.to_owned(),
            kind,
            stamp: Stamp {
                size: 0,
                file: None,
            },
        };
        source.stamp = source.current_stamp()?;
        Ok(source)
    }

    fn current_stamp(&self) -> Result<Stamp, Error> {
        let meta = self.file.metadata().map_err(Error::Source)?;
        let size = if meta.file_type().is_block_device() {
            (&self.file).seek(SeekFrom::End(0)).map_err(Error::Source)?
        } else {
            meta.len()
        };
        let file = meta.is_file().then(|| {
            [
                meta.ino() as i64,
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec(),
            ]
        });
        Ok(Stamp { size, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// The source's size: the clone stream's virtual size.
    pub fn size(&self) -> u64 {
        self.stamp.size
    }

    /// A string that changes whenever the source does (size, inode, times): names a clone of
    /// this source in this state, so a restarted sender finds its own upload again.
    pub fn identity(&self) -> String {
        match self.stamp.file {
            Some(f) => format!(
                "{}:{}:{}.{}:{}.{}",
                self.stamp.size, f[0], f[1], f[2], f[3], f[4]
            ),
            None => format!("{}", self.stamp.size),
        }
    }

    /// Fails when the source is not as it was when opened.
    pub fn check_unchanged(&self) -> Result<(), Error> {
        let now = self.current_stamp()?;
        if now.size < self.stamp.size {
            return Err(Error::SourceShrank(self.path.display().to_string()));
        }
        if now != self.stamp {
            return Err(Error::CloneSourceChanged(self.path.display().to_string()));
        }
        Ok(())
    }

    /// The first data extent at or after `pos`: `[start, end)`, or `None` when only holes
    /// remain. A device (or a filesystem without `SEEK_DATA`) is one extent.
    pub fn next_extent(&self, pos: u64) -> Result<Option<(u64, u64)>, Error> {
        let size = self.stamp.size;
        if pos >= size {
            return Ok(None);
        }
        if self.kind == SourceKind::Device {
            return Ok(Some((pos, size)));
        }
        let start = match rustix::fs::seek(&self.file, rustix::fs::SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => return Ok(None),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => {
                return Ok(Some((pos, size)));
            }
            Err(e) => return Err(Error::Source(e.into())),
        };
        if start >= size {
            return Ok(None);
        }
        let end = match rustix::fs::seek(&self.file, rustix::fs::SeekFrom::Hole(start)) {
            Ok(e) => e.min(size),
            Err(rustix::io::Errno::NXIO) => {
                return Err(Error::SourceShrank(self.path.display().to_string()));
            }
            Err(e) => return Err(Error::Source(e.into())),
        };
        Ok(Some((start, end)))
    }

    /// Fills `buf` from disk offset `at`; a source that ends early has shrunk.
    pub fn read_exact_at(&self, buf: &mut [u8], at: u64) -> Result<(), Error> {
        self.file.read_exact_at(buf, at).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::SourceShrank(self.path.display().to_string())
            } else {
                Error::Source(e)
            }
        })
    }
}
