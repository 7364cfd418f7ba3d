//! `cdi-controller`: flags and upstream's env vars → settings, then `serve::run`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use anyhow::Context as _;
use cdi_controller::Settings;
use cdi_controller::serve::{RunOptions, run};
use clap::Parser;

/// Reconciles CDI DataVolumes into PersistentVolumeClaims and importer or upload pods.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Image of importer pods.
    #[arg(long, env = "IMPORTER_IMAGE")]
    importer_image: String,
    /// Image of upload server pods.
    #[arg(long, env = "UPLOADSERVER_IMAGE")]
    uploadserver_image: String,
    /// Image of clone source pods (host-assisted clones).
    #[arg(
        long,
        env = "CLONER_IMAGE",
        default_value = "quay.io/cdi-rs/cdi-cloner:latest"
    )]
    cloner_image: String,
    /// imagePullPolicy of worker pods.
    #[arg(long, env = "PULL_POLICY", default_value = "IfNotPresent")]
    pull_policy: String,
    /// The controller's own namespace (its Lease and the upload CAs live there).
    #[arg(long, env = "CDI_NAMESPACE", default_value = "cdi")]
    namespace: String,
    /// Worker pods' log verbosity.
    #[arg(long, env = "VERBOSITY", default_value_t = 2)]
    verbosity: u8,
    /// The upload proxy's Service name.
    #[arg(long, env = "UPLOADPROXY_SERVICE", default_value = "cdi-uploadproxy")]
    uploadproxy_service: String,
    /// Where /metrics, /healthz and /readyz are served (plain HTTP).
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Take the leader Lease before reconciling (turn off only for a single replica).
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// cdi-apiserver's token-signing public key(s) (PEM bundle), to check the tokens
    /// cross-namespace clones carry; without it such clones fail.
    #[arg(long, env = "APISERVER_PUBLIC_KEY_FILE")]
    token_public_key: Option<std::path::PathBuf>,
    /// A kubeconfig file; the in-cluster configuration (or $KUBECONFIG) otherwise.
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// For tests: DataImportCrons with a schedule poll every this many seconds instead of on
    /// their schedule's minutes.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    dataimportcron_poll_interval: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cdi_logging::init("RUST_LOG", "info,kube_runtime=warn");
    let args = Args::parse();
    let config = match &args.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no in-cluster configuration and no kubeconfig: pass --kubeconfig")?,
    };
    let client = kube::Client::try_from(config).context("creating the Kubernetes client")?;
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("cdi-controller-{}", std::process::id()));
    let settings = Settings {
        importer_image: args.importer_image,
        uploadserver_image: args.uploadserver_image,
        cloner_image: args.cloner_image,
        pull_policy: args.pull_policy,
        namespace: args.namespace,
        verbosity: args.verbosity,
        uploadproxy_service: args.uploadproxy_service,
        log_format: std::env::var(cdi_logging::FORMAT_VAR)
            .ok()
            .filter(|f| !f.is_empty()),
        dataimportcron_poll_interval: args
            .dataimportcron_poll_interval
            .map(std::time::Duration::from_secs),
    };
    let clone_tokens = match &args.token_public_key {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the token public key {}", path.display()))?;
            let validator = cdi_token::Validator::from_public_pem(&pem)
                .with_context(|| format!("no usable public key in {}", path.display()))?;
            Some(std::sync::Arc::new(validator))
        }
        None => None,
    };
    let options = RunOptions {
        clone_tokens,
        metrics_addr: args.metrics_addr,
        leader_elect: args.leader_elect,
        identity,
    };
    run(client, settings, options)
        .await
        .context("cdi-controller")
}
