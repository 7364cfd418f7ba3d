//! Hand-written HTTP/1.1 over TLS, for the requests and clients a real HTTP client will not
//! make: oversized or endless headers, requests sent byte by byte, connections that never send
//! one, bodies that stop; and a paced body for slow but steady uploads.
//!
//! ```text
//!  RawTls::new(addr, "localhost", ca, client) ─► connect() ─► TlsStream (ALPN http/1.1)
//!                                             └► request(bytes) ─► the answer, to the close
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::pki::Leaf;

/// How long [`RawTls::request`] waits for the server to close the connection.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

/// The certificates of a PEM text, as trust roots.
pub fn roots(pem: &str) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("root");
    }
    roots
}

/// aws-lc-rs, the one TLS provider of the workspace.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client configuration trusting `ca_pem`, presenting `client` when given; no ALPN.
pub fn client_config(ca_pem: &str, client: Option<&Leaf>) -> ClientConfig {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots(ca_pem));
    match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(leaf.der.clone())],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    }
}

/// A TLS client of one server that speaks HTTP/1.1 by hand.
#[derive(Clone)]
pub struct RawTls {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for RawTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawTls")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl RawTls {
    /// A client of `addr`, verifying it as `server_name` against `ca_pem`, presenting
    /// `client` when given, offering only HTTP/1.1.
    pub fn new(addr: SocketAddr, server_name: &str, ca_pem: &str, client: Option<&Leaf>) -> Self {
        let mut config = client_config(ca_pem, client);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        RawTls {
            addr,
            server_name: ServerName::try_from(server_name.to_owned()).expect("server name"),
            config: Arc::new(config),
        }
    }

    /// A fresh connection, its handshake done.
    pub async fn connect(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        TlsConnector::from(Arc::clone(&self.config))
            .connect(self.server_name.clone(), tcp)
            .await
            .expect("TLS handshake")
    }

    /// Sends `request` as written on a fresh connection and reads until the server closes it
    /// (panics if it has not within 20 s): everything it answered, as text.
    pub async fn request(&self, request: &[u8]) -> String {
        let mut tls = self.connect().await;
        // The server may answer and close before it read everything.
        let _ = tls.write_all(request).await;
        let _ = tls.flush().await;
        String::from_utf8_lossy(&read_until_closed(&mut tls, ANSWER_WITHIN).await).into_owned()
    }
    /// Asserts the server disconnects each kind of silent client within `within`: a TCP
    /// connection that never starts TLS (not before `not_before`: the handshake timeout), TLS
    /// and then no request, the HTTP/2 preface and an empty SETTINGS frame and then nothing,
    /// and a keep-alive connection left idle after its answer to `GET /healthz`.
    pub async fn assert_silent_clients_are_disconnected(
        &self,
        not_before: Duration,
        within: Duration,
    ) {
        let started = tokio::time::Instant::now();
        let mut tcp = TcpStream::connect(self.addr).await.expect("connect");
        read_until_closed(&mut tcp, within).await;
        assert!(
            started.elapsed() >= not_before,
            "cut after {:?}",
            started.elapsed()
        );

        // TLS done, then silence: no request ever starts.
        let mut tls = self.connect().await;
        read_until_closed(&mut tls, within).await;

        // The HTTP/2 preface and an empty SETTINGS frame, then silence.
        let mut tls = self.connect().await;
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .expect("preface");
        read_until_closed(&mut tls, within).await;

        // A keep-alive connection left idle after its answer.
        let mut tls = self.connect().await;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("request");
        let answer = read_until_closed(&mut tls, within).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
}

/// Reads from `stream` until the peer closes it, fails, or `within` passes (then panics: a
/// connection the server should have closed is still open).
pub async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection is still open after {within:?}; read {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// Writes `bytes` one at a time, `pause` apart, until the peer cuts the connection or
/// `give_up` has passed: whether it was cut.
pub async fn trickle<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    pause: Duration,
    give_up: Duration,
) -> bool {
    let started = tokio::time::Instant::now();
    for &b in bytes {
        if stream.write_all(&[b]).await.is_err() || stream.flush().await.is_err() {
            return true;
        }
        tokio::time::sleep(pause).await;
        if started.elapsed() > give_up {
            break;
        }
    }
    false
}

/// The status code of a raw HTTP/1.1 answer (0 when there is none).
pub fn status_of(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A body of `pieces` yielded one by one, each after `pause`: a slow but steady client.
pub fn paced(
    pieces: Vec<Bytes>,
    pause: Duration,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(pieces.into_iter(), move |mut rest| async move {
        let next = rest.next()?;
        tokio::time::sleep(pause).await;
        Some((Ok(next), rest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_read_from_the_status_line_only() {
        assert_eq!(
            status_of("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            431
        );
        assert_eq!(status_of("HTTP/1.0 200 OK\r\n"), 0);
        assert_eq!(status_of(""), 0);
    }
}
