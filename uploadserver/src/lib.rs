//! `cdi-uploadserver`: the per-claim upload pod. Takes one upload over mTLS (plain body,
//! multipart form, tar archive, or resumable tus across many requests), streams it through
//! the data path into the claim (decompressed, qcow2 converted on the fly, written sparsely, no
//! scratch copy), verifies the digest the client sent and returns the one it computed, then
//! exits with CDI's termination message.
//!
//! ```text
//!  proxy ──mTLS──► serve (TLS, client CN) ──► routes ──► PushSender ─► data path ─► claim
//!                                               └─ tus: one import across PATCHes
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod digest;
pub mod error;
pub mod multipart;
pub mod routes;
pub mod serve;
pub mod state;
pub mod tls;
pub mod tus;

use std::time::SystemTime;

use cdi_worker::Outcome;

use crate::config::Config;
use crate::state::{Finished, Shared};

/// The termination message of a successful upload (upstream's texts).
pub fn completion_message(content: config::ContentType) -> &'static str {
    match content {
        config::ContentType::Clone => "Clone Complete",
        config::ContentType::Kubevirt | config::ContentType::Archive => "Upload Complete",
    }
}

/// Runs the server until an upload succeeds or the deadline passes while idle.
pub async fn run(cfg: Config) -> Outcome {
    let tls = match tls::server_config(&cfg.tls) {
        Ok(t) => t,
        Err(e) => {
            return Outcome::failure_text(
                format!("Unable to start the upload server: {e}"),
                "InvalidConfiguration",
                true,
            );
        }
    };
    let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            return Outcome::failure_text(
                format!("Unable to listen on {}: {e}", cfg.listen),
                "IOError",
                false,
            );
        }
    };
    tracing::info!(addr = %cfg.listen, destination = %cfg.target.destination.path().display(), "Upload server listening.");
    let (shared, mut finished) = Shared::new(
        cfg.target.clone(),
        cfg.content_type,
        cfg.client_name.clone(),
        cfg.owner_uid.clone(),
        cfg.spill_dir.clone(),
        cfg.timeouts.body_idle,
    );
    if let Some(deadline) = cfg.deadline {
        let shared = std::sync::Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                let wait = deadline
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                tokio::time::sleep(wait.max(std::time::Duration::from_secs(1))).await;
                if SystemTime::now() >= deadline && shared.expire() {
                    tracing::info!(
                        "Deadline passed with no upload; exiting for fresh certificates."
                    );
                    return;
                }
            }
        });
    }
    let app = routes::app(std::sync::Arc::clone(&shared));
    let mut watch = finished.clone();
    serve::serve(listener, tls, app, cfg.timeouts, async move {
        let _ = watch.wait_for(Option::is_some).await;
    })
    .await;
    let end = finished.borrow_and_update().clone();
    match end {
        Some(Finished::Uploaded(written)) => Outcome::Success {
            preallocation_applied: written.preallocation_applied,
            message: completion_message(cfg.content_type).into(),
        },
        Some(Finished::DeadlinePassed) => Outcome::DeadlinePassed,
        None => Outcome::failure_text(
            "the upload server stopped without an upload".into(),
            "IOError",
            false,
        ),
    }
}
