//! The disk file of a container disk, streamed out of its filesystem layers: each layer's blob
//! is read (resumably), hashed against its digest, decompressed (gzip or zstd, by magic) and
//! walked as a tar archive on a thread of its own; the one regular file under `disk/` goes to
//! the import in chunks as it is read. Every layer is walked to its end, so a second disk file,
//! a missing one or a blob whose digest does not match fails the import before its commit.
//!
//! ```text
//!  blob (HTTP, resumable) ─► digest check ─► gunzip | unzstd ─► tar ─► disk/<file> ─► chunks
//! ```

use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};

use super::manifest::Descriptor;
use crate::buffer::BufferPool;
use crate::checksum::{Algorithm, Hasher};
use crate::error::{Error, ErrorKind};
use crate::source::{Source, chunk_pool};

/// Chunks read ahead of the import.
const QUEUE: usize = 8;
/// What the walk can tell the import.
enum Event {
    /// The disk file was found: its path and size; its bytes follow.
    Found {
        path: String,
        size: u64,
    },
    Data(Bytes),
    End,
    Failed(Error),
}

/// Opens a layer's blob for reading; called once per layer, in order.
pub type OpenBlob = Box<dyn FnMut(&Descriptor) -> Result<Box<dyn Source>, Error> + Send>;

/// The disk file inside filesystem layers, as a [`Source`].
pub struct LayerDiskSource {
    image: String,
    events: Receiver<Event>,
    size: u64,
    path: String,
    /// The walk ends by itself once the receiver is dropped (its next send fails).
    _walker: std::thread::JoinHandle<()>,
    done: bool,
}

impl std::fmt::Debug for LayerDiskSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerDiskSource")
            .field("image", &self.image)
            .field("path", &self.path)
            .field("size", &self.size)
            .finish()
    }
}

impl LayerDiskSource {
    /// Starts walking `layers` and waits until the disk file is found (or the walk failed).
    pub fn open(image: &str, layers: Vec<Descriptor>, open_blob: OpenBlob) -> Result<Self, Error> {
        let (tx, events) = bounded(QUEUE);
        let name = image.to_owned();
        let walker = std::thread::Builder::new()
            .name("layer-walk".into())
            .spawn(move || walk(&name, layers, open_blob, &tx))
            .map_err(|e| Error::Config(format!("starting the layer reader: {e}")))?;
        let mut source = LayerDiskSource {
            image: image.to_owned(),
            events,
            size: 0,
            path: String::new(),
            _walker: walker,
            done: false,
        };
        match source.events.recv() {
            Ok(Event::Found { path, size }) => {
                tracing::info!(image, path, size, "Found the disk file in the image.");
                source.path = path;
                source.size = size;
                Ok(source)
            }
            Ok(Event::Failed(e)) => Err(e),
            Ok(Event::End | Event::Data(_)) | Err(_) => Err(Error::Config(format!(
                "{image}: the layer reader stopped without a result"
            ))),
        }
    }
}

impl Source for LayerDiskSource {
    fn describe(&self) -> String {
        format!("{} ({})", self.image, self.path)
    }

    fn total_len(&self) -> Option<u64> {
        Some(self.size)
    }

    fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if self.done {
            return Ok(None);
        }
        match self.events.recv() {
            Ok(Event::Data(chunk)) => Ok(Some(chunk)),
            Ok(Event::End) => {
                self.done = true;
                Ok(None)
            }
            Ok(Event::Failed(e)) => Err(e),
            Ok(Event::Found { path, .. }) => Err(several(&self.image, &[self.path.clone(), path])),
            Err(_) => Err(Error::Config(format!(
                "{}: the layer reader stopped early",
                self.image
            ))),
        }
    }
}

fn several(image: &str, paths: &[String]) -> Error {
    Error::Registry {
        image: image.to_owned(),
        message: format!(
            "it holds more than one file under disk/ ({}); a container disk has exactly one",
            paths.join(", ")
        ),
        kind: ErrorKind::InvalidImage,
    }
}

