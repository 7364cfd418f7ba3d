//! Test fixtures: certificates and token keys made here, a fake mTLS upload server that records
//! what reaches it, the proxy on 127.0.0.1 or as a bare router, and a TLS test client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use bytes::Bytes;
use cdi_testdata::pki::{Ca, Leaf};
use cdi_testdata::rawtls::{RawTls, client_config, provider, roots};
use cdi_token::{Issuer, Payload, Validator};
use cdi_uploadproxy::{
    AppConfig, AppState, ForwardTimeouts, Forwarder, MemoryTargets, ReadinessPolicy, Reloadable,
    ServeLimits,
};
use futures_util::StreamExt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rcgen::KeyPair;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use crate::objects::{CLAIM, NAMESPACE, claim, ready_claim, upload_pod};
/// The name the fake upload server's certificate is issued for, as the controller issues it.
pub const UPLOAD_SERVER_NAME: &str = "cdi-upload-disk.vms.svc";
pub const CLIENT_NAME: &str = "client.upload-server.cdi.kubevirt.io";
/// The Location the fake upload server answers a tus creation with.
pub const BACKEND_TUS_LOCATION: &str =
    "https://cdi-upload-disk.vms.svc:8443/v1beta1/upload-tus/0123abcd";

// ---------------------------------------------------------------------------------------------
// Certificates and keys.

