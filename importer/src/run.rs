//! The import itself: picks the target (Filesystem file or Block device), sizes it with CDI's
//! arithmetic, runs the data path, and turns the result into a termination [`Outcome`].

use std::sync::Arc;
use std::time::Duration;

use cdi_datapath::sink::{BlockSink, CacheMode, FileSink, RangeSet, Sink, TargetOptions, ZeroMode};
use cdi_datapath::source::{HttpOptions, HttpSource};
use cdi_datapath::{Error, ErrorKind, ImportSpec, Progress};

use crate::config::{Config, ContentType, SourceKind};
use crate::metrics::{self, Extra};
use crate::paths::Paths;
use crate::size::{device_size, filesystem_available, usable_space};
use crate::termination::Outcome;

/// A download that makes no progress for this long is resumed.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Direct I/O through io_uring where it can be had, unless `CACHE_MODE=TRYNONE` requires direct
/// I/O even without io_uring.
fn cache_mode(cfg: &Config) -> CacheMode {
    if cfg.cache_mode_try_none {
        CacheMode::Direct
    } else {
        CacheMode::Auto
    }
}

pub fn run(cfg: &Config, paths: &Paths) -> Outcome {
    let progress = Progress::new();
    let extra = Arc::new(Extra::default());
    if cfg.cache_mode_try_none {
        // Upstream switches qemu-img to O_DIRECT after an OOM kill; we do the same where the
        // volume supports it, and write through the page cache where it does not.
        tracing::info!("CACHE_MODE=TRYNONE: writing with direct I/O where the volume allows.");
    }
    match metrics::serve(
        &paths.metrics_addr,
        cfg.owner_uid.clone(),
        Arc::clone(&progress),
        Arc::clone(&extra),
    ) {
        Ok(addr) => tracing::info!(%addr, "Serving metrics over HTTPS."),
        Err(e) => {
            tracing::warn!(error = %e, addr = %paths.metrics_addr, "Metrics server not started.")
        }
    }
    let result = match &cfg.source {
        SourceKind::Blank => blank(cfg, paths),
        SourceKind::Http { url } => http(cfg, paths, url, &progress, &extra),
    };
    match result {
        Ok(outcome) => outcome,
        Err((e, state)) => failure(&e, &state),
    }
}

type Failure = (Error, String);

fn failure(e: &Error, target_state: &str) -> Outcome {
    tracing::error!(error = %e, target = %target_state, "Import failed.");
    let kind = e.kind();
    if kind == ErrorKind::ChecksumMismatch {
        return Outcome::FailedNoRetry {
            message: format!("Unable to process data: {e}"),
            reason: "ChecksumMismatch",
        };
    }
    let (reason, terminal) = match kind {
        ErrorKind::InvalidImage => ("InvalidImage", true),
        ErrorKind::Unsupported => ("UnsupportedImage", true),
        ErrorKind::TooLarge => ("ImageTooLarge", true),
        ErrorKind::NotFound => ("NotFound", true),
        ErrorKind::Auth => ("Unauthorized", true),
        ErrorKind::Config => ("InvalidConfiguration", true),
        ErrorKind::NoSpace => ("NoSpace", true),
        ErrorKind::Network => ("TransferFailed", false),
        ErrorKind::Io | ErrorKind::ChecksumMismatch => ("IOError", false),
    };
    let prefix = if matches!(e, Error::Http { .. })
        && matches!(kind, ErrorKind::NotFound | ErrorKind::Auth)
    {
        "Unable to connect to http data source"
    } else {
        "Unable to process data"
    };
    Outcome::failure_text(format!("{prefix}: {e}"), reason, terminal)
}

/// The image size a Filesystem target gets: the usable space of min(free space, requested
/// size). Without `IMPORTER_IMAGE_SIZE` the image keeps its own size (bounded by free space).
fn filesystem_target_size(cfg: &Config, paths: &Paths) -> Result<Option<u64>, Failure> {
    let free = filesystem_available(&paths.data_dir).map_err(|e| {
        (
            Error::target("checking free space on", &paths.data_dir, e),
            "nothing was written".into(),
        )
    })?;
    Ok(cfg
        .image_size
        .map(|s| usable_space(cfg.filesystem_overhead, s.min(free))))
}

