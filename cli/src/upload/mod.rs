//! `cdictl upload`: sends an image file to CDI's upload proxy (or an upload server) with the
//! resumable tus protocol, so a broken connection costs a chunk, not the whole upload.
//!
//! ```text
//!  file ──read + sha256──► PATCH (streamed) ─┐
//!       └─ last MiB, whole sha256 ─► PATCH ──┴─► /v1beta1/upload-tus/<id> ─► proxy ─► upload server
//!                                   ▲ broken? back off, HEAD: the server's offset
//! ```
//!
//! `cdi_tusclient` makes the requests (shared with `cdi-cloner`), `session.rs` decides what comes next, `reader.rs` streams a
//! range of the file as a body, `hash.rs` keeps the whole file's digest right across resumes, `state.rs` lets a later run continue an interrupted
//! upload, `progress.rs` shows it, `auth.rs` holds (and renews) the token.

pub mod auth;
pub mod error;
mod hash;
pub mod progress;
mod reader;
mod session;
pub mod state;
/// The requests, shared with `cdi-cloner` in `cdi-tusclient`.
pub use cdi_tusclient::requests as tus;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cdi_datapath::{Checksum, ErrorKind};
use reqwest::Url;

use crate::args::ProgressArg;
use crate::exit;
use crate::report::bytes;
pub use auth::Auth;
pub use error::UploadError;
pub use session::Uploaded;

/// `--chunk-size` is at least this large, or the requests cost more than the bytes.
pub const MIN_CHUNK: u64 = 64 << 10;
/// Connecting (TCP and TLS) takes at most this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How the client meets the server's TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Do not verify the server's certificate.
    pub insecure: bool,
    /// Trust only the CA certificates in this PEM file.
    pub ca: Option<PathBuf>,
    /// A client certificate and key (PEM), for an upload server's mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// How to transfer, shared by `upload` and `image-upload`.
#[derive(Debug, Clone)]
pub struct TransferOptions {
    pub tls: TlsOptions,
    /// The whole file's expected digest, verified by the server before it commits the image.
    pub checksum: Option<Checksum>,
    /// Bytes per request at most (none: the whole file in one streamed request).
    pub chunk_size: Option<u64>,
    /// Attempts in a row without progress before giving up.
    pub retries: u32,
    pub progress: ProgressArg,
    /// Where state files go (none: an interrupted upload cannot be continued).
    pub state_dir: Option<PathBuf>,
}

/// A validated `cdictl upload`.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    /// The proxy's base URL.
    pub url: Url,
    /// The file, as an absolute path.
    pub file: PathBuf,
    pub token: Option<String>,
    pub options: TransferOptions,
}

/// `https://` when the URL has no scheme; no trailing slash.
pub fn normalize_url(raw: &str) -> Result<Url, String> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!(
            "{raw:?}: only https:// (or http://) URLs are supported"
        ));
    }
    if url.host_str().is_none() {
        return Err(format!("{raw:?} has no host"));
    }
    Ok(url)
}

/// The tus endpoint under a base URL (kept under any path prefix the base has).
pub fn endpoint(base: &Url) -> Url {
    let mut url = base.clone();
    let path = format!("{}{}", base.path().trim_end_matches('/'), tus::TUS_PATH);
    url.set_path(&path);
    url.set_query(None);
    url
}

