//! Forwarding one request to an upload server over mutual TLS, streaming both bodies.
//!
//! ```text
//!  client body ─► IdleBody (fails after `idle` without a byte) ─► hyper http1 ─► TLS ─► upload server
//!  client ◄─ response head (hop-by-hop headers dropped, tus Location rewritten) + streamed body ◄─┘
//! ```
//!
//! Each request gets its own connection (no pool): uploads are few and long, and a fresh
//! connection always presents the current client certificate. Only the headers the upload
//! server reads are passed on; `Authorization` and the query (which may hold a token) never
//! leave the proxy.

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsConnector;
use tracing::debug;

use crate::backend::{UPLOAD_SERVER_PORT, UploadServer};
use crate::error::AppError;
use crate::reload::Reloadable;

/// Request headers passed to the upload server (besides every `Upload-*` header).
const FORWARDED_HEADERS: &[&str] = &[
    "accept",
    "content-digest",
    "content-length",
    "content-type",
    "repr-digest",
    "tus-resumable",
    "user-agent",
    "want-content-digest",
    "want-repr-digest",
    "x-cdi-checksum",
    "x-cdi-content-type",
    "x-http-method-override",
];

/// Response headers that describe one connection, not the response (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The proxy's tus endpoint, which `Location` headers are rewritten to.
pub const TUS_PATH: &str = "/v1beta1/upload-tus";

/// Bounds on a forwarded request. There is no bound on its total duration but `response`: a
/// sync upload is answered only after the image is converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardTimeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// Longest wait for the next piece of the client's body.
    pub idle: Duration,
    /// Longest wait for the upload server's response head (upstream: 24 h for everything).
    pub response: Duration,
}

impl Default for ForwardTimeouts {
    fn default() -> Self {
        ForwardTimeouts {
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(300),
            response: Duration::from_secs(24 * 3600),
        }
    }
}

/// Whether the response's `Location` points into the upload server's tus endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocationRewrite {
    /// Leave it.
    Keep,
    /// Point it at the proxy's tus endpoint.
    Tus,
}

/// Sends requests to upload servers with the (reloadable) client TLS configuration.
#[derive(Clone, Debug)]
pub struct Forwarder {
    tls: Reloadable<ClientConfig>,
    timeouts: ForwardTimeouts,
}

impl Forwarder {
    /// A forwarder presenting the client certificate of `tls`.
    pub fn new(tls: Reloadable<ClientConfig>, timeouts: ForwardTimeouts) -> Self {
        Forwarder { tls, timeouts }
    }

    /// Sends `request` to `server` as `path` and returns its response, body still streaming.
    pub async fn forward(
        &self,
        server: &UploadServer,
        path: &str,
        request: Request<Body>,
        location: LocationRewrite,
    ) -> Result<Response<Body>, AppError> {
        let (parts, body) = request.into_parts();
        let uri: Uri = path
            .parse()
            .map_err(|_| AppError::Backend(format!("invalid upload path {path:?}")))?;
        let mut upstream = Request::builder()
            .method(parts.method)
            .uri(uri)
            .body(IdleBody::new(body, self.timeouts.idle))
            .map_err(|e| AppError::Backend(e.to_string()))?;
        *upstream.headers_mut() = forwarded_headers(&parts.headers, server)?;

        let stream = self.connect(server).await?;
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| AppError::Backend(chain(&e)))?;
        let addr = server.addr;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%addr, error = %chain(&e), "Upload server connection ended with an error.");
            }
        });

        let response = tokio::time::timeout(self.timeouts.response, sender.send_request(upstream))
            .await
            .map_err(|_| {
                AppError::Backend(format!(
                    "no response from {} within {}s",
                    server.server_name,
                    self.timeouts.response.as_secs()
                ))
            })?
            .map_err(|e| AppError::Backend(format!("{}: {}", server.server_name, chain(&e))))?;

        let (mut parts, incoming) = response.into_parts();
        for name in HOP_BY_HOP {
            parts.headers.remove(*name);
        }
        if location == LocationRewrite::Tus {
            rewrite_location(&mut parts.headers);
        }
        Ok(Response::from_parts(parts, Body::new(incoming)))
    }

    async fn connect(
        &self,
        server: &UploadServer,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, AppError> {
        let name = ServerName::try_from(server.server_name.clone())
            .map_err(|e| AppError::Backend(format!("{:?}: {e}", server.server_name)))?;
        let connector = TlsConnector::from(self.tls.current());
        let connecting = async {
            let tcp = TcpStream::connect(server.addr).await?;
            tcp.set_nodelay(true)?;
            connector.connect(name, tcp).await
        };
        tokio::time::timeout(self.timeouts.connect, connecting)
            .await
            .map_err(|_| {
                AppError::Backend(format!(
                    "connecting to {} at {} timed out after {}s",
                    server.server_name,
                    server.addr,
                    self.timeouts.connect.as_secs()
                ))
            })?
            .map_err(|e| {
                AppError::Backend(format!(
                    "connecting to {} at {}: {}",
                    server.server_name,
                    server.addr,
                    chain(&e)
                ))
            })
    }
}

