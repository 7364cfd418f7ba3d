//! A small HTTP/1.1 file server for tests, on 127.0.0.1, that misbehaves on request: drops the
//! connection or stalls at an offset, ignores Range, changes the file between requests, answers
//! error statuses (with Retry-After), requires basic auth, redirects. Each connection is served
//! on its own thread and closed after one response.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does; change it between requests through [`TestServer::behaviour`].
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    pub body: Vec<u8>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Honour `Range: bytes=N-` (and `If-Range`).
    pub ranges: bool,
    /// Close the connection after this many body bytes, once per entry (first requests first).
    pub drop_at: VecDeque<u64>,
    /// Stop sending for the duration after this many body bytes, once.
    pub stall_at: Option<(u64, Duration)>,
    /// Statuses answered (with an empty body) before serving the file.
    pub statuses: VecDeque<u16>,
    pub retry_after: Option<u64>,
    /// `user:password` required.
    pub basic_auth: Option<String>,
    /// After the first request, the file becomes this (with the given ETag).
    pub change_to: Option<(Vec<u8>, String)>,
    /// The path the file is served at (default `/file`; everything else is 404).
    pub path: Option<String>,
    /// Headers sent with the file (an object store's digest headers, say).
    pub headers: Vec<(String, String)>,
    /// Bytes sent after the body, past its Content-Length (a server that sends too much).
    pub trailing_garbage: Vec<u8>,
}

/// What the server saw, for assertions.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub requests: usize,
    /// Requests that arrived in forward-proxy form (absolute URL).
    pub proxied: usize,
    pub ranges: Vec<Option<String>>,
    pub if_ranges: Vec<Option<String>>,
    pub headers: Vec<Vec<(String, String)>>,
}

#[derive(Debug)]
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub behaviour: Arc<Mutex<Behaviour>>,
    pub seen: Arc<Mutex<Seen>>,
    scheme: &'static str,
}

/// A certificate authority made for a test, signing server certificates for 127.0.0.1.
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cdi-rs test CA");
        let pem = params.self_signed(&key).expect("CA cert").pem();
        TestCa { params, key, pem }
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn pem(&self) -> String {
        self.pem.clone()
    }

    /// A server configuration with a new key and a certificate for 127.0.0.1 and localhost.
    fn server_config(&self) -> rustls::ServerConfig {
        let key = rcgen::KeyPair::generate().expect("server key");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key"),
            )
            .expect("TLS config")
    }
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}

impl TestServer {
    pub fn start(behaviour: Behaviour) -> TestServer {
        Self::spawn(behaviour, None)
    }

    /// Serves HTTPS with a certificate for 127.0.0.1 signed by a CA made here; returns the
    /// server and the CA certificate (PEM) that clients must trust.
    pub fn start_tls(behaviour: Behaviour) -> (TestServer, String) {
        let ca = TestCa::new();
        (Self::start_tls_with(behaviour, &ca), ca.pem())
    }

    /// Serves HTTPS with a fresh certificate for 127.0.0.1 signed by `ca` (each server its own
    /// key and certificate, as after a rotation).
    pub fn start_tls_with(behaviour: Behaviour, ca: &TestCa) -> TestServer {
        Self::spawn(behaviour, Some(Arc::new(ca.server_config())))
    }

    fn spawn(behaviour: Behaviour, tls: Option<Arc<rustls::ServerConfig>>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("addr");
        let behaviour = Arc::new(Mutex::new(behaviour));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (b, s) = (Arc::clone(&behaviour), Arc::clone(&seen));
        let scheme = if tls.is_some() { "https" } else { "http" };
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (b, s, tls) = (Arc::clone(&b), Arc::clone(&s), tls.clone());
                std::thread::spawn(move || {
                    let _ = match tls {
                        None => serve(stream, &b, &s),
                        Some(config) => match rustls::ServerConnection::new(config) {
                            Ok(conn) => serve(rustls::StreamOwned::new(conn, stream), &b, &s),
                            Err(_) => Ok(()),
                        },
                    };
                });
            }
        });
        TestServer {
            addr,
            behaviour,
            seen,
            scheme,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().expect("lock").clone()
    }
}

