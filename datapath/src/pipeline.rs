//! One import, end to end, on four kinds of thread joined by bounded channels:
//!
//! ```text
//!  source ──chunks──► hash (checksum of the bytes as received)
//!     └─────chunks──► decode (layers, raw/qcow2) ──writes──► writer ──► sink
//!                        └─► qcow2 decompress workers ─writes─┘
//! ```
//!
//! No stage buffers without bound: every channel has a fixed depth, so a slow disk slows the
//! download instead of filling memory. The image becomes visible only after the writer, the
//! decoder and the checksum all succeeded; on any failure the sink is aborted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cdi_formats::Format;
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::checksum::{Algorithm, Checksum, Hasher, PendingChecksum, SourceDigest};
use crate::decode::{self, ChannelReader, Chunk, DecodeConfig, DecodeReport, FormatChoice};
use crate::error::Error;
use crate::progress::Progress;
use crate::sink::writer::{WriteOp, Writer};
use crate::sink::{Sink, SinkReport};
use crate::source::Source;

/// Default memory limit: upstream's importer pod gets 600M; we aim to stay under 256 MiB.
pub const DEFAULT_MEMORY_LIMIT: usize = 256 << 20;

/// Chunks in flight between the source and each consumer.
const CHUNK_QUEUE: usize = 8;
/// The same for a mapped source, whose chunks cost no memory of ours (they are the page
/// cache's): the hash, the slowest stage, can run further ahead when the writer stalls for a
/// moment. Measured on the plain qcow2: 0.29 s with 8, 0.27 s with 32.
const MAPPED_CHUNK_QUEUE: usize = 32;
/// Writes in flight between the decoder and the writer.
const WRITE_QUEUE: usize = 16;

/// What to do, independent of where the bytes come from and go.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    /// The expected digest of the source's bytes as transferred; a mismatch fails the import.
    pub checksum: Option<Checksum>,
    /// A digest of the source to compute and report (an upload server returns it to the
    /// client); computed beside `checksum` when the algorithms differ.
    pub digest: Option<Algorithm>,
    /// An expected digest that may be set while the import runs, checked before the commit as
    /// `checksum` is; it must use `checksum`'s or `digest`'s algorithm.
    pub pending_checksum: Option<PendingChecksum>,
    pub format: FormatChoice,
    /// Bounds the memory the import may use for buffers and qcow2 bookkeeping.
    pub memory_limit: usize,
    /// Where a qcow2 spill file may go; the target's directory by default.
    pub spill_dir: PathBuf,
    /// Threads for xz and qcow2 compressed-cluster decoding.
    pub threads: usize,
}