/// The headers of the forwarded request: the ones the upload server reads, and `Host`.
fn forwarded_headers(incoming: &HeaderMap, server: &UploadServer) -> Result<HeaderMap, AppError> {
    let mut headers = HeaderMap::new();
    for (name, value) in incoming {
        let n = name.as_str();
        if FORWARDED_HEADERS.contains(&n) || n.starts_with("upload-") {
            headers.append(name.clone(), value.clone());
        }
    }
    // The logical authority, as upstream's URL names it (not the stand-in's mapped port).
    let host = format!("{}:{UPLOAD_SERVER_PORT}", server.server_name);
    let host = HeaderValue::from_str(&host)
        .map_err(|_| AppError::Backend(format!("invalid host {host:?}")))?;
    headers.insert(header::HOST, host);
    Ok(headers)
}

/// Points a tus `Location` (relative, path-absolute or absolute, into the upload server's
/// `…/upload-tus/<id>`) at the proxy's `/v1beta1/upload-tus/<id>`.
fn rewrite_location(headers: &mut HeaderMap) {
    let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let Some(rewritten) = proxy_location(location) else {
        debug!(location, "Location is not a tus upload; left as it is.");
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&rewritten) {
        headers.insert(header::LOCATION, value);
    }
}

/// The proxy's URL path for the upload named by `location`, if it names one.
pub fn proxy_location(location: &str) -> Option<String> {
    let path = match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |slash| &rest[slash..]),
        None => location,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    const MARKER: &str = "upload-tus/";
    let id = match path.rfind(MARKER) {
        Some(at) => &path[at + MARKER.len()..],
        None if !path.contains('/') => path,
        None => return None,
    };
    if id.is_empty() || id.contains('/') {
        return None;
    }
    Some(format!("{TUS_PATH}/{id}"))
}

/// An error and its sources, `: `-separated (hyper's own messages are terse).
fn chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// The client's body, failing when the client sends nothing for `idle` while the upload
/// server is waiting for more (a client stalled forever would otherwise hold the upload).
struct IdleBody {
    inner: Body,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl IdleBody {
    fn new(inner: Body, idle: Duration) -> Self {
        IdleBody {
            inner,
            idle,
            timer: None,
        }
    }
}

/// The error of a body that went idle.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no data for {0:?}")]
struct IdleError(Duration);

impl HttpBody for IdleBody {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this.timer.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + idle))
                });
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(IdleError(idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderName;

    /// Header names are compared in lower case; checked so a typo in the lists cannot hide.
    fn all_lower_case(names: &[&str]) -> bool {
        names
            .iter()
            .all(|n| HeaderName::from_bytes(n.as_bytes()).is_ok_and(|h| h.as_str() == *n))
    }

    #[test]
    fn header_lists_are_valid_lower_case_names() {
        assert!(all_lower_case(FORWARDED_HEADERS));
        assert!(all_lower_case(HOP_BY_HOP));
    }

    #[test]
    fn only_upload_headers_are_forwarded_and_authorization_never() {
        let mut incoming = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer secret"),
            ("cookie", "a=b"),
            ("content-type", "application/offset+octet-stream"),
            ("content-length", "5"),
            ("upload-offset", "0"),
            ("upload-metadata", "filename ZGlzaw=="),
            ("tus-resumable", "1.0.0"),
            ("repr-digest", "sha-256=:x:"),
            ("x-cdi-content-type", "filesystem-clone"),
            ("host", "proxy.example"),
        ] {
            incoming.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let server = UploadServer {
            addr: "10.0.0.7:8443".parse().expect("addr"),
            server_name: "cdi-upload-disk.vms.svc".into(),
        };
        let out = forwarded_headers(&incoming, &server).expect("headers");
        assert!(out.get("authorization").is_none());
        assert!(out.get("cookie").is_none());
        assert_eq!(out["host"], "cdi-upload-disk.vms.svc:8443");
        for kept in [
            "content-type",
            "content-length",
            "upload-offset",
            "upload-metadata",
            "tus-resumable",
            "repr-digest",
            "x-cdi-content-type",
        ] {
            assert_eq!(out[kept], incoming[kept], "{kept}");
        }
    }

    #[test]
    fn tus_locations_are_pointed_at_the_proxy() {
        for (location, expected) in [
            (
                "/v1beta1/upload-tus/abc123",
                Some("/v1beta1/upload-tus/abc123"),
            ),
            (
                "https://cdi-upload-disk.vms.svc:8443/v1beta1/upload-tus/abc?x=1",
                Some("/v1beta1/upload-tus/abc"),
            ),
            (
                "http://10.0.0.7:8443/upload-tus/abc",
                Some("/v1beta1/upload-tus/abc"),
            ),
            ("abc123", Some("/v1beta1/upload-tus/abc123")),
            ("/somewhere/else", None),
            ("/v1beta1/upload-tus/", None),
            ("https://host", None),
        ] {
            assert_eq!(proxy_location(location).as_deref(), expected, "{location}");
        }
    }

    #[test]
    fn errors_are_shown_with_their_sources() {
        let inner = std::io::Error::other("refused");
        let outer = std::io::Error::other(IdleError(Duration::from_secs(3)));
        assert_eq!(chain(&inner), "refused");
        assert_eq!(chain(&outer), "the client sent no data for 3s");
    }

    #[tokio::test]
    async fn stalled_client_body_fails_after_the_idle_time() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut body = IdleBody::new(Body::from_stream(stream), Duration::from_millis(50));
        tx.send(Ok(Bytes::from_static(b"abc"))).await.expect("send");
        let first = http_body_util::BodyExt::frame(&mut body).await;
        assert!(matches!(first, Some(Ok(_))));
        let second = http_body_util::BodyExt::frame(&mut body).await;
        let err = second.expect("a frame").expect_err("idle");
        assert_eq!(err.to_string(), "the client sent no data for 50ms");
    }
}
