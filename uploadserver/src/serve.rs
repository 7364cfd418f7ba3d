//! The TLS listener: accepts connections, verifies client certificates when they are given,
//! puts the client's common name on each request, and bounds what a slow or hostile client
//! can hold ([`Timeouts`]: handshake, headers, a connection with no request in progress; and
//! the header size). Stops accepting on shutdown and lets the responses in flight finish.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::Timeouts;
use crate::routes::ClientIdentity;
use crate::tls::common_name;

/// Most header bytes a request may send.
const MAX_HEADER_BYTES: usize = 64 << 10;
/// How long responses in flight may take once the server is stopping.
const DRAIN: Duration = Duration::from_secs(10);

/// The requests of one connection in progress.
#[derive(Debug, Default)]
struct Activity {
    in_flight: AtomicUsize,
    changed: Notify,
}

/// One request in progress, until dropped.
struct InFlight(Arc<Activity>);

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        InFlight(Arc::clone(self))
    }

    /// Completes once the connection has had no request in progress for `limit`. hyper's
    /// header timeout does not cover a connection before it knows the protocol (the HTTP/2
    /// preface is read first), nor an HTTP/2 connection without streams; this does.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                tokio::select! {
                    () = tokio::time::sleep(limit) => return,
                    () = &mut changed => {}
                }
            } else {
                changed.await;
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// Serves `app` on `listener` with `tls` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "Accepting a connection failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        set_nodelay(&tcp);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(timeouts.handshake, acceptor.accept(tcp));
            let stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed.");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out.");
                    return;
                }
            };
            let cn = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(common_name);
            let identity = ClientIdentity(cn);
            let activity = Arc::new(Activity::default());
            let requests = Arc::clone(&activity);
            let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(identity.clone());
                let in_flight = requests.begin();
                let app = app.clone();
                async move {
                    let response = app.oneshot(req).await;
                    drop(in_flight);
                    response
                }
            });
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            tokio::select! {
                ended = watcher.watch(conn) => if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "Connection ended with an error.");
                },
                () = activity.idle_for(timeouts.header) => {
                    tracing::debug!(%peer, "Connection closed: no request for the header timeout.");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Connections still open after the drain period; closing them.");
    }
}

/// Turns Nagle's algorithm off on an accepted connection, so that small frames back to the
/// client (HTTP/2 window updates, answers to tus PATCHes) do not wait for delayed ACKs.
fn set_nodelay(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!(error = %e, "Setting TCP_NODELAY failed.");
    }
}