fn serve(
    mut out: impl Read + Write,
    behaviour: &Mutex<Behaviour>,
    seen: &Mutex<Seen>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut out);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    // A forward-proxy request carries the absolute URL: serve it as if it were ours.
    let proxied = path.starts_with("http://");
    if proxied {
        let after_scheme = &path["http://".len()..];
        path = after_scheme
            .find('/')
            .map_or("/".to_string(), |i| after_scheme[i..].to_string());
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((n, v)) = h.trim_end().split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    drop(reader);
    let range = header("range");
    let if_range = header("if-range");
    let first;
    {
        let mut s = seen.lock().expect("lock");
        first = s.requests == 0;
        s.requests += 1;
        s.proxied += usize::from(proxied);
        s.ranges.push(range.clone());
        s.if_ranges.push(if_range.clone());
        s.headers.push(headers.clone());
    }
    let mut b = behaviour.lock().expect("lock");
    if path == "/redirect" {
        return write!(
            out,
            "HTTP/1.1 302 Found\r\nLocation: /file\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    if let Some(status) = b.statuses.pop_front() {
        let retry = b
            .retry_after
            .map(|s| format!("Retry-After: {s}\r\n"))
            .unwrap_or_default();
        return write!(
            out,
            "HTTP/1.1 {status} Test\r\n{retry}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    if let Some(auth) = &b.basic_auth {
        let want = format!("Basic {}", base64(auth.as_bytes()));
        if header("authorization").as_deref() != Some(want.as_str()) {
            return write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
    let served = b.path.as_deref().unwrap_or("/file");
    if path.split('?').next() != Some(served) {
        return write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    let validator_matches = match (&if_range, &b.etag, &b.last_modified) {
        (None, _, _) => true,
        (Some(v), Some(tag), _) => v == tag,
        (Some(v), None, Some(lm)) => v == lm,
        _ => false,
    };
    let start = match (&range, b.ranges && validator_matches) {
        (Some(r), true) => r
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap_or(0),
        _ => 0u64,
    };
    let body = b.body.clone();
    let total = body.len() as u64;
    let mut head = if start > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}\r\n",
            total.saturating_sub(1)
        )
    } else {
        "HTTP/1.1 200 OK\r\n".to_string()
    };
    if b.ranges {
        head.push_str("Accept-Ranges: bytes\r\n");
    }
    if let Some(tag) = &b.etag {
        head.push_str(&format!("ETag: {tag}\r\n"));
    }
    if let Some(lm) = &b.last_modified {
        head.push_str(&format!("Last-Modified: {lm}\r\n"));
    }
    for (name, value) in &b.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        total - start
    ));
    let drop_at = b.drop_at.pop_front();
    let stall = b.stall_at.take();
    let garbage = b.trailing_garbage.clone();
    if first && let Some((new_body, new_tag)) = b.change_to.take() {
        b.body = new_body;
        b.etag = Some(new_tag);
    }
    drop(b);
    out.write_all(head.as_bytes())?;
    let mut at = start;
    for piece in body[start as usize..].chunks(16 * 1024) {
        if let Some(d) = drop_at
            && at + piece.len() as u64 > d
        {
            let n = d.saturating_sub(at) as usize;
            out.write_all(&piece[..n])?;
            return out.flush();
        }
        if let Some((s, dur)) = stall
            && at <= s
            && s < at + piece.len() as u64
        {
            let n = (s - at) as usize;
            out.write_all(&piece[..n])?;
            out.flush()?;
            std::thread::sleep(dur);
            out.write_all(&piece[n..])?;
        } else {
            out.write_all(piece)?;
        }
        at += piece.len() as u64;
    }
    out.write_all(&garbage)?;
    out.flush()
}

/// Standard base64 (for the Authorization header check).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
