//! `cdi-uploadproxy`: the public upload endpoint. It checks the upload token, waits for the
//! claim's upload server to be ready, and streams the upload to it over mutual TLS.
//!
//! ```text
//!  client ──HTTPS (serving cert, hot-reloaded)──► cors ─► route
//!    /healthz, /readyz                 "OK"
//!    /, /static/*                      page (files of --page-dir)
//!    /v1{alpha,beta}1/upload[-form][-async]   ┐ token (Authorization: Bearer)  ─ 400 / 401
//!    /v1beta1/upload-tus[/{id}]               ┘ token (header or ?token=)       ─ 400 / 401
//!         │ readiness: claim annotations, polled (10 s / 1 s)                   ─ 503
//!         │ archive claims: upload* → upload-archive
//!         ▼
//!    pod cdi-upload-<claim>: status.podIP:8443 (or the stand-in's mapped port),
//!    certificate verified as cdi-upload-<claim>.<ns>.svc, client certificate presented
//!         │ headers filtered, Authorization and the query dropped              ─ 502
//!         ▼
//!    upload server ──response streamed back (tus Location pointed at the proxy)──► client
//! ```
//!
//! Request bodies are never collected: they stream from the client's connection to the
//! upload server's, with backpressure both ways. Every file the proxy reads (serving
//! certificate, client certificate, server CA bundle, token public keys) is re-read when it
//! changes (`reload`). Claims and pods are read through [`UploadTargets`], the API server in
//! production and a map in tests; the readiness decision itself is the pure
//! [`readiness::readiness`].
#![forbid(unsafe_code)]

mod app;
mod auth;
mod backend;
pub mod config;
mod cors;
mod error;
mod forward;
pub use cdi_crds::naming;
mod page;
pub mod readiness;
mod reload;
pub mod routes;
mod server;
pub mod targets;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use app::{AppConfig, AppState, app};
pub use auth::{TokenSources, bearer_token};
pub use backend::{STANDIN_PORTS_ANNOTATION, UPLOAD_SERVER_PORT, UploadServer, upload_server};
pub use config::{Args, Config};
pub use cors::TUS_OPTIONS;
pub use error::{AppError, html_escape};
pub use forward::{ForwardTimeouts, Forwarder, proxy_location};
pub use readiness::ReadinessPolicy;
pub use reload::{LoadError, Loader, Reloadable};
pub use server::{ServeLimits, serve};
pub use targets::{KubeTargets, LookupError, MemoryTargets, UploadTargets};
pub use tls::{client_config, provider, server_config};

use cdi_token::Validator;
use tokio::net::TcpListener;
use tracing::info;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A certificate, key or bundle file is missing or unusable.
    #[error(transparent)]
    Loading(#[from] LoadError),
    /// The listen address is taken or not ours.
    #[error("listening on {addr}: {source}")]
    Listening {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The serving TLS configuration of `config`, reloaded when its files change.
pub fn serving_tls(config: &Config) -> Result<Reloadable<rustls::ServerConfig>, LoadError> {
    Reloadable::from_files(
        "serving certificate",
        vec![config.tls_cert.clone(), config.tls_key.clone()],
        config.reload_interval,
        Box::new(|files| server_config(&files[0], &files[1])),
    )
}

/// The client TLS configuration toward upload servers, reloaded when its files change.
pub fn upload_client_tls(config: &Config) -> Result<Reloadable<rustls::ClientConfig>, LoadError> {
    Reloadable::from_files(
        "upload client certificate",
        vec![
            config.client_cert.clone(),
            config.client_key.clone(),
            config.server_ca.clone(),
        ],
        config.reload_interval,
        Box::new(|files| client_config(&files[0], &files[1], &files[2])),
    )
}

/// The token validator of the public key bundle file, reloaded when it changes.
pub fn token_validator(config: &Config) -> Result<Reloadable<Validator>, LoadError> {
    Reloadable::from_files(
        "token public key",
        vec![config.token_public_key.clone()],
        config.reload_interval,
        Box::new(|files| Validator::from_public_pem(&files[0]).map_err(|e| e.to_string())),
    )
}

/// Loads every file of `config`, listens, and serves until `shutdown` completes.
pub async fn run(
    config: Config,
    targets: Arc<dyn UploadTargets>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let serving = serving_tls(&config)?;
    let state = AppState::new(AppConfig {
        validator: token_validator(&config)?,
        targets,
        forwarder: Forwarder::new(upload_client_tls(&config)?, config.forward),
        readiness: config.readiness,
        page_dir: config.page_dir.clone(),
    });
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listening {
                addr: config.listen,
                source,
            })?;
    info!(addr = %config.listen, "Upload proxy listening (HTTPS).");
    serve(listener, serving, app(state), config.limits, shutdown).await;
    Ok(())
}
