//! cdi-apiserver: serves `upload.cdi.kubevirt.io/v1beta1` as an aggregated API server. Its one
//! resource, `uploadtokenrequests`, is create-only and stored nowhere: creating one returns it
//! with `status.token`, a signed upload token (`cdi-token`) for the named claim, which the upload
//! proxy accepts.
//!
//! ```text
//!  kubectl/virtctl ──► kube-apiserver ──(front-proxy client cert + X-Remote-User/Group/Extra)──┐
//!                      authenticates,     APIService v1beta1.upload.cdi.kubevirt.io            │
//!                      proxies            ─► Service cdi-api ─► cdi-apiserver :8443 ◄────────────┘
//!  cdi-apiserver: TLS (client cert chains to the request-header CA?)      tls.rs, serve.rs
//!              ─► authn (allowed name? user from headers)                authn.rs, auth_config.rs
//!              ─► authz (SubjectAccessReview: create uploadtokenrequests) authz.rs
//!              ─► body (spec.pvcName) ─► token (PS256, signing key)       app.rs, issuer.rs
//! ```
//!
//! The request-header CA, allowed names and header names come from ConfigMap
//! `kube-system/extension-apiserver-authentication`, watched and applied as it changes.
//!
//! The same listener serves the DataVolume admission webhooks (`webhook/`):
//! `/datavolume-mutate` authorizes clones with SubjectAccessReviews for the requesting user and
//! adds the clone token; `/datavolume-validate` applies `cdi_crds::validate`.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth_config;
pub mod authn;
pub mod authz;
pub mod discovery;
mod error;
pub mod issuer;
pub mod serve;
pub mod status;
pub mod tls;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use app::{AppState, app};
pub use error::Error;
pub use issuer::TokenIssuer;

use crate::authz::KubeAuthorizer;
use crate::tls::{ServingFiles, Tls};

/// How often the serving certificate's files are checked for a new pair.
const SERVING_RELOAD_PERIOD: Duration = Duration::from_secs(30);

/// Everything the server is started with (see `main.rs` for the flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`0.0.0.0:8443` in a pod).
    pub listen: SocketAddr,
    /// Serving certificate and key (PEM); the Service's name must be in its SANs.
    pub serving: ServingFiles,
    /// RSA private key (PEM) that signs upload and clone tokens.
    pub signing_key: PathBuf,
    /// Kubeconfig to use instead of the in-cluster configuration (or `KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
}

/// Starts the server and runs it until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let key = std::fs::read(&config.signing_key).map_err(|source| Error::ReadingFile {
        path: config.signing_key.clone(),
        source,
    })?;
    let issuer = cdi_token::Issuer::from_rsa_pem(&key).map_err(|source| Error::SigningKey {
        path: config.signing_key.clone(),
        source,
    })?;
    let tls = Arc::new(Tls::new(config.serving.load()?)?);
    let client = kube_client(config.kubeconfig.as_deref()).await?;

    let (auth_tx, auth_rx) = tokio::sync::watch::channel(None);
    tokio::spawn(auth_config::watch_auth_config(
        client.clone(),
        tls.clone(),
        auth_tx,
    ));
    tokio::spawn(reload_serving(config.serving.clone(), tls.clone()));

    let issuer: Arc<dyn TokenIssuer> = Arc::new(issuer);
    let authorizer: Arc<dyn authz::Authorizer> = Arc::new(KubeAuthorizer::new(client.clone()));
    let webhooks = webhook::MutateState {
        issuer: issuer.clone(),
        authorizer: authorizer.clone(),
        data_sources: Arc::new(webhook::KubeDataSources::new(client)),
    };
    let state = AppState {
        issuer,
        authorizer,
        auth_config: auth_rx,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listening {
            addr: config.listen,
            source,
        })?;
    tracing::info!(
        addr = %config.listen,
        "Serving upload.cdi.kubevirt.io/v1beta1 and the DataVolume webhooks."
    );
    let router = app(state).merge(webhook::router(webhooks));
    serve::serve(listener, tls, router, shutdown).await;
    Ok(())
}

async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, Error> {
    let config = match kubeconfig {
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Kubeconfig(e.to_string()))?,
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Kubeconfig(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Kubeconfig(format!("{}: {e}", path.display())))?
        }
    };
    Ok(kube::Client::try_from(config)?)
}

/// Polls the serving files and switches to a new pair once both parse (cert-manager and
/// kubelet replace a mounted Secret's files together).
async fn reload_serving(files: ServingFiles, tls: Arc<Tls>) {
    let mut last = files.contents();
    loop {
        tokio::time::sleep(SERVING_RELOAD_PERIOD).await;
        let now = files.contents();
        if now.is_none() || now == last {
            continue;
        }
        match files.load().and_then(|serving| tls.set_serving(serving)) {
            Ok(()) => {
                tracing::info!(cert = %files.cert.display(), "Serving certificate reloaded.");
                last = now;
            }
            Err(e) => tracing::warn!(error = %e, "The new serving certificate cannot be used yet."),
        }
    }
}
