//! cdi-apiserver: flags and environment → [`cdi_apiserver::Config`], tracing, run until SIGTERM.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Serves upload.cdi.kubevirt.io/v1beta1 UploadTokenRequests as an aggregated API server, and
/// the DataVolume admission webhooks (/datavolume-mutate, /datavolume-validate).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Serving certificate (PEM chain); its SANs must hold the Service's DNS name
    /// (cdi-api.<namespace>.svc).
    #[arg(long, env = "TLS_CERT_FILE")]
    tls_cert_file: PathBuf,
    /// Private key of the serving certificate (PEM).
    #[arg(long, env = "TLS_KEY_FILE")]
    tls_key_file: PathBuf,
    /// RSA private key (PEM, PKCS#1 or PKCS#8) that signs upload and clone tokens: key id_rsa
    /// of Secret cdi-api-signing-key.
    #[arg(long, env = "SIGNING_KEY_FILE")]
    signing_key: PathBuf,
    /// Kubeconfig to use instead of the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cdi_logging::init("RUST_LOG", "info");
    let args = Args::parse();
    let config = cdi_apiserver::Config {
        listen: args.listen,
        serving: cdi_apiserver::tls::ServingFiles {
            cert: args.tls_cert_file,
            key: args.tls_key_file,
        },
        signing_key: args.signing_key,
        kubeconfig: args.kubeconfig,
    };
    cdi_apiserver::run(config, shutdown_signal())
        .await
        .context("cdi-apiserver")
}

/// SIGTERM (the kubelet) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot watch SIGTERM; only Ctrl-C stops the server.");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received."),
        _ = tokio::signal::ctrl_c() => tracing::info!("Interrupted."),
    }
}