/// Walks every layer; sends the disk file's bytes, then `End`, or `Failed`.
fn walk(image: &str, layers: Vec<Descriptor>, mut open_blob: OpenBlob, tx: &Sender<Event>) {
    let buffers = chunk_pool();
    let mut found: Vec<String> = Vec::new();
    let mut seen_top: Vec<String> = Vec::new();
    for (index, layer) in layers.iter().enumerate() {
        let result = walk_layer(
            image,
            index,
            layer,
            &mut open_blob,
            &buffers,
            tx,
            &mut found,
            &mut seen_top,
        );
        match result {
            Ok(()) => {}
            Err(Stop::Receiver) => return,
            Err(Stop::Failed(e)) => {
                let _ = tx.send(Event::Failed(e));
                return;
            }
        }
    }
    let event = match found.len() {
        1 => Event::End,
        0 => Event::Failed(Error::Registry {
            image: image.to_owned(),
            message: format!(
                "no disk image file under disk/ in its {} layer(s) (top-level entries: {}); a container disk holds its image as /disk/<file>",
                layers.len(),
                if seen_top.is_empty() {
                    "none".to_owned()
                } else {
                    seen_top.join(", ")
                }
            ),
            kind: ErrorKind::InvalidImage,
        }),
        _ => Event::Failed(several(image, &found)),
    };
    let _ = tx.send(event);
}

enum Stop {
    /// The import went away: nothing more to do.
    Receiver,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

/// How many top-level names a "no disk file" message lists.
const LISTED: usize = 12;

#[allow(clippy::too_many_arguments)]
fn walk_layer(
    image: &str,
    index: usize,
    layer: &Descriptor,
    open_blob: &mut OpenBlob,
    buffers: &BufferPool,
    tx: &Sender<Event>,
    found: &mut Vec<String>,
    seen_top: &mut Vec<String>,
) -> Result<(), Stop> {
    let blob = open_blob(layer)?;
    let mut blob = DigestReader::new(SourceReader::new(blob), layer, image, index)?;
    let decoded = decompress(&mut blob).map_err(|e| damaged_or(image, index, layer, e))?;
    let mut archive = tar::Archive::new(decoded);
    let entries = archive.entries().map_err(|e| {
        Stop::Failed(layer_error(
            image,
            index,
            layer,
            &format!("not a tar archive: {e}"),
        ))
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged_or(image, index, layer, e))?;
        let path = entry
            .path()
            .map_err(|e| damaged_or(image, index, layer, e))?
            .into_owned();
        let kind = entry.header().entry_type();
        if let Some(top) = top_level(&path)
            && seen_top.len() < LISTED
            && !seen_top.contains(&top)
        {
            seen_top.push(top);
        }
        if !kind.is_file() || !is_disk_file(&path) {
            continue;
        }
        let shown = path.display().to_string();
        found.push(shown.clone());
        if found.len() > 1 {
            // The first one's bytes are out already: the import fails before its commit.
            return Err(Stop::Failed(several(image, found)));
        }
        let size = entry.size();
        tx.send(Event::Found { path: shown, size })
            .map_err(|_| Stop::Receiver)?;
        loop {
            let chunk = buffers
                .read_from(&mut entry)
                .map_err(|e| damaged_or(image, index, layer, e))?;
            match chunk {
                Some(chunk) => tx.send(Event::Data(chunk)).map_err(|_| Stop::Receiver)?,
                None => break,
            }
        }
    }
    // The end-of-archive blocks are read; the digest covers every byte of the blob.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| damaged_or(image, index, layer, e))?;
    drop(rest);
    blob.finish()?;
    Ok(())
}

/// A read error: the source's own error when it is one (a network failure stays one), else
/// the layer is damaged.
fn damaged_or(image: &str, index: usize, layer: &Descriptor, e: io::Error) -> Stop {
    let text = e.to_string();
    match e.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(error)) => Stop::Failed(*error),
        _ => Stop::Failed(layer_error(image, index, layer, &text)),
    }
}

fn layer_error(image: &str, index: usize, layer: &Descriptor, why: &str) -> Error {
    Error::Registry {
        image: image.to_owned(),
        message: format!("layer {} ({}) is damaged: {why}", index + 1, layer.digest),
        kind: ErrorKind::InvalidImage,
    }
}

/// `disk/<file>` or `./disk/<file>`, as containerDisks hold their image.
fn is_disk_file(path: &Path) -> bool {
    let text = path.to_string_lossy();
    let rest = text.strip_prefix("./").unwrap_or(&text);
    rest.strip_prefix("disk/").is_some_and(|name| {
        !name.is_empty()
            && !name.ends_with('/')
            && !name
                .rsplit('/')
                .next()
                .is_some_and(|f| f.starts_with(".wh."))
    })
}

