//! The upload pod harness shared by the test files: [`UploadPod`] from `cdi-testdata` (the real
//! `cdi-uploadserver` binary run as a process with CDI's upload pod environment, its mounts in
//! a temporary `CDI_ROOT`), with clients here: reqwest with and without the proxy's client
//! certificate, or a raw TLS stream for requests reqwest will not send.

// Each test file uses a different part of the harness.
#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytes::Bytes;
use cdi_testdata::pki::{Ca, Leaf};
use cdi_testdata::rawtls::RawTls;
use cdi_testdata::uploadpod::{CLIENT_NAME, UploadPod};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Client certificates the server must refuse.
pub struct Pki {
    /// Of the client CA, but for another name than the proxy's.
    pub wrong_name: Leaf,
    /// The proxy's name, of a CA the server does not trust.
    pub other_ca_client: Leaf,
}

/// One upload pod and the clients of it.
pub struct Pod {
    pod: UploadPod,
    pub pki: Pki,
}

impl Deref for Pod {
    type Target = UploadPod;
    fn deref(&self) -> &UploadPod {
        &self.pod
    }
}

impl DerefMut for Pod {
    fn deref_mut(&mut self) -> &mut UploadPod {
        &mut self.pod
    }
}

impl Pod {
    /// The pod with `extra` environment variables (after, so overriding, the pod's own).
    pub fn start(extra: &[(&str, &str)]) -> Pod {
        let pod = UploadPod::builder(env!("CARGO_BIN_EXE_cdi-uploadserver"))
            .envs(extra)
            .start();
        let pki = Pki {
            wrong_name: pod.client_ca().client("someone.else"),
            other_ca_client: Ca::new("someone-else").client(CLIENT_NAME),
        };
        Pod { pod, pki }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port())
    }

    pub fn client_with(&self, identity: Option<&Leaf>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.server_ca().pem.as_bytes()).expect("ca");
        let mut b = reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve("localhost", ([127, 0, 0, 1], self.port()).into());
        if let Some(leaf) = identity {
            b = b.identity(
                reqwest::Identity::from_pem(leaf.identity_pem().as_bytes()).expect("identity"),
            );
        }
        b.build().expect("client")
    }

    /// The proxy's client.
    pub fn client(&self) -> reqwest::Client {
        self.client_with(Some(self.pod.client()))
    }

    /// A raw client as the proxy: HTTP/1.1 only, with the proxy's certificate.
    pub fn raw(&self) -> RawTls {
        RawTls::new(
            ([127, 0, 0, 1], self.port()).into(),
            "localhost",
            &self.server_ca().pem,
            Some(self.pod.client()),
        )
    }

    /// A TLS connection as the proxy, speaking HTTP/1.1, for hand-written requests.
    pub async fn raw_tls(&self) -> TlsStream<TcpStream> {
        self.raw().connect().await
    }

    /// Sends `request` as written on a fresh connection and reads until the server closes it
    /// (or 20 s pass): everything it answered, as text.
    pub async fn raw_request(&self, request: &[u8]) -> String {
        self.raw().request(request).await
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

/// A body of `pieces` sent one by one, each after `pause`.
pub fn paced_body(pieces: Vec<Bytes>, pause: Duration) -> reqwest::Body {
    reqwest::Body::wrap_stream(cdi_testdata::rawtls::paced(pieces, pause))
}