impl Default for ImportSpec {
    fn default() -> Self {
        ImportSpec {
            checksum: None,
            digest: None,
            pending_checksum: None,
            format: FormatChoice::Auto,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            spill_dir: std::env::temp_dir(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// What a successful import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub source_bytes: u64,
    pub decode: DecodeReport,
    pub sink: SinkReport,
    pub written: u64,
    /// Bytes of the final image left as holes (never written).
    pub holes: u64,
    /// The verified digest, when a checksum was given.
    pub checksum: Option<Checksum>,
    /// The digest computed of the source (the checksum's algorithm, else `ImportSpec::digest`).
    pub digest: Option<Checksum>,
    /// The source's own digests, all verified.
    pub verified: Vec<SourceDigest>,
    pub elapsed: Duration,
}

impl ImportSpec {
    /// The algorithms the source is hashed with: the checksum's, then the digest's.
    fn hash_algorithms(&self) -> Vec<Algorithm> {
        let mut algorithms: Vec<Algorithm> = self.checksum.iter().map(|c| c.algorithm).collect();
        if let Some(a) = self.digest
            && !algorithms.contains(&a)
        {
            algorithms.push(a);
        }
        algorithms
    }

    /// Hashers for the spec's algorithms and those of the source's own digests.
    fn hashers(&self, source: &[SourceDigest]) -> Option<Vec<Hasher>> {
        let mut algorithms = self.hash_algorithms();
        for d in source {
            if !algorithms.contains(&d.checksum.algorithm) {
                algorithms.push(d.checksum.algorithm);
            }
        }
        (!algorithms.is_empty()).then(|| algorithms.into_iter().map(Hasher::new).collect())
    }

    /// Checks the computed digests against the expected ones (the source's own, the checksum,
    /// a pending one) and returns the one to report: the checksum's algorithm, else
    /// `digest`'s.
    fn check_digest(
        &self,
        computed: Option<Vec<Checksum>>,
        source: &[SourceDigest],
    ) -> Result<Option<Checksum>, Error> {
        let computed = computed.unwrap_or_default();
        let of = |algorithm: Algorithm| computed.iter().find(|c| c.algorithm == algorithm);
        for vouched in source {
            let expected = &vouched.checksum;
            if let Some(actual) = of(expected.algorithm)
                && actual.hex != expected.hex
            {
                return Err(Error::SourceDigestMismatch {
                    origin: vouched.origin.clone(),
                    algorithm: expected.algorithm.name(),
                    expected: expected.hex.clone(),
                    actual: actual.hex.clone(),
                });
            }
        }
        let expected = self.checksum.iter().cloned().chain(
            self.pending_checksum
                .as_ref()
                .and_then(PendingChecksum::get),
        );
        for expected in expected {
            let Some(actual) = of(expected.algorithm) else {
                return Err(Error::Config(format!(
                    "the expected {} digest cannot be checked: the import computed {}",
                    expected.algorithm.name(),
                    self.hash_algorithms()
                        .iter()
                        .map(|a| a.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            expected.verify(actual.hex.clone())?;
        }
        let reported = self.checksum.as_ref().map(|c| c.algorithm).or(self.digest);
        Ok(reported.and_then(of).cloned())
    }

    /// Whether a checksum of `algorithm` set later can be verified by this import.
    pub fn hashes(&self, algorithm: Algorithm) -> bool {
        self.hash_algorithms().contains(&algorithm)
    }
}

impl ImportReport {
    pub fn format_chain(&self) -> String {
        let mut parts: Vec<&str> = self.decode.layers.iter().map(|f| f.name()).collect();
        parts.push(self.decode.image_format.unwrap_or(Format::Raw).name());
        parts.join(" > ")
    }
}

/// An import that failed: why, and what it left on the target.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ImportFailure {
    #[source]
    pub error: Error,
    /// A sentence about the target's state (removed, wiped, untouched).
    pub target_state: String,
}

/// Runs one import from `source` into `sink`.
pub fn import(
    mut source: Box<dyn Source>,
    sink: Box<dyn Sink>,
    spec: &ImportSpec,
    progress: &Arc<Progress>,
) -> Result<ImportReport, ImportFailure> {
    let started = Instant::now();
    progress.set_total(source.total_len());
    let vouched = source.expected_digests();
    let cfg = DecodeConfig {
        format: spec.format,
        capacity: sink.capacity(),
        source_len: source.total_len(),
        random_access: source.random_access(),
        memory_limit: spec.memory_limit,
        spill_dir: spec.spill_dir.clone(),
        threads: spec.threads,
    };
    let failed = AtomicBool::new(false);
    let depth = if source.mapped() {
        MAPPED_CHUNK_QUEUE
    } else {
        CHUNK_QUEUE
    };
    let (chunk_tx, chunk_rx) = bounded::<Chunk>(depth);
    let (hash_tx, hash_rx) = bounded::<Chunk>(depth);
    let (write_tx, write_rx) = bounded::<WriteOp>(WRITE_QUEUE);
    let hashers = spec.hashers(&vouched);

    let (read_result, hash_result, decode_result, writer) = std::thread::scope(|scope| {
        let failed = &failed;
        let hash_tx = hashers.is_some().then_some(hash_tx);
        let reader =
            scope.spawn(|| read_source(source.as_mut(), chunk_tx, hash_tx, progress, failed));
        let hash = scope.spawn(move || hashers.map(|h| hash_chunks(h, hash_rx)));
        let decoder = scope.spawn(|| {
            let r = decode::decode(ChannelReader::new(chunk_rx), &cfg, &write_tx);
            drop(write_tx);
            r.inspect_err(|_| failed.store(true, Ordering::Relaxed))
        });
        let writer = scope.spawn(|| {
            let mut w = Writer::new(sink, Arc::clone(progress));
            let r = write_all(&mut w, write_rx);
            (w, r.inspect_err(|_| failed.store(true, Ordering::Relaxed)))
        });
        (
            reader.join().unwrap_or(Err(Error::Cancelled)),
            hash.join().unwrap_or(None),
            decoder.join().unwrap_or(Err(Error::Cancelled)),
            writer.join(),
        )
    });
    let Ok((mut writer, write_result)) = writer else {
        return Err(ImportFailure {
            error: Error::Cancelled,
            target_state: "unknown: the writer panicked".into(),
        });
    };
    let outcome = (|| {
        // The root cause first: a failed read or write shows up downstream or upstream as a
        // broken pipe or a cancelled send.
        let source_bytes = read_result.or_else(|e| {
            if matches!(e, Error::Cancelled) {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
        // Before anything that was read is trusted (a shrunk file reads as zeros).
        source.check_unchanged()?;
        if let Err(e) = write_result
            && (!matches!(e, Error::Cancelled) || decode_result.is_ok())
        {
            return Err(e);
        }
        let decoded = decode_result?;
        let digest = spec.check_digest(hash_result, &vouched)?;
        let sink_report = writer.sink.commit(decoded.image_size, &writer.written)?;
        let snap = progress.snapshot();
        Ok(ImportReport {
            source_bytes,
            decode: decoded,
            sink: sink_report,
            written: snap.written,
            // Everything of the final image that was not written reads as zeros from holes.
            holes: sink_report.final_size.saturating_sub(snap.written),
            checksum: spec.checksum.clone(),
            digest,
            verified: vouched.clone(),
            elapsed: started.elapsed(),
        })
    })();
    outcome.map_err(|error: Error| {
        let target_state = writer.sink.abort();
        // The caller reports the failure (a worker in its log and termination message, cdictl
        // on stderr); a warning here would say it twice.
        tracing::debug!(error = %error, target = %target_state, "Import failed.");
        ImportFailure {
            error,
            target_state,
        }
    })
}

fn read_source(
    source: &mut dyn Source,
    decode: Sender<Chunk>,
    hash: Option<Sender<Chunk>>,
    progress: &Progress,
    failed: &AtomicBool,
) -> Result<u64, Error> {
    let mut total = 0u64;
    let mut decoding = true;
    while let Some(chunk) = source.next_chunk()? {
        if failed.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        total += chunk.len() as u64;
        progress.add_read(chunk.len() as u64);
        if let Some(h) = &hash {
            h.send(Chunk::Data(chunk.clone()))
                .map_err(|_| Error::Cancelled)?;
        }
        // The decoder may finish before the source does (trailing bytes); keep hashing.
        if decoding && decode.send(Chunk::Data(chunk)).is_err() {
            decoding = false;
            if hash.is_none() {
                break;
            }
        }
    }
    let _ = decode.send(Chunk::End);
    if let Some(h) = hash {
        let _ = h.send(Chunk::End);
    }
    Ok(total)
}

fn hash_chunks(mut hashers: Vec<Hasher>, rx: Receiver<Chunk>) -> Vec<Checksum> {
    for chunk in rx {
        match chunk {
            Chunk::Data(b) => hashers.iter_mut().for_each(|h| h.update(&b)),
            Chunk::End => break,
        }
    }
    hashers
        .into_iter()
        .map(|h| Checksum {
            algorithm: h.algorithm(),
            hex: h.finish_hex(),
        })
        .collect()
}

fn write_all(w: &mut Writer, rx: Receiver<WriteOp>) -> Result<(), Error> {
    for op in rx {
        w.apply(op)?;
    }
    w.flush()
}

/// What an archive extraction did.
#[derive(Debug, Clone)]
pub struct ExtractReport {
    pub source_bytes: u64,
    /// Compression layers around the tar stream, outermost first.
    pub layers: Vec<Format>,
    /// Bytes of file content unpacked.
    pub unpacked: u64,
    pub checksum: Option<Checksum>,
    /// The digest computed of the source, as [`ImportReport::digest`].
    pub digest: Option<Checksum>,
    pub elapsed: Duration,
}

/// Unpacks a (possibly compressed) tar stream from `source` into the directory `dest`. Entries
/// land in a staging directory and are moved into `dest` only after the stream and its checksum
/// are verified; on failure the staging directory is removed.
pub fn extract(
    mut source: Box<dyn Source>,
    dest: &std::path::Path,
    spec: &ImportSpec,
    progress: &Arc<Progress>,
) -> Result<ExtractReport, ImportFailure> {
    let started = Instant::now();
    progress.set_total(source.total_len());
    let vouched = source.expected_digests();
    let staging = dest.join(crate::archive::STAGING);
    let fail = |error: Error| {
        let _ = std::fs::remove_dir_all(&staging);
        ImportFailure {
            error,
            target_state: format!("nothing was left in {}", dest.display()),
        }
    };
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| fail(Error::target("creating", &staging, e)))?;
    let cfg = DecodeConfig {
        format: FormatChoice::Auto,
        capacity: None,
        source_len: source.total_len(),
        random_access: None,
        memory_limit: spec.memory_limit,
        spill_dir: spec.spill_dir.clone(),
        threads: spec.threads,
    };
    let failed = AtomicBool::new(false);
    let (chunk_tx, chunk_rx) = bounded::<Chunk>(CHUNK_QUEUE);
    let (hash_tx, hash_rx) = bounded::<Chunk>(CHUNK_QUEUE);
    let hashers = spec.hashers(&vouched);
    let (read_result, hash_result, unpack_result) = std::thread::scope(|scope| {
        let failed = &failed;
        let hash_tx = hashers.is_some().then_some(hash_tx);
        let reader =
            scope.spawn(|| read_source(source.as_mut(), chunk_tx, hash_tx, progress, failed));
        let hash = scope.spawn(move || hashers.map(|h| hash_chunks(h, hash_rx)));
        let unpacker = scope.spawn(|| {
            let r = (|| {
                let (format, reader, layers) =
                    decode::peel(Box::new(ChannelReader::new(chunk_rx)), &cfg)?;
                if format != Format::Raw {
                    return Err(Error::FormatMismatch {
                        what: "archive",
                        found: format.name(),
                    });
                }
                let unpacked = crate::archive::unpack(reader, &staging)?;
                Ok((layers, unpacked))
            })();
            r.inspect_err(|_| failed.store(true, Ordering::Relaxed))
        });
        (
            reader.join().unwrap_or(Err(Error::Cancelled)),
            hash.join().unwrap_or(None),
            unpacker.join().unwrap_or(Err(Error::Cancelled)),
        )
    });
    let source_bytes = match read_result {
        Ok(n) => n,
        Err(Error::Cancelled) => 0,
        Err(e) => return Err(fail(e)),
    };
    source.check_unchanged().map_err(fail)?;
    let (layers, unpacked) = unpack_result.map_err(fail)?;
    let digest = spec.check_digest(hash_result, &vouched).map_err(fail)?;
    crate::archive::commit(&staging, dest).map_err(fail)?;
    Ok(ExtractReport {
        source_bytes,
        layers,
        unpacked,
        checksum: spec.checksum.clone(),
        digest,
        elapsed: started.elapsed(),
    })
}