fn http(
    cfg: &Config,
    paths: &Paths,
    url: &str,
    progress: &Arc<Progress>,
    extra: &Arc<Extra>,
) -> Result<Outcome, Failure> {
    let mut ca = Vec::new();
    for dir in &cfg.cert_dirs {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if !e.file_name().to_string_lossy().starts_with('.') && e.path().is_file() {
                    ca.push(std::fs::read(e.path()).map_err(|err| {
                        (
                            Error::target("reading a CA certificate", &e.path(), err),
                            "nothing was written".to_string(),
                        )
                    })?);
                }
            }
        }
    }
    let options = HttpOptions {
        basic_auth: cfg.basic_auth.clone(),
        headers: cfg.extra_headers.clone(),
        extra_ca_pem: ca,
        insecure: cfg.insecure_tls,
        read_timeout: Some(STALL_TIMEOUT),
        user_agent: Some(concat!("cdi-rs-importer/", env!("CARGO_PKG_VERSION")).into()),
        ..HttpOptions::default()
    };
    let resumes = Arc::clone(&options.resumes);
    let source =
        HttpSource::open_with(url, options).map_err(|e| (e, "nothing was written".into()))?;
    let spec = ImportSpec {
        checksum: cfg.checksum.clone(),
        spill_dir: if paths.scratch.is_dir() {
            paths.scratch.clone()
        } else {
            paths.data_dir.clone()
        },
        ..ImportSpec::default()
    };
    let outcome = match cfg.content_type {
        ContentType::Archive => {
            if paths.is_block() {
                return Err((
                    Error::Config(
                        "archive content needs a Filesystem volume, not a Block volume".into(),
                    ),
                    "nothing was written".into(),
                ));
            }
            let report = cdi_datapath::extract(Box::new(source), &paths.data_dir, &spec, progress)
                .map_err(|f| (f.error, f.target_state))?;
            tracing::info!(bytes = report.unpacked, "Archive unpacked.");
            Outcome::Success {
                preallocation_applied: false,
                message: "Import Complete".into(),
            }
        }
        ContentType::Kubevirt => {
            let sink: Box<dyn Sink> = if paths.is_block() {
                let options = TargetOptions {
                    requested_size: None,
                    preallocate: cfg.preallocation,
                    zero_mode: ZeroMode::Punch,
                    cache: cache_mode(cfg),
                };
                Box::new(
                    BlockSink::open(&paths.block_device, options)
                        .map_err(|e| (e, "nothing was written".into()))?,
                )
            } else {
                let size = filesystem_target_size(cfg, paths)?;
                let options = TargetOptions {
                    requested_size: size,
                    preallocate: cfg.preallocation,
                    zero_mode: ZeroMode::Punch,
                    cache: cache_mode(cfg),
                };
                Box::new(
                    FileSink::create(&paths.data_file(), options)
                        .map_err(|e| (e, "nothing was written".into()))?,
                )
            };
            let report = cdi_datapath::import(Box::new(source), sink, &spec, progress)
                .map_err(|f| (f.error, f.target_state))?;
            tracing::info!(
                format = %report.format_chain(),
                source_bytes = report.source_bytes,
                written = report.written,
                holes = report.holes,
                seconds = report.elapsed.as_secs_f64(),
                "Import complete."
            );
            Outcome::Success {
                preallocation_applied: report.sink.preallocated,
                message: "Import Complete".into(),
            }
        }
    };
    extra.resumes.store(
        resumes.load(std::sync::atomic::Ordering::Relaxed),
        std::sync::atomic::Ordering::Relaxed,
    );
    Ok(outcome)
}

fn blank(cfg: &Config, paths: &Paths) -> Result<Outcome, Failure> {
    let wrap = |e: Error| (e, "no disk was created".to_string());
    if paths.is_block() {
        if !cfg.preallocation {
            return Ok(Outcome::Success {
                preallocation_applied: false,
                message: "Import Complete".into(),
            });
        }
        let size = device_size(&paths.block_device)
            .map_err(|e| wrap(Error::target("sizing", &paths.block_device, e)))?;
        let options = TargetOptions {
            requested_size: None,
            preallocate: true,
            zero_mode: ZeroMode::Write,
            cache: CacheMode::Auto,
        };
        let mut sink = BlockSink::open(&paths.block_device, options).map_err(wrap)?;
        let report = sink.commit(size, &RangeSet::new()).map_err(wrap)?;
        return Ok(Outcome::Success {
            preallocation_applied: report.preallocated,
            message: "Import Complete".into(),
        });
    }
    let size = filesystem_target_size(cfg, paths)?.ok_or_else(|| {
        (
            Error::Config("IMPORTER_IMAGE_SIZE is required for a blank disk".into()),
            "no disk was created".to_string(),
        )
    })?;
    let options = TargetOptions {
        requested_size: Some(size),
        preallocate: cfg.preallocation,
        zero_mode: ZeroMode::Punch,
        cache: CacheMode::Auto,
    };
    let mut sink = FileSink::create(&paths.data_file(), options).map_err(wrap)?;
    let report = match sink.commit(0, &RangeSet::new()) {
        Ok(r) => r,
        Err(e) => {
            let state = sink.abort();
            return Err((e, state));
        }
    };
    tracing::info!(
        size = report.final_size,
        preallocated = report.preallocated,
        "Blank disk created."
    );
    Ok(Outcome::Success {
        preallocation_applied: report.preallocated,
        message: "Import Complete".into(),
    })
}
