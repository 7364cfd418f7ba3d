//! The upload pod harness shared by the test files: the real `cdi-uploadserver` binary run as
//! a process with CDI's upload pod environment, a temporary directory standing in for the pod's
//! mounts (`CDI_ROOT`) and certificates made here; clients are reqwest with and without the
//! proxy's client certificate, or a raw TLS stream for requests reqwest will not send.

// Each test file uses a different part of the harness.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub const CLIENT_NAME: &str = "client.upload-server.cdi.kubevirt.io";

/// A CA and what it signed, as PEM.
pub struct Pki {
    pub server_ca: String,
    pub client_ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client: (String, String),
    pub wrong_name: (String, String),
    pub other_ca_client: (String, String),
}

pub fn ca(name: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, KeyPair>, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("key");
    let cert = p.self_signed(&key).expect("ca");
    let pem = cert.pem();
    (cert, rcgen::Issuer::new(p, key), pem)
}

pub fn leaf(
    issuer: &rcgen::Issuer<'static, KeyPair>,
    cn: &str,
    names: &[&str],
    client: bool,
) -> (String, String) {
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![if client {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

pub fn pki() -> Pki {
    let (_s, server_issuer, server_ca) = ca("cdi-uploadserver-signer");
    let (_c, client_issuer, client_ca) = ca("cdi-uploadserver-client-signer");
    let (_o, other_issuer, _) = ca("someone-else");
    let (server_cert, server_key) = leaf(&server_issuer, "cdi-upload-disk", &["localhost"], false);
    Pki {
        server_ca,
        client_ca,
        server_cert,
        server_key,
        client: leaf(&client_issuer, CLIENT_NAME, &[], true),
        wrong_name: leaf(&client_issuer, "someone.else", &[], true),
        other_ca_client: leaf(&other_issuer, CLIENT_NAME, &[], true),
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One upload pod: its mounts, certificates and server process.
pub struct Pod {
    pub root: tempfile::TempDir,
    pub pki: Pki,
    pub port: u16,
    child: Option<Child>,
}

impl Pod {
    pub fn start(extra: &[(&str, &str)]) -> Pod {
        let root = tempfile::tempdir().expect("tempdir");
        for d in ["data", "dev", "etc/tls"] {
            std::fs::create_dir_all(root.path().join(d)).expect("dirs");
        }
        let pki = pki();
        let tls = root.path().join("etc/tls");
        std::fs::write(tls.join("tls.crt"), &pki.server_cert).expect("cert");
        std::fs::write(tls.join("tls.key"), &pki.server_key).expect("key");
        std::fs::write(tls.join("ca.crt"), &pki.client_ca).expect("ca");
        let mut pod = Pod {
            root,
            pki,
            port: free_port(),
            child: None,
        };
        pod.spawn(extra);
        pod
    }

    pub fn spawn(&mut self, extra: &[(&str, &str)]) {
        let port = self.port.to_string();
        let child = Command::new(env!("CARGO_BIN_EXE_cdi-uploadserver"))
            .env_clear()
            .env("CDI_ROOT", self.root.path())
            .env("RUST_LOG", "info")
            .env("TLS_KEY_FILE", "/etc/tls/tls.key")
            .env("TLS_CERT_FILE", "/etc/tls/tls.crt")
            .env("CLIENT_CERT_FILE", "/etc/tls/ca.crt")
            .env("CLIENT_NAME", CLIENT_NAME)
            .env("LISTEN_ADDRESS", "127.0.0.1")
            .env("LISTEN_PORT", &port)
            .env("UPLOAD_IMAGE_SIZE", "64Mi")
            .env("FILESYSTEM_OVERHEAD", "0")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("server.log")).expect("log"))
            .spawn()
            .expect("start cdi-uploadserver");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "server did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn client_with(&self, identity: Option<&(String, String)>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.pki.server_ca.as_bytes()).expect("ca");
        let mut b = reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve("localhost", ([127, 0, 0, 1], self.port).into());
        if let Some((cert, key)) = identity {
            b = b.identity(
                reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"),
            );
        }
        b.build().expect("client")
    }

    /// The proxy's client.
    pub fn client(&self) -> reqwest::Client {
        self.client_with(Some(&self.pki.client))
    }

    /// Waits for the server to exit: its code and termination message.
    pub fn wait(&mut self) -> (i32, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let message =
                    std::fs::read_to_string(self.path("dev/termination-log")).unwrap_or_default();
                return (status.code().unwrap_or(-1), message);
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn image(&self) -> Vec<u8> {
        std::fs::read(self.path("data/disk.img")).expect("disk.img")
    }

    /// The server's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// The TLS configuration of a raw client: HTTP/1.1 only, with the proxy's certificate.
    pub fn raw_tls_config(&self) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.pki.server_ca.as_bytes()) {
            roots.add(cert.expect("PEM")).expect("root");
        }
        let (cert, key) = &self.pki.client;
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("cert");
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client auth");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A TLS connection as the proxy, speaking HTTP/1.1, for hand-written requests.
    pub async fn raw_tls(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        tokio_rustls::TlsConnector::from(self.raw_tls_config())
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("TLS handshake")
    }

    /// Sends `request` as written on a fresh connection and reads until the server closes it
    /// (or 20 s pass): everything it answered, as text.
    pub async fn raw_request(&self, request: &[u8]) -> String {
        let mut tls = self.raw_tls().await;
        // The server may answer and close before it read everything.
        let _ = tls.write_all(request).await;
        let _ = tls.flush().await;
        String::from_utf8_lossy(&read_until_closed(&mut tls, Duration::from_secs(20)).await)
            .into_owned()
    }

    /// Nothing but the directories the pod started with: no image, no partial file.
    pub fn assert_no_image(&self) {
        let left: Vec<_> = std::fs::read_dir(self.path("data"))
            .expect("data")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "left on the volume: {left:?}");
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn tus_create(
    rt: &tokio::runtime::Runtime,
    pod: &Pod,
    length: usize,
    metadata: Option<&str>,
) -> String {
    rt.block_on(async {
        let mut req = pod
            .client()
            .post(pod.url("/v1beta1/upload-tus"))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", length.to_string());
        if let Some(m) = metadata {
            req = req.header("upload-metadata", m);
        }
        let r = req.send().await.expect("create");
        assert_eq!(r.status(), 201, "{}", pod.log());
        r.headers()["location"].to_str().expect("ascii").to_owned()
    })
}

pub async fn tus_offset(pod: &Pod, location: &str) -> u64 {
    let r = pod
        .client()
        .head(pod.url(location))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .expect("head");
    assert_eq!(r.status(), 200);
    r.headers()["upload-offset"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number")
}

/// PATCHes `data[offset..]` but breaks the connection after `cut` bytes.
pub async fn tus_patch_cut(pod: &Pod, location: &str, data: &[u8], offset: u64, cut: usize) {
    let rest = &data[offset as usize..];
    let mut pieces: Vec<Result<Bytes, std::io::Error>> = rest[..cut]
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    pieces.push(Err(std::io::Error::other("connection cut by the test")));
    let r = pod
        .client()
        .patch(pod.url(location))
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream")
        .header("content-length", rest.len().to_string())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await;
    assert!(r.is_err(), "a cut PATCH cannot succeed");
}

pub async fn tus_patch(
    pod: &Pod,
    location: &str,
    body: Vec<u8>,
    offset: u64,
    checksum: Option<String>,
) -> reqwest::Response {
    let mut req = pod
        .client()
        .patch(pod.url(location))
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream");
    if let Some(c) = checksum {
        req = req.header("upload-checksum", c);
    }
    req.body(body).send().await.expect("patch")
}

/// Reads from `stream` until the peer closes it, fails, or `within` passes (then panics: a
/// connection the server should have closed is still open).
pub async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: Duration,
) -> Vec<u8> {
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

/// The status code of a raw HTTP/1.1 answer (0 when there is none).
pub fn status_of(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A body of `pieces` sent one by one, each after `pause`.
pub fn paced_body(pieces: Vec<Bytes>, pause: Duration) -> reqwest::Body {
    let stream = futures_util::stream::unfold(pieces.into_iter(), move |mut rest| async move {
        let next = rest.next()?;
        tokio::time::sleep(pause).await;
        Some((Ok::<_, std::io::Error>(next), rest))
    });
    reqwest::Body::wrap_stream(stream)
}
