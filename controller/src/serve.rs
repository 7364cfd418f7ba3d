//! Runs everything: the metrics and health endpoints, leader election, the caches, and the
//! four controllers, until a shutdown signal or the loss of leadership.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

use crate::certs::{CertDurations, UploadCertificates};
use crate::context::Stores;
use crate::metrics::Metrics;
use crate::{
    Context, Error, Settings, cdiconfig, datasource, datavolume, leader, storageprofile, worker,
};

/// How the process runs, beyond the reconcilers' settings.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where `/metrics`, `/healthz` and `/readyz` are served (plain HTTP).
    pub metrics_addr: SocketAddr,
    /// Take the Lease before reconciling.
    pub leader_elect: bool,
    /// This replica's identity in the Lease and in events.
    pub identity: String,
    /// Checks cross-namespace clone tokens (cdi-apiserver's public keys).
    pub clone_tokens: Option<Arc<cdi_token::Validator>>,
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

/// The HTTP endpoints: Prometheus metrics and the probes.
fn app(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<HttpState>| async move { s.metrics.encode() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<HttpState>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not leading or caches not synced yet",
                    )
                }
            }),
        )
        .with_state(HttpState { metrics, ready })
}

/// Resolves on SIGTERM or Ctrl-C.
async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the controller until it is told to stop or loses leadership.
pub async fn run(client: Client, settings: Settings, options: RunOptions) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(options.metrics_addr)
        .await
        .map_err(|source| Error::Bind {
            addr: options.metrics_addr,
            source,
        })?;
    tracing::info!(addr = %options.metrics_addr, "Serving metrics and probes.");
    let router = app(metrics.clone(), ready.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "Metrics server stopped.");
        }
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let lost = if options.leader_elect {
        let lost = tokio::select! {
            lost = leader::acquire(leases.clone(), options.identity.clone()) => lost,
            _ = termination_signal() => return Ok(()),
        };
        futures::future::Either::Left(lost)
    } else {
        futures::future::Either::Right(futures::future::pending::<()>())
    };
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = termination_signal() => tracing::info!("Shutting down."),
                _ = lost => tracing::error!("Leadership lost; stopping."),
            }
            let _ = stop_tx.send(true);
        });
    }

    cdiconfig::reconcile::ensure_exists(&client).await?;
    let durations = CertDurations::default();
    let certs =
        Arc::new(UploadCertificates::ensure(&client, &settings.namespace, durations).await?);
    crate::certs::client_secret::ensure(&client, &settings.namespace, &certs).await?;
    let (stores, reflectors) = Stores::start(&client);
    tokio::spawn(reflectors);
    stores
        .wait_until_ready()
        .await
        .map_err(Error::WatchCaches)?;
    let namespace = settings.namespace.clone();
    let mut ctx = Context::new(client.clone(), settings, metrics, certs.clone(), stores);
    ctx.clone_tokens = options.clone_tokens.clone();
    ready.store(true, Ordering::Relaxed);
    tracing::info!("Caches synced; reconciling.");

    let refresh_client = client.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(600)).await;
            if let Err(e) = certs.refresh(&refresh_client, &namespace).await {
                tracing::warn!(error = %e, "Could not refresh the upload certificate authorities.");
            }
            if let Err(e) =
                crate::certs::client_secret::ensure(&refresh_client, &namespace, &certs).await
            {
                tracing::warn!(error = %e, "Could not refresh the upload proxy's client certificate.");
            }
        }
    });

    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::join!(
        datavolume::reconcile::run(ctx.clone(), stopped(stop_rx.clone())),
        worker::reconcile::run(ctx.clone(), stopped(stop_rx.clone())),
        datasource::reconcile::run(ctx.clone(), stopped(stop_rx.clone())),
        crate::dataimportcron::reconcile::run(ctx.clone(), stopped(stop_rx.clone())),
        storageprofile::reconcile::run(ctx.clone(), stopped(stop_rx.clone())),
        cdiconfig::reconcile::run(ctx, stopped(stop_rx.clone())),
    );
    if options.leader_elect {
        leader::release(&leases, &options.identity).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn readiness_follows_the_flag_and_metrics_are_served() {
        let metrics = Arc::new(Metrics::new());
        let ready = Arc::new(AtomicBool::new(false));
        let get = |path: &str| Request::get(path).body(Body::empty()).expect("request");
        let app = app(metrics, ready.clone());
        let r = app.clone().oneshot(get("/readyz")).await.expect("served");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        ready.store(true, Ordering::Relaxed);
        let r = app.clone().oneshot(get("/readyz")).await.expect("served");
        assert_eq!(r.status(), StatusCode::OK);
        let r = app.oneshot(get("/metrics")).await.expect("served");
        assert_eq!(r.status(), StatusCode::OK);
    }
}