/// Every credential of a test: the proxy's serving CA, the upload servers' CA, the client
/// CA, and the API server's token key.
pub struct Pki {
    pub proxy_ca: Ca,
    pub proxy_cert: Leaf,
    pub upload_ca: Ca,
    pub upload_server_cert: Leaf,
    pub client_ca: Ca,
    pub client_cert: Leaf,
    pub token_private: String,
    pub token_public: String,
    /// Another RSA key, for forged tokens.
    pub other_token_private: String,
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let proxy_ca = Ca::new("proxy-ca");
        let proxy_cert = proxy_ca.server("cdi-uploadproxy", &["localhost", "127.0.0.1"]);
        let upload_ca = Ca::new("cdi-uploadserver-signer");
        let upload_server_cert = upload_ca.server("cdi-upload-disk", &[UPLOAD_SERVER_NAME]);
        let client_ca = Ca::new("cdi-uploadserver-client-signer");
        let client_cert = client_ca.client(CLIENT_NAME);
        // RSA keys: aws-lc-rs generates them through rcgen.
        let token = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let other = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        Pki {
            proxy_ca,
            proxy_cert,
            upload_ca,
            upload_server_cert,
            client_ca,
            client_cert,
            token_private: token.serialize_pem(),
            token_public: token.public_key_pem(),
            other_token_private: other.serialize_pem(),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Tokens.

pub fn issuer() -> Issuer {
    Issuer::from_rsa_pem(pki().token_private.as_bytes()).expect("token key")
}

pub fn token_at(payload: &Payload, at: SystemTime) -> String {
    issuer().issue(payload, at).expect("token")
}

/// A valid upload token for the test claim.
pub fn token() -> String {
    token_at(&Payload::upload(CLAIM, NAMESPACE), SystemTime::now())
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---------------------------------------------------------------------------------------------
// The proxy.

pub fn fast_readiness() -> ReadinessPolicy {
    ReadinessPolicy {
        timeout: Duration::from_millis(300),
        interval: Duration::from_millis(50),
    }
}

/// The proxy's state with fixed keys and `targets`.
pub fn state(targets: Arc<MemoryTargets>, page_dir: Option<PathBuf>) -> AppState {
    let forward = ForwardTimeouts {
        connect: Duration::from_secs(5),
        ..ForwardTimeouts::default()
    };
    state_with(targets, page_dir, forward)
}

/// [`state`] with `forward` timeouts.
pub fn state_with(
    targets: Arc<MemoryTargets>,
    page_dir: Option<PathBuf>,
    forward: ForwardTimeouts,
) -> AppState {
    let p = pki();
    let validator = Validator::from_public_pem(p.token_public.as_bytes()).expect("validator");
    let client = cdi_uploadproxy::client_config(
        p.client_cert.cert_pem.as_bytes(),
        p.client_cert.key_pem.as_bytes(),
        p.upload_ca.pem.as_bytes(),
    )
    .expect("client config");
    AppState::new(AppConfig {
        validator: Reloadable::fixed(validator),
        targets,
        forwarder: Forwarder::new(Reloadable::fixed(client), forward),
        readiness: fast_readiness(),
        page_dir,
    })
}

/// The router alone (no sockets), with `targets`.
pub fn router(targets: Arc<MemoryTargets>) -> axum::Router {
    cdi_uploadproxy::app(state(targets, None))
}

/// A response collected whole (tests only).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn collect(response: Response<Body>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Sends `request` through the router without sockets.
pub async fn oneshot(router: axum::Router, request: Request<Body>) -> Reply {
    use tower::ServiceExt;
    collect(router.oneshot(request).await.expect("infallible")).await
}

/// The proxy serving on 127.0.0.1 with its serving certificate from files (reloaded at once
/// when they change), until dropped.
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub targets: Arc<MemoryTargets>,
    stop: Option<oneshot::Sender<()>>,
}

impl RunningProxy {
    pub async fn start() -> RunningProxy {
        let limits = ServeLimits {
            shutdown_grace: Duration::from_millis(100),
            ..ServeLimits::default()
        };
        let forward = ForwardTimeouts {
            connect: Duration::from_secs(5),
            ..ForwardTimeouts::default()
        };
        RunningProxy::start_with(limits, forward).await
    }

    /// The proxy with its own client `limits` and `forward` timeouts.
    pub async fn start_with(limits: ServeLimits, forward: ForwardTimeouts) -> RunningProxy {
        let p = pki();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("tls.crt"), &p.proxy_cert.cert_pem).expect("write");
        std::fs::write(dir.path().join("tls.key"), &p.proxy_cert.key_pem).expect("write");
        let serving = Reloadable::from_files(
            "serving certificate",
            vec![dir.path().join("tls.crt"), dir.path().join("tls.key")],
            Duration::ZERO,
            Box::new(|files| cdi_uploadproxy::server_config(&files[0], &files[1])),
        )
        .expect("serving config");
        let targets = Arc::new(MemoryTargets::new());
        let router = cdi_uploadproxy::app(state_with(Arc::clone(&targets), None, forward));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(cdi_uploadproxy::serve(
            listener,
            serving,
            router,
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        RunningProxy {
            addr,
            dir,
            targets,
            stop: Some(stop),
        }
    }

    /// Replaces the serving certificate files (by rename, as the kubelet does).
    pub fn replace_serving_cert(&self, leaf: &Leaf) {
        for (name, contents) in [("tls.key", &leaf.key_pem), ("tls.crt", &leaf.cert_pem)] {
            let next = self.dir.path().join(format!("{name}.next"));
            std::fs::write(&next, contents).expect("write");
            std::fs::rename(&next, self.dir.path().join(name)).expect("rename");
        }
    }

    /// A raw HTTP/1.1 client of the proxy, trusting the proxy CA, with no client certificate.
    pub fn raw(&self) -> RawTls {
        RawTls::new(self.addr, "localhost", &pki().proxy_ca.pem, None)
    }

    /// A TLS connection to the proxy speaking HTTP/1.1, for hand-written requests.
    pub async fn raw_tls(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        self.raw().connect().await
    }

    /// Sends `request` over TLS (trusting the proxy CA); the reply and the proxy's certificate.
    pub async fn send(&self, request: Request<Body>) -> (Reply, Vec<u8>) {
        send_tls(self.addr, "localhost", &pki().proxy_ca.pem, None, request).await
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One request over a fresh TLS connection to `addr`, verified as `server_name` against
/// `ca_pem`, optionally presenting `client` (certificate, key).
pub async fn send_tls(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
    client: Option<&Leaf>,
    request: Request<Body>,
) -> (Reply, Vec<u8>) {
    let config = client_config(ca_pem, client);
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(server_name.to_owned()).expect("name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        },
        peer,
    )
}

// ---------------------------------------------------------------------------------------------
// A fake upload server.

/// What one request to the fake upload server carried.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query, as received.
    pub target: String,
    pub headers: HeaderMap,
    pub body_len: u64,
    pub body_sha256: String,
    /// DER of the client certificate presented.
    pub client_cert: Vec<u8>,
}

/// An upload server on 127.0.0.1 that requires a client certificate of the client CA,
/// records every request, answers a tus creation with 201 and [`BACKEND_TUS_LOCATION`], and
/// anything else with 200 "uploaded <n> bytes".
pub struct FakeUploadServer {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    first_data: Arc<Notify>,
}

impl FakeUploadServer {
    pub async fn start() -> FakeUploadServer {
        let p = pki();
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots(&p.client_ca.pem)),
            provider(),
        )
        .build()
        .expect("client verifier");
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from(p.upload_server_cert.der.clone())],
                rustls::pki_types::PrivateKeyDer::from_pem_slice(
                    p.upload_server_cert.key_pem.as_bytes(),
                )
                .expect("key"),
            )
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let first_data = Arc::new(Notify::new());
        let record = Arc::clone(&seen);
        let notify = Arc::clone(&first_data);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let record = Arc::clone(&record);
                let notify = Arc::clone(&notify);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let client_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.to_vec())
                        .unwrap_or_default();
                    let service = hyper::service::service_fn(move |request| {
                        handle(
                            request,
                            client_cert.clone(),
                            Arc::clone(&record),
                            Arc::clone(&notify),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FakeUploadServer {
            port,
            seen,
            first_data,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Completes once the first body bytes of a request have arrived.
    pub async fn first_data(&self) {
        self.first_data.notified().await;
    }
}

async fn handle(
    request: Request<hyper::body::Incoming>,
    client_cert: Vec<u8>,
    record: Arc<Mutex<Vec<Seen>>>,
    first_data: Arc<Notify>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let (parts, mut body) = request.into_parts();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            break;
        };
        if let Some(data) = frame.data_ref() {
            if len == 0 && !data.is_empty() {
                first_data.notify_one();
            }
            hasher.update(data);
            len += data.len() as u64;
        }
    }
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let tus_creation = parts.method == http::Method::POST && target == "/v1beta1/upload-tus";
    record.lock().expect("lock").push(Seen {
        method: parts.method.to_string(),
        target,
        headers: parts.headers,
        body_len: len,
        body_sha256: hex::encode(hasher.finalize()),
        client_cert,
    });
    let response = if tus_creation {
        Response::builder()
            .status(StatusCode::CREATED)
            .header("location", BACKEND_TUS_LOCATION)
            .header("tus-resumable", "1.0.0")
            .body(Body::empty())
    } else {
        Response::builder()
            .header("x-backend", "fake")
            .body(Body::from(format!("uploaded {len} bytes")))
    };
    Ok(response.expect("response"))
}

// ---------------------------------------------------------------------------------------------
// Bodies.

/// `mib` MiB of deterministic bytes, generated one MiB at a time as they are sent.
pub fn streamed_body(mib: usize) -> Body {
    let stream =
        futures_util::stream::iter(0..mib).map(|i| Ok::<_, std::io::Error>(Bytes::from(chunk(i))));
    Body::from_stream(stream)
}

/// The sha256 of [`streamed_body`].
pub fn streamed_sha256(mib: usize) -> String {
    let mut hasher = Sha256::new();
    for i in 0..mib {
        hasher.update(chunk(i));
    }
    hex::encode(hasher.finalize())
}

fn chunk(i: usize) -> Vec<u8> {
    let mut state = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
