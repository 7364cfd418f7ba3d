//! `cdi-cloner`: the source side of a host-assisted clone. Turns the source claim (its
//! `disk.img`, or its block device) into cdi-rs's clone stream (sparse: holes and zero granules
//! never travel; every frame hashed, the digest verified by the target before it commits) and
//! sends it to the target claim's upload server with tus over mTLS, resuming at the server's
//! offset after a dropped connection, a 5xx or a restart of this process.
//!
//! ```text
//!  env ─► Config ─► CloneSource ─► Producer (thread) ─pieces─► PATCH body ─mTLS─► upload server
//!                                     ▲ checkpoints                 │ broken: back off, HEAD
//!                                     └──────── resume at offset ◄──┘
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod send;

use std::sync::Arc;

use cdi_datapath::Progress;
use cdi_datapath::clone::{CloneSource, SourceKind};
use cdi_worker::metrics::{self, CLONE_PREFIX, Extra};
use cdi_worker::{Failure, Outcome, Paths};

use crate::config::{Config, VolumeMode};
pub use crate::error::CloneError;

/// Runs the clone and says how it ended.
pub fn run(cfg: &Config, paths: &Paths) -> Outcome {
    let progress = Progress::new();
    let extra = Arc::new(Extra::default());
    metrics::start(
        &paths.metrics_addr,
        CLONE_PREFIX,
        cfg.owner_uid.clone(),
        &progress,
        &extra,
    );
    if cfg.preallocation {
        tracing::info!("PREALLOCATION=true: the target's upload server preallocates.");
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CloneError::Source(cdi_datapath::Error::Source(e)))
        .and_then(|rt| rt.block_on(clone(cfg, &progress, &extra)));
    match result {
        Ok(()) => Outcome::Success {
            preallocation_applied: false,
            message: "Clone Complete".into(),
        },
        Err(CloneError::Source(error)) => Outcome::from_failure(
            &Failure {
                error,
                target_state: "the target's partial copy was discarded".into(),
            },
            "Unable to clone",
        ),
        Err(e) => {
            tracing::error!(error = %e, "Clone failed.");
            let (reason, terminal) = cdi_worker::termination::reason(e.kind());
            Outcome::failure_text(format!("Unable to clone: {e}"), reason, terminal)
        }
    }
}

async fn clone(
    cfg: &Config,
    progress: &Arc<Progress>,
    extra: &Arc<Extra>,
) -> Result<(), CloneError> {
    let kind = match cfg.volume_mode {
        VolumeMode::Block => SourceKind::Device,
        VolumeMode::Filesystem => SourceKind::File,
    };
    let source = Arc::new(CloneSource::open(&cfg.source, kind)?);
    tracing::info!(
        source = %cfg.source.display(),
        size = source.size(),
        url = %cfg.tus_url,
        "Cloning."
    );
    let http = send::client(&cfg.tls, cfg.resolve())?;
    let mut sender = send::Sender::new(http, cfg.tus_url.clone(), source, progress, extra);
    sender.run().await
}