fn top_level(path: &Path) -> Option<String> {
    let text = path.to_string_lossy();
    let rest = text.strip_prefix("./").unwrap_or(&text);
    rest.split('/')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Gzip or zstd by magic; anything else is read as a plain tar.
fn decompress<'a, R: Read + 'a>(r: &'a mut R) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    let prefixed = io::Cursor::new(head[..got].to_vec()).chain(r);
    Ok(if head[..got].starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(prefixed))
    } else if head[..got] == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::new(prefixed)?)
    } else {
        Box::new(prefixed)
    })
}

/// A [`Source`] as [`Read`].
struct SourceReader {
    source: Box<dyn Source>,
    chunk: Bytes,
}

impl SourceReader {
    fn new(source: Box<dyn Source>) -> Self {
        SourceReader {
            source,
            chunk: Bytes::new(),
        }
    }
}

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.source.next_chunk().map_err(io::Error::other)? {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

/// Hashes a blob as it is read, and checks its length and digest at the end.
struct DigestReader<'a> {
    inner: SourceReader,
    hasher: Option<Hasher>,
    expected: String,
    size: u64,
    read: u64,
    layer: &'a Descriptor,
    image: &'a str,
    index: usize,
}

impl<'a> DigestReader<'a> {
    fn new(
        inner: SourceReader,
        layer: &'a Descriptor,
        image: &'a str,
        index: usize,
    ) -> Result<Self, Stop> {
        let (algorithm, hex) = blob_digest(&layer.digest).ok_or_else(|| {
            Stop::Failed(layer_error(
                image,
                index,
                layer,
                &format!("its digest {} is not sha256 or sha512", layer.digest),
            ))
        })?;
        Ok(DigestReader {
            inner,
            hasher: Some(Hasher::new(algorithm)),
            expected: hex,
            size: u64::try_from(layer.size).unwrap_or(0),
            read: 0,
            layer,
            image,
            index,
        })
    }

    /// Reads what is left and checks the digest.
    fn finish(&mut self) -> Result<(), Stop> {
        io::copy(self, &mut io::sink())
            .map_err(|e| damaged_or(self.image, self.index, self.layer, e))?;
        let actual = self
            .hasher
            .take()
            .map(Hasher::finish_hex)
            .unwrap_or_default();
        if self.read != self.size || actual != self.expected {
            return Err(Stop::Failed(Error::SourceDigestMismatch {
                origin: format!(
                    "layer {} of {} ({} bytes by its manifest, {} received)",
                    self.index + 1,
                    self.image,
                    self.size,
                    self.read
                ),
                algorithm: "sha256",
                expected: self.expected.clone(),
                actual,
            }));
        }
        Ok(())
    }
}

impl Read for DigestReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// The algorithm and hex of an OCI digest (`sha256:…`, `sha512:…`).
pub fn blob_digest(digest: &str) -> Option<(Algorithm, String)> {
    let (name, hex) = digest.split_once(':')?;
    let algorithm = match name {
        "sha256" => Algorithm::Sha256,
        "sha512" => Algorithm::Sha512,
        _ => return None,
    };
    let checksum: crate::Checksum = format!("{}:{hex}", algorithm.name()).parse().ok()?;
    Some((algorithm, checksum.hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_files_are_regular_names_under_disk() {
        for yes in ["disk/fedora.qcow2", "./disk/a.img", "disk/sub/b.raw"] {
            assert!(is_disk_file(Path::new(yes)), "{yes}");
        }
        for no in [
            "disk/",
            "disks/a.img",
            "a/disk/b.img",
            "disk/.wh.old.img",
            "etc/passwd",
        ] {
            assert!(!is_disk_file(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn oci_digests_name_their_algorithm() {
        let hex = "a".repeat(64);
        assert_eq!(
            blob_digest(&format!("sha256:{hex}")),
            Some((Algorithm::Sha256, hex.clone()))
        );
        assert!(blob_digest(&format!("md5:{}", "a".repeat(32))).is_none());
        assert!(blob_digest("sha256:xyz").is_none());
    }
}