/// The HTTP client for `tls`.
pub fn http_client(tls: &TlsOptions) -> Result<reqwest::Client, UploadError> {
    let config = |what: String| {
        UploadError::new(
            ErrorKind::Config,
            what,
            "check the certificate files given (PEM, readable)",
        )
    };
    // HTTP/1.1 even where the proxy offers HTTP/2: an upload is one request at a time, and
    // HTTP/2's flow control and framing cost a fifth more CPU for the same bytes
    // (bench/upload.sh), on machines where client and servers share the cores.
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("cdictl/", env!("CARGO_PKG_VERSION")))
        .http1_only()
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(30));
    if tls.insecure {
        b = b.tls_danger_accept_invalid_certs(true);
    } else if let Some(ca) = &tls.ca {
        let pem = std::fs::read(ca).map_err(|e| UploadError::reading(ca, &e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| config(format!("--ca {}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(config(format!(
                "--ca {}: no certificate in it",
                ca.display()
            )));
        }
        b = b.tls_certs_only(certs);
    }
    if let Some((cert, key)) = &tls.identity {
        let mut pem = std::fs::read(cert).map_err(|e| UploadError::reading(cert, &e))?;
        pem.push(b'\n');
        pem.extend(std::fs::read(key).map_err(|e| UploadError::reading(key, &e))?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            config(format!(
                "--client-cert {} / --client-key {}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        b = b.identity(identity);
    }
    b.build()
        .map_err(|e| config(format!("setting up HTTPS: {}", tus::chain(&e))))
}

/// Runs the upload with its progress display.
pub async fn upload(req: &UploadRequest, auth: &mut Auth) -> Result<Uploaded, UploadError> {
    let plan = session::Plan {
        tus: tus::Tus {
            http: http_client(&req.options.tls)?,
            endpoint: endpoint(&req.url),
        },
        url: req.url.to_string(),
        file: req.file.clone(),
        checksum: req.options.checksum.clone(),
        chunk_size: req.options.chunk_size,
        retries: req.options.retries,
        state_dir: req.options.state_dir.clone(),
    };
    let display =
        progress::Display::start(req.options.progress, Arc::new(progress::Meter::default()));
    let result = session::run(&plan, auth, &display).await;
    display.finish();
    result
}

/// `cdictl upload`: runs it and picks the exit code.
pub fn run_upload(req: UploadRequest) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                "upload",
                &UploadError::new(
                    ErrorKind::Io,
                    format!("starting the async runtime: {e}"),
                    "check the system's limits (threads, file descriptors)",
                ),
            );
        }
    };
    let mut auth = Auth::fixed(req.token.clone(), req.options.tls.identity.is_some());
    match runtime.block_on(upload(&req, &mut auth)) {
        Ok(done) => {
            println!("{}", summary(&req.file, &req.url, &done));
            ExitCode::from(exit::OK)
        }
        Err(e) => fail("upload", &e),
    }
}

/// Prints the failure of `command` and returns its exit code.
pub fn fail(command: &str, e: &UploadError) -> ExitCode {
    eprintln!("cdictl: {command} failed: {}", e.message);
    eprintln!("cdictl: what to do: {}", e.advice);
    ExitCode::from(exit::for_kind(e.kind))
}

/// `uploaded disk.qcow2 (16.0 MiB) to https://proxy in 1.20 s (14.0 MB/s), resumed 3 times,
/// sha256:… verified by the server`.
pub fn summary(file: &std::path::Path, url: &Url, u: &Uploaded) -> String {
    let secs = u.elapsed.as_secs_f64().max(1e-6);
    let sent = u.size - u.continued_from.unwrap_or(0);
    let mut line = format!(
        "uploaded {} ({}) to {} in {secs:.2} s ({:.1} MB/s)",
        file.display(),
        bytes(u.size),
        url.as_str().trim_end_matches('/'),
        sent as f64 / secs / 1e6
    );
    if let Some(from) = u.continued_from {
        line.push_str(&format!(", continued from byte {from}"));
    }
    if u.resumes > 0 {
        line.push_str(&format!(
            ", resumed {} time{}",
            u.resumes,
            if u.resumes == 1 { "" } else { "s" }
        ));
    }
    if u.restarts > 0 {
        line.push_str(&format!(", restarted {} time(s)", u.restarts));
    }
    match &u.server_digest {
        Some(d) if d.algorithm == u.digest.algorithm => {
            line.push_str(&format!(", {} verified by the server", u.digest));
        }
        _ => line.push_str(&format!(", {} (not confirmed by the server)", u.digest)),
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_https_and_keep_a_path_prefix() {
        let u = normalize_url("proxy.example:31001").expect("url");
        assert_eq!(u.as_str(), "https://proxy.example:31001/");
        assert_eq!(
            endpoint(&u).as_str(),
            "https://proxy.example:31001/v1beta1/upload-tus"
        );
        let prefixed = normalize_url("https://example.org/cdi/").expect("url");
        assert_eq!(
            endpoint(&prefixed).as_str(),
            "https://example.org/cdi/v1beta1/upload-tus"
        );
        assert!(normalize_url("ftp://x").is_err());
    }
}
