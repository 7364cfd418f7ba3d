//! The import itself: maps the config onto a target and a [`SourceSpec`], runs the data path
//! (or archive extraction or a blank disk), and turns the result into a termination
//! [`Outcome`].

use std::sync::Arc;
use std::time::Duration;

use cdi_datapath::sink::CacheMode;
use cdi_datapath::source::gcs::GcsOptions;
use cdi_datapath::source::registry::RegistryOptions;
use cdi_datapath::source::s3::S3Options;
use cdi_datapath::source::{HttpOptions, SourceSpec};
use cdi_datapath::{Error, ErrorKind, ImportSpec, Progress};
use cdi_worker::metrics::{self, Extra};
use cdi_worker::{Destination, Failure, Outcome, Paths, TargetSpec, Written};

use crate::config::{Config, ContentType, SourceKind};

/// A download that makes no progress for this long is resumed.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the image's container may take to say it serves the disk: the kubelet has pulled
/// every image of the pod before it starts the containers.
const NODE_PULL_READY_WITHIN: Duration = Duration::from_secs(120);

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
    metrics::start(
        &paths.metrics_addr,
        metrics::IMPORT_PREFIX,
        cfg.owner_uid.clone(),
        &progress,
        &extra,
    );
    let target = target(cfg, paths);
    let result = match source_spec(cfg) {
        Ok(None) => target.write_blank(),
        Ok(Some(spec)) => import(cfg, paths, &target, spec, &progress, &extra),
        Err(failure) => Err(failure),
    };
    if let SourceKind::NodePull { done_file, .. } = &cfg.source {
        // Whatever happened, the image's container may now exit.
        if let Err(e) = std::fs::write(done_file, b"") {
            tracing::warn!(error = %e, file = %done_file.display(), "Could not write the done file.");
        }
    }
    match result {
        Ok(written) => Outcome::Success {
            preallocation_applied: written.preallocation_applied,
            message: "Import Complete".into(),
        },
        Err(failure) => {
            let e = &failure.error;
            let prefix = if matches!(e, Error::Http { .. } | Error::Registry { .. })
                && matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Auth)
            {
                connect_prefix(&cfg.source)
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

/// Upstream's wording for a source that could not be reached.
fn connect_prefix(source: &SourceKind) -> &'static str {
    match source {
        SourceKind::S3 { .. } => "Unable to connect to s3 data source",
        SourceKind::Gcs { .. } => "Unable to connect to gcs data source",
        SourceKind::Registry { .. } | SourceKind::NodePull { .. } => {
            "Unable to connect to registry data source"
        }
        SourceKind::Http { .. } | SourceKind::Blank => "Unable to connect to http data source",
    }
}

/// Where the bytes come from (none for a blank disk), with the transport every source shares.
fn source_spec(cfg: &Config) -> Result<Option<SourceSpec>, Failure> {
    let transport = HttpOptions {
        extra_ca_pem: extra_ca(cfg)?,
        insecure: cfg.insecure_tls,
        read_timeout: Some(STALL_TIMEOUT),
        user_agent: Some(concat!("cdi-rs-importer/", env!("CARGO_PKG_VERSION")).into()),
        ..HttpOptions::default()
    };
    Ok(Some(match &cfg.source {
        SourceKind::Blank => return Ok(None),
        SourceKind::Http {
            url,
            basic_auth,
            extra_headers,
        } => SourceSpec::Http {
            url: url.clone(),
            options: HttpOptions {
                basic_auth: basic_auth.clone(),
                headers: extra_headers.clone(),
                ..transport
            },
        },
        SourceKind::S3 { url, credentials } => SourceSpec::S3 {
            url: url.clone(),
            options: S3Options {
                access_key_id: credentials.as_ref().map(|c| c.0.clone()),
                secret_key: credentials.as_ref().map(|c| c.1.clone()),
                http: transport,
                ..S3Options::default()
            },
        },
        SourceKind::Gcs {
            url,
            credentials_file,
        } => SourceSpec::Gcs {
            url: url.clone(),
            options: GcsOptions {
                credentials_file: credentials_file.clone(),
                endpoint: None,
                http: transport,
            },
        },
        SourceKind::NodePull {
            ready_file, port, ..
        } => SourceSpec::Http {
            url: format!("http://127.0.0.1:{port}/{}", served_file(ready_file)?),
            options: transport,
        },
        SourceKind::Registry {
            url,
            credentials,
            architecture,
        } => SourceSpec::Registry {
            url: url.clone(),
            options: RegistryOptions {
                credentials: credentials.clone(),
                architecture: architecture.clone(),
                http: transport,
            },
        },
    }))
}

/// Waits for the image's container to serve the disk: the name of the file it serves.
fn served_file(ready_file: &std::path::Path) -> Result<String, Failure> {
    let deadline = std::time::Instant::now() + NODE_PULL_READY_WITHIN;
    loop {
        if let Ok(name) = std::fs::read_to_string(ready_file)
            && !name.trim().is_empty()
        {
            return Ok(name.trim().to_owned());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Failure::untouched(Error::Http {
                url: ready_file.display().to_string(),
                message: format!(
                    "the image's container did not serve its disk within {} s: check that the image holds one file under /disk and runs on this node's architecture (the pod's server container log says why)",
                    NODE_PULL_READY_WITHIN.as_secs()
                ),
                kind: ErrorKind::Network,
            }));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn import(
    cfg: &Config,
    paths: &Paths,
    target: &TargetSpec,
    source: SourceSpec,
    progress: &Arc<Progress>,
    extra: &Arc<Extra>,
) -> Result<Written, Failure> {
    let resumes = match &source {
        SourceSpec::Http { options, .. } => Some(Arc::clone(&options.resumes)),
        SourceSpec::S3 { options, .. } => Some(Arc::clone(&options.http.resumes)),
        SourceSpec::Gcs { options, .. } => Some(Arc::clone(&options.http.resumes)),
        SourceSpec::Registry { options, .. } => Some(Arc::clone(&options.http.resumes)),
        SourceSpec::File(_) | SourceSpec::Stdin => None,
    };
    let source = source.open().map_err(Failure::untouched)?;
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
    if let Some(resumes) = resumes {
        extra.resumes.store(
            resumes.load(std::sync::atomic::Ordering::Relaxed),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    written
}
