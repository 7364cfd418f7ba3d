//! The import itself: maps the config onto a target and a source, runs the data path (or
//! archive extraction or a blank disk), and turns the result into a termination [`Outcome`].

use std::sync::Arc;
use std::time::Duration;

use cdi_datapath::sink::CacheMode;
use cdi_datapath::source::{HttpOptions, HttpSource};
use cdi_datapath::{Error, ErrorKind, ImportSpec, Progress};
use cdi_worker::metrics::{self, Extra};
use cdi_worker::{Destination, Failure, Outcome, Paths, TargetSpec, Written};

use crate::config::{Config, ContentType, SourceKind};

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

fn target(cfg: &Config, paths: &Paths) -> TargetSpec {
    TargetSpec {
        destination: Destination::from_mounts(paths),
        image_size: cfg.image_size,
        filesystem_overhead: cfg.filesystem_overhead,
        preallocation: cfg.preallocation,
        cache: cache_mode(cfg),
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
    let target = target(cfg, paths);
    let result = match &cfg.source {
        SourceKind::Blank => target.write_blank(),
        SourceKind::Http { url } => http(cfg, paths, &target, url, &progress, &extra),
    };
    match result {
        Ok(written) => Outcome::Success {
            preallocation_applied: written.preallocation_applied,
            message: "Import Complete".into(),
        },
        Err(failure) => {
            let e = &failure.error;
            let prefix = if matches!(e, Error::Http { .. })
                && matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Auth)
            {
                "Unable to connect to http data source"
            } else {
                "Unable to process data"
            };
            Outcome::from_failure(&failure, prefix)
        }
    }
}

/// The CA certificates in the configured directories, trusted beside the system roots.
fn extra_ca(cfg: &Config) -> Result<Vec<Vec<u8>>, Failure> {
    let mut ca = Vec::new();
    for dir in &cfg.cert_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with('.') && e.path().is_file() {
                let pem = std::fs::read(e.path()).map_err(|err| {
                    Failure::untouched(Error::target("reading a CA certificate", &e.path(), err))
                })?;
                ca.push(pem);
            }
        }
    }
    Ok(ca)
}

fn http(
    cfg: &Config,
    paths: &Paths,
    target: &TargetSpec,
    url: &str,
    progress: &Arc<Progress>,
    extra: &Arc<Extra>,
) -> Result<Written, Failure> {
    let options = HttpOptions {
        basic_auth: cfg.basic_auth.clone(),
        headers: cfg.extra_headers.clone(),
        extra_ca_pem: extra_ca(cfg)?,
        insecure: cfg.insecure_tls,
        read_timeout: Some(STALL_TIMEOUT),
        user_agent: Some(concat!("cdi-rs-importer/", env!("CARGO_PKG_VERSION")).into()),
        ..HttpOptions::default()
    };
    let resumes = Arc::clone(&options.resumes);
    let source = Box::new(HttpSource::open_with(url, options).map_err(Failure::untouched)?);
    let spec = ImportSpec {
        checksum: cfg.checksum.clone(),
        spill_dir: if paths.scratch.is_dir() {
            paths.scratch.clone()
        } else {
            paths.data_dir.clone()
        },
        ..ImportSpec::default()
    };
    let written = match cfg.content_type {
        ContentType::Archive => target.write_archive(source, &spec, progress),
        ContentType::Kubevirt => target.write_image(source, &spec, progress),
    };
    extra.resumes.store(
        resumes.load(std::sync::atomic::Ordering::Relaxed),
        std::sync::atomic::Ordering::Relaxed,
    );
    written
}
