//! The worker's target: a disk image file on a Filesystem volume or the claim's block device,
//! sized with CDI's arithmetic, and the three ways a worker fills it (a disk image through the
//! data path, a tar archive unpacked into the volume, a blank disk).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cdi_datapath::sink::{BlockSink, CacheMode, FileSink, RangeSet, Sink, TargetOptions, ZeroMode};
use cdi_datapath::source::Source;
use cdi_datapath::{Checksum, Error, ImportSpec, Progress};

use crate::paths::Paths;
use crate::size::{device_size, filesystem_available, usable_space};

/// Where the image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A raw image file on a Filesystem volume (`/data/disk.img`).
    File(PathBuf),
    /// The claim's block device (`/dev/cdi-block-volume`).
    Block(PathBuf),
}

impl Destination {
    /// The importer's rule: the block device when the pod has one, else `disk.img` in `/data`.
    pub fn from_mounts(paths: &Paths) -> Destination {
        if paths.is_block() {
            Destination::Block(paths.block_device.clone())
        } else {
            Destination::File(paths.data_file())
        }
    }

    /// The upload server's rule: `DESTINATION` names the target (a container path); it is
    /// the block volume when it is CDI's block device path or a block device.
    pub fn from_path(paths: &Paths, destination: &str) -> Destination {
        let path = paths.container(destination);
        let is_device = std::fs::metadata(&path)
            .map(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
            .unwrap_or(false);
        if path == paths.block_device || is_device {
            Destination::Block(path)
        } else {
            Destination::File(path)
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Destination::File(p) | Destination::Block(p) => p,
        }
    }

    pub fn is_block(&self) -> bool {
        matches!(self, Destination::Block(_))
    }
}

/// How the target is made.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub destination: Destination,
    /// The claim's request (`IMPORTER_IMAGE_SIZE`, `UPLOAD_IMAGE_SIZE`), after inflation.
    pub image_size: Option<u64>,
    /// `FILESYSTEM_OVERHEAD`: the fraction of a Filesystem volume the image may not use.
    pub filesystem_overhead: f64,
    pub preallocation: bool,
    pub cache: CacheMode,
}

/// A failed step: why, and a sentence about what is left on the target.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    pub target_state: String,
}

impl Failure {
    /// A failure before anything was written.
    pub fn untouched(error: Error) -> Failure {
        Failure {
            error,
            target_state: "nothing was written".into(),
        }
    }
}

impl From<cdi_datapath::ImportFailure> for Failure {
    fn from(f: cdi_datapath::ImportFailure) -> Failure {
        Failure {
            error: f.error,
            target_state: f.target_state,
        }
    }
}

/// What a worker did to its target.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub preallocation_applied: bool,
    /// The source's digest, when one was computed.
    pub digest: Option<Checksum>,
}

impl TargetSpec {
    /// The most image a Filesystem target can take: the usable space of min(free space,
    /// requested size); without a requested size, the image keeps its own size.
    pub fn file_capacity(&self, dir: &Path) -> Result<Option<u64>, Error> {
        let free = filesystem_available(dir)
            .map_err(|e| Error::target("checking free space on", dir, e))?;
        Ok(self
            .image_size
            .map(|s| usable_space(self.filesystem_overhead, s.min(free))))
    }

    /// The most image the target can take, when known before it is opened; a client is told
    /// before anything is written when its image cannot fit.
    pub fn capacity(&self) -> Result<Option<u64>, Error> {
        match &self.destination {
            Destination::Block(p) => device_size(p)
                .map(Some)
                .map_err(|e| Error::target("sizing", p, e)),
            Destination::File(p) => self.file_capacity(parent(p)),
        }
    }

    fn options(&self, requested_size: Option<u64>, zero_mode: ZeroMode) -> TargetOptions {
        TargetOptions {
            requested_size,
            preallocate: self.preallocation,
            zero_mode,
            cache: self.cache,
        }
    }

    /// Opens the target for a disk image.
    pub fn open(&self) -> Result<Box<dyn Sink>, Error> {
        Ok(match &self.destination {
            Destination::Block(p) => {
                Box::new(BlockSink::open(p, self.options(None, ZeroMode::Punch))?)
            }
            Destination::File(p) => {
                let size = self.file_capacity(parent(p))?;
                Box::new(FileSink::create(p, self.options(size, ZeroMode::Punch))?)
            }
        })
    }

    /// Streams a disk image from `source` through the data path into the target.
    pub fn write_image(
        &self,
        source: Box<dyn Source>,
        spec: &ImportSpec,
        progress: &Arc<Progress>,
    ) -> Result<Written, Failure> {
        let sink = self.open().map_err(Failure::untouched)?;
        import_into(sink, source, spec, progress)
    }

    /// Writes a clone stream from `source`: the target gets exactly the source's size (a
    /// Filesystem target is not grown to the claim's usable space, so it is the source byte for
    /// byte), and a source larger than the target is refused from the stream's header, before
    /// anything is written.
    pub fn write_clone(
        &self,
        source: Box<dyn Source>,
        spec: &ImportSpec,
        progress: &Arc<Progress>,
    ) -> Result<Written, Failure> {
        let sink: Box<dyn Sink> = match &self.destination {
            Destination::Block(_) => self.open().map_err(Failure::untouched)?,
            Destination::File(p) => {
                let dir = parent(p);
                let limit = match self.file_capacity(dir).map_err(Failure::untouched)? {
                    Some(capacity) => capacity,
                    None => filesystem_available(dir).map_err(|e| {
                        Failure::untouched(Error::target("checking free space on", dir, e))
                    })?,
                };
                Box::new(
                    FileSink::create(p, self.options(None, ZeroMode::Punch))
                        .map_err(Failure::untouched)?
                        .with_limit(Some(limit)),
                )
            }
        };
        import_into(sink, source, spec, progress)
    }

