//! Serving the router over TLS: one task per connection, the TLS configuration read afresh
//! for each (so a renewed certificate is used by the next connection), HTTP/1.1 and HTTP/2,
//! bounded header size and header-read time, connections without a request in progress
//! closed, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::reload::Reloadable;

/// Limits on clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// Longest TLS handshake.
    pub tls_handshake: Duration,
    /// Longest wait for a request's headers (HTTP/1.1; slow-loris clients), and longest time
    /// a connection may have no request in progress (before its first, between HTTP/1.1
    /// requests, an HTTP/2 connection without streams).
    pub header_read: Duration,
    /// Largest request head (HTTP/1.1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// How long in-flight requests may run on after shutdown was asked for.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            tls_handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// How many requests of one connection are in progress.
#[derive(Debug, Default)]
struct Requests {
    in_flight: AtomicUsize,
    changed: Notify,
}

/// A request in progress until dropped.
struct Running(Arc<Requests>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

impl Requests {
    fn start(self: &Arc<Self>) -> Running {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        Running(Arc::clone(self))
    }

    /// Completes when no request has been in progress for `limit`. hyper's header timeout
    /// starts only once it knows the protocol (it reads the HTTP/2 preface first), and
    /// HTTP/2 has none, so a client that sends nothing after the handshake would otherwise
    /// hold its connection forever.
    async fn idle(&self, limit: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                changed.await;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(limit) => return,
                () = &mut changed => {}
            }
        }
    }
}

/// Serves `router` on `listener` with TLS from `tls` until `shutdown` completes, then lets
/// in-flight requests finish (up to `limits.shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    tls: Reloadable<ServerConfig>,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, mostly: back off instead of spinning.
                warn!(error = %e, "Accepting a connection failed.");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        set_nodelay(&tcp);
        let acceptor = TlsAcceptor::from(tls.current());
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(limits.tls_handshake, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "TLS handshake failed.");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "TLS handshake timed out.");
                        return;
                    }
                };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .max_buf_size(limits.max_header_bytes.max(8192));
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
            let requests = Arc::new(Requests::default());
            let counted = Arc::clone(&requests);
            let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
                let running = counted.start();
                let router = router.clone();
                async move {
                    let response = router.oneshot(request).await;
                    drop(running);
                    response
                }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                ended = watcher.watch(connection) => if let Err(e) = ended {
                    debug!(%peer, error = %e, "Connection ended with an error.");
                },
                () = requests.idle(limits.header_read) => {
                    debug!(%peer, "Connection closed: no request within the header-read timeout.");
                }
            }
        });
    }
    drop(listener);
    info!("Shutting down: no new connections; waiting for uploads in flight.");
    tokio::select! {
        () = graceful.shutdown() => info!("All connections closed."),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            warn!("Shutdown grace period over; closing the remaining connections.");
        }
    }
}

/// Turns Nagle's algorithm off on an accepted connection: HTTP/2's small frames back to the
/// client (window updates, answers) would otherwise wait for delayed ACKs, which more than
/// doubled the time of a tus upload through the proxy (bench/upload.sh).
fn set_nodelay(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        warn!(error = %e, "Setting TCP_NODELAY failed.");
    }
}
