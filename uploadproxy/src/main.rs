//! `cdi-uploadproxy`: flags and env → `Config`, a Kubernetes client, then `run` until SIGTERM.
#![forbid(unsafe_code)]

use std::sync::Arc;

use anyhow::Context as _;
use cdi_uploadproxy::{Args, KubeTargets, run};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cdi_logging::init("RUST_LOG", "info");
    let args = Args::parse();
    let kube_config = match &args.kubeconfig {
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
    let client = kube::Client::try_from(kube_config).context("creating the Kubernetes client")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    run(args.config(), Arc::new(KubeTargets::new(client)), shutdown)
        .await
        .context("cdi-uploadproxy")
}