    /// Unpacks a (possibly compressed) tar stream from `source` into the Filesystem volume.
    pub fn write_archive(
        &self,
        source: Box<dyn Source>,
        spec: &ImportSpec,
        progress: &Arc<Progress>,
    ) -> Result<Written, Failure> {
        let Destination::File(file) = &self.destination else {
            return Err(Failure::untouched(Error::Config(
                "archive content needs a Filesystem volume, not a Block volume".into(),
            )));
        };
        let report = cdi_datapath::extract(source, parent(file), spec, progress)?;
        tracing::info!(bytes = report.unpacked, "Archive unpacked.");
        Ok(Written {
            preallocation_applied: false,
            digest: report.digest,
        })
    }

    /// A blank disk of the requested size (a Block volume is already one, unless it must be
    /// preallocated).
    pub fn write_blank(&self) -> Result<Written, Failure> {
        let wrap = |error: Error| Failure {
            error,
            target_state: "no disk was created".into(),
        };
        match &self.destination {
            Destination::Block(p) => {
                if !self.preallocation {
                    return Ok(Written::default());
                }
                let size = device_size(p).map_err(|e| wrap(Error::target("sizing", p, e)))?;
                let mut sink =
                    BlockSink::open(p, self.options(None, ZeroMode::Write)).map_err(wrap)?;
                let report = sink.commit(size, &RangeSet::new()).map_err(wrap)?;
                Ok(Written {
                    preallocation_applied: report.preallocated,
                    digest: None,
                })
            }
            Destination::File(p) => {
                let size = self
                    .file_capacity(parent(p))
                    .map_err(wrap)?
                    .ok_or_else(|| {
                        wrap(Error::Config(
                            "IMPORTER_IMAGE_SIZE is required for a blank disk".into(),
                        ))
                    })?;
                let mut sink =
                    FileSink::create(p, self.options(Some(size), ZeroMode::Punch)).map_err(wrap)?;
                let report = match sink.commit(0, &RangeSet::new()) {
                    Ok(r) => r,
                    Err(error) => {
                        let target_state = sink.abort();
                        return Err(Failure {
                            error,
                            target_state,
                        });
                    }
                };
                tracing::info!(
                    size = report.final_size,
                    preallocated = report.preallocated,
                    "Blank disk created."
                );
                Ok(Written {
                    preallocation_applied: report.preallocated,
                    digest: None,
                })
            }
        }
    }
}

/// Runs the data path from `source` into `sink` and logs what it did.
fn import_into(
    sink: Box<dyn Sink>,
    source: Box<dyn Source>,
    spec: &ImportSpec,
    progress: &Arc<Progress>,
) -> Result<Written, Failure> {
    let report = cdi_datapath::import(source, sink, spec, progress)?;
    tracing::info!(
        format = %report.format_chain(),
        size = report.decode.image_size,
        source_bytes = report.source_bytes,
        written = report.written,
        holes = report.holes,
        seconds = report.elapsed.as_secs_f64(),
        "Image written."
    );
    Ok(Written {
        preallocation_applied: report.sink.preallocated,
        digest: report.digest,
    })
}

/// The directory a file target lives in.
fn parent(file: &Path) -> &Path {
    file.parent().unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(root: &Path) -> Paths {
        let root = root.display().to_string();
        Paths::from_env(&|n| (n == "CDI_ROOT").then(|| root.clone()))
    }

    #[test]
    fn the_block_device_path_is_a_block_destination() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = paths(dir.path());
        assert!(Destination::from_path(&p, "/dev/cdi-block-volume").is_block());
        assert_eq!(
            Destination::from_path(&p, "/data/disk.img"),
            Destination::File(dir.path().join("data/disk.img"))
        );
        assert_eq!(
            Destination::from_mounts(&p),
            Destination::File(dir.path().join("data/disk.img"))
        );
    }

    #[test]
    fn a_file_target_holds_the_usable_part_of_the_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = TargetSpec {
            destination: Destination::File(dir.path().join("disk.img")),
            image_size: Some(1_138_166_334),
            filesystem_overhead: 0.06,
            preallocation: false,
            cache: CacheMode::PageCache,
        };
        let free = filesystem_available(dir.path()).expect("statvfs");
        let expected = usable_space(0.06, 1_138_166_334u64.min(free));
        assert_eq!(spec.capacity().expect("capacity"), Some(expected));
    }

    #[test]
    fn an_archive_cannot_go_to_a_block_volume() {
        let spec = TargetSpec {
            destination: Destination::Block("/nonexistent".into()),
            image_size: None,
            filesystem_overhead: 0.0,
            preallocation: false,
            cache: CacheMode::Auto,
        };
        let source = cdi_datapath::source::push_channel("test", None).1;
        let err = spec
            .write_archive(Box::new(source), &ImportSpec::default(), &Progress::new())
            .expect_err("refused");
        assert!(
            err.error.to_string().contains("Filesystem volume"),
            "{}",
            err.error
        );
        assert_eq!(err.target_state, "nothing was written");
    }
}
