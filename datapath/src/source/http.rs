//! HTTP(S) sources that survive bad networks: a streaming GET that, when the connection drops or
//! stalls, continues with `Range: bytes=N-` from the last byte received (guarded by `If-Range`,
//! so a changed file is never mixed with the old one). The pipeline's decoder and hash state are
//! untouched by a resume, so the result is identical to an uninterrupted download.
//!
//! Compression is never negotiated or decoded by the client: the checksum covers the bytes as
//! served and formats are detected from them.
//!
//! Object stores and registries use the same machinery: a [`RequestSigner`] makes each
//! request (an S3 signature, a GCS signed URL, a registry token), and a [`DigestsOf`] reads
//! the digests the server vouches for from the first response's headers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Response, StatusCode};

use super::{BufferPool, CHUNK, Source, chunk_pool};
use crate::checksum::SourceDigest;
use crate::error::{Error, ErrorKind};

/// A future a [`RequestSigner`] returns.
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<SignedRequest, String>> + Send + 'a>>;

/// Where the next GET of a download goes, and the headers it carries.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub url: String,
    pub headers: HeaderMap,
}

/// Makes each request of a download afresh: object stores sign every request (S3) or URL
/// (GCS) for a while only, and registries hand out tokens that expire, so a download that
/// resumes after a long pause signs again.
pub trait RequestSigner: Send + Sync + std::fmt::Debug {
    /// The request to send now. `first` holds the headers of the download's first response
    /// once there was one (the request is a resume), to pin the object's version.
    fn sign<'a>(&'a self, first: Option<&'a HeaderMap>) -> SignFuture<'a>;
}

/// Reads the digests a server vouches for (an ETag that is an MD5, `x-goog-hash`) from the
/// headers of the first response.
pub type DigestsOf = Arc<dyn Fn(&HeaderMap) -> Vec<SourceDigest> + Send + Sync>;

/// How hard to try before giving up on a transient failure.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Total time spent waiting between attempts, at most.
    pub max_total_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_total_wait: Duration::from_secs(300),
        }
    }
}

/// Everything about how to fetch a URL.
#[derive(Clone, Default)]
pub struct HttpOptions {
    pub basic_auth: Option<(String, String)>,
    /// Extra request headers; values are never logged.
    pub headers: Vec<(String, String)>,
    /// PEM CA certificates trusted in addition to the system roots.
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// Skip TLS certificate verification (CDI's `insecureSkipVerify` / `INSECURE_TLS`).
    pub insecure: bool,
    /// A read that makes no progress for this long counts as a dropped connection.
    pub read_timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub user_agent: Option<String>,
    /// Counts resumes after drops and stalls (shared, so metrics can read it).
    pub resumes: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// Signs each request (object stores, registries); the URL given to `open_with` is then
    /// only for messages.
    pub signer: Option<Arc<dyn RequestSigner>>,
    /// The digests the server vouches for, read from the first response.
    pub digests: Option<DigestsOf>,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("extra_ca_pem", &self.extra_ca_pem.len())
            .field("insecure", &self.insecure)
            .field("read_timeout", &self.read_timeout)
            .field("retry", &self.retry)
            .field("signer", &self.signer)
            .field("digests", &self.digests.is_some())
            .finish()
    }
}

/// What identifies the version of the file being downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Validator {
    ETag(String),
    LastModified(String),
}

/// A resumable streaming GET.
pub struct HttpSource {
    runtime: tokio::runtime::Runtime,
    client: Client,
    url: String,
    shown: String,
    options: HttpOptions,
    response: Option<Response>,
    /// Bytes delivered to the pipeline so far.
    offset: u64,
    /// Bytes of the current response to drop (a server that ignored `Range`).
    skip: u64,
    total: Option<u64>,
    validator: Option<Validator>,
    /// The first response's headers, for a signer to pin the object's version with.
    first_headers: Option<HeaderMap>,
    /// What the server vouched for in its first response.
    vouched: Vec<SourceDigest>,
    /// Pieces received and not yet handed on.
    pending: std::collections::VecDeque<Bytes>,
    /// Buffers small pieces are gathered into.
    buffers: BufferPool,
}

/// Pieces of the body at least this large are handed on as they are; smaller ones (a TLS
/// record is 16 KiB) are copied together into chunks of up to [`CHUNK`], so the pipeline's
/// per-chunk costs stay small.
const PASS_THROUGH: usize = 128 << 10;

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("url", &self.shown)
            .field("offset", &self.offset)
            .field("total", &self.total)
            .finish()
    }
}

impl HttpSource {
    /// A plain GET with default options.
    pub fn open(url: &str) -> Result<Self, Error> {
        Self::open_with(url, HttpOptions::default())
    }

    /// Sends the first GET (retrying transient failures) and checks the answer.
    pub fn open_with(url: &str, options: HttpOptions) -> Result<Self, Error> {
        let shown = redact(url);
        let config = |message: String| Error::Http {
            url: shown.clone(),
            message,
            kind: ErrorKind::Config,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| config(format!("starting the HTTP runtime: {e}")))?;
        let client = build_client(&options).map_err(config)?;
        let mut source = HttpSource {
            runtime,
            client,
            url: url.to_string(),
            shown,
            options,
            response: None,
            offset: 0,
            skip: 0,
            total: None,
            validator: None,
            first_headers: None,
            vouched: Vec::new(),
            pending: std::collections::VecDeque::new(),
            buffers: chunk_pool(),
        };
        source.connect(true)?;
        Ok(source)
    }

    fn http_error(&self, message: impl Into<String>, kind: ErrorKind) -> Error {
        Error::Http {
            url: self.shown.clone(),
            message: message.into(),
            kind,
        }
    }

    /// Sends a GET from `self.offset` and installs the response, retrying transient failures.
    fn connect(&mut self, first: bool) -> Result<(), Error> {
        let policy = self.options.retry.clone();
        let mut backoff = policy.initial_backoff;
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.try_connect(first) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let (retryable, wait_hint) = match &err {
                Attempt::Retry(_, hint) => (true, *hint),
                Attempt::Fatal(_) => (false, None),
            };
            let error = err.into_error();
            if !retryable || attempt >= policy.max_attempts {
                return Err(error);
            }
            let wait = wait_hint.unwrap_or(backoff).min(policy.max_backoff);
            if waited + wait > policy.max_total_wait {
                return Err(error);
            }
            tracing::warn!(url = %self.shown, attempt, wait_s = wait.as_secs_f64(), error = %error, "HTTP attempt failed; retrying.");
            std::thread::sleep(wait);
            waited += wait;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }

    fn try_connect(&mut self, first: bool) -> Result<(), Attempt> {
        let mut request = match &self.options.signer {
            None => self.client.get(&self.url),
            Some(signer) => {
                let signed = self
                    .runtime
                    .block_on(signer.sign(self.first_headers.as_ref()))
                    .map_err(|e| {
                        Attempt::Fatal(
                            self.http_error(format!("signing the request: {e}"), ErrorKind::Auth),
                        )
                    })?;
                self.client.get(&signed.url).headers(signed.headers)
            }
        };
        if let Some((user, password)) = &self.options.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let resuming = self.offset > 0;
        if resuming {
            request = request.header(header::RANGE, format!("bytes={}-", self.offset));
            match &self.validator {
                Some(Validator::ETag(tag)) => request = request.header(header::IF_RANGE, tag),
                Some(Validator::LastModified(date)) => {
                    request = request.header(header::IF_RANGE, date)
                }
                None => {}
            }
        }
        let response = self
            .runtime
            .block_on(request.send())
            .map_err(|e| self.classify(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(status, &response));
        }
        let validator = validator_of(response.headers());
        if first {
            self.total = response.content_length();
            self.validator = validator;
            if let Some(digests) = &self.options.digests {
                self.vouched = digests(response.headers());
            }
            self.first_headers = Some(response.headers().clone());
            self.response = Some(response);
            return Ok(());
        }
        match status {
            StatusCode::PARTIAL_CONTENT => {
                let start = content_range_start(response.headers());
                if start != Some(self.offset) {
                    return Err(Attempt::Fatal(self.http_error(
                        format!("asked to resume at byte {}, the server answered a range starting at {start:?}", self.offset),
                        ErrorKind::Network,
                    )));
                }
                tracing::info!(url = %self.shown, offset = self.offset, "Resumed the download with a range request.");
                self.skip = 0;
            }
            _ => {
                // A full answer: either Range is not supported, or If-Range failed because the
                // file changed. Mixing two versions is never acceptable.
                if self.validator.is_some() && validator != self.validator {
                    return Err(Attempt::Fatal(self.http_error(
                        "the file changed on the server during the download (ETag/Last-Modified differ); the import must start over",
                        ErrorKind::Network,
                    )));
                }
                if let (Some(total), Some(len)) = (self.total, response.content_length())
                    && total != len
                {
                    return Err(Attempt::Fatal(self.http_error(
                        format!("the file changed on the server during the download ({total} bytes, now {len}); the import must start over"),
                        ErrorKind::Network,
                    )));
                }
                tracing::warn!(url = %self.shown, offset = self.offset, "The server does not support range requests; reading again from the start and skipping the bytes already received.");
                self.skip = self.offset;
            }
        }
        self.response = Some(response);
        Ok(())
    }

    fn classify(&self, e: &reqwest::Error) -> Attempt {
        let message = error_chain(e);
        let tls = message.contains("certificate")
            || message.contains("UnknownIssuer")
            || message.contains("InvalidCertificate");
        if tls {
            return Attempt::Fatal(self.http_error(
                format!("TLS verification failed: {message}; provide the CA (certConfigMap) or use insecureSkipVerify"),
                ErrorKind::Auth,
            ));
        }
        if e.is_builder() {
            return Attempt::Fatal(self.http_error(message, ErrorKind::Config));
        }
        Attempt::Retry(self.http_error(message, ErrorKind::Network), None)
    }

    fn status_error(&self, status: StatusCode, response: &Response) -> Attempt {
        let message = format!("the server answered {status}");
        match status.as_u16() {
            404 | 410 => Attempt::Fatal(self.http_error(message, ErrorKind::NotFound)),
            // A resume pinned to the object's version (If-Match, a generation) that no longer
            // exists: mixing two versions is never acceptable.
            412 => Attempt::Fatal(self.http_error(
                format!("{message}: the file changed on the server during the download; the import must start over"),
                ErrorKind::Network,
            )),
            401 | 403 | 407 => Attempt::Fatal(self.http_error(
                format!("{message}: check the credentials (secretRef) and extra headers"),
                ErrorKind::Auth,
            )),
            408 | 425 | 429 | 500..=599 => {
                let hint = response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Attempt::Retry(self.http_error(message, ErrorKind::Network), hint)
            }
            _ => Attempt::Fatal(self.http_error(message, ErrorKind::Network)),
        }
    }

    /// Reads pieces of the current response until `want` bytes arrived, the body ended
    /// (`Ok(true)`), or the connection failed or stalled for the read timeout (`Err`), in one
    /// trip into the runtime: a trip per piece (TLS records are 16 KiB) costs more than the copy.
    /// The pieces received before an error are returned with it, so none is lost.
    fn read_batch(&mut self, want: usize) -> (Vec<Bytes>, Result<bool, String>) {
        let Some(response) = self.response.as_mut() else {
            return (Vec::new(), Ok(true));
        };
        let stall = self.options.read_timeout;
        self.runtime.block_on(async move {
            let mut pieces = Vec::new();
            let mut got = 0;
            let timer = tokio::time::sleep(stall.unwrap_or(Duration::MAX / 4));
            let mut timer = std::pin::pin!(timer);
            loop {
                let read = tokio::select! {
                    read = response.chunk() => read,
                    _ = timer.as_mut(), if stall.is_some() => {
                        let secs = stall.unwrap_or_default().as_secs_f64();
                        return (pieces, Err(format!("no data for {secs} s")));
                    }
                };
                match read {
                    Ok(Some(bytes)) => {
                        got += bytes.len();
                        pieces.push(bytes);
                        if got >= want {
                            return (pieces, Ok(false));
                        }
                        if let Some(t) = stall {
                            timer.as_mut().reset(tokio::time::Instant::now() + t);
                        }
                    }
                    Ok(None) => return (pieces, Ok(true)),
                    Err(e) => return (pieces, Err(error_chain(&e))),
                }
            }
        })
    }

    /// After a drop or stall: reconnects from the current offset (with `Range`/`If-Range`),
    /// unless the resume budget is spent.
    fn resume_after(&mut self, e: Error) -> Result<(), Error> {
        tracing::warn!(url = %self.shown, offset = self.offset, error = %e, "Download interrupted; resuming.");
        self.response = None;
        let resumes = self
            .options
            .resumes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if resumes > self.options.retry.max_attempts * 4 {
            return Err(e);
        }
        self.connect(false)
    }
}

enum Attempt {
    Retry(Error, Option<Duration>),
    Fatal(Error),
}

impl Attempt {
    fn into_error(self) -> Error {
        match self {
            Attempt::Retry(e, _) | Attempt::Fatal(e) => e,
        }
    }
}

impl Source for HttpSource {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn total_len(&self) -> Option<u64> {
        self.total
    }

    fn expected_digests(&self) -> Vec<SourceDigest> {
        self.vouched.clone()
    }

    fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        let mut chunk = self.buffers.buffer();
        loop {
            if let Some(piece) = self.pending.pop_front() {
                if piece.len() >= PASS_THROUGH {
                    if chunk.is_empty() {
                        self.buffers.recycle(chunk);
                        return Ok(Some(piece));
                    }
                    self.pending.push_front(piece);
                    break;
                }
                let taken = chunk.extend_from_slice(&piece);
                if taken < piece.len() {
                    self.pending.push_front(piece.slice(taken..));
                    break;
                }
                if chunk.len() >= CHUNK {
                    break;
                }
                continue;
            }
            if self.response.is_none() {
                break;
            }
            let (pieces, status) = self.read_batch(CHUNK);
            for mut bytes in pieces {
                if self.skip > 0 {
                    let drop = (self.skip as usize).min(bytes.len());
                    self.skip -= drop as u64;
                    let _ = bytes.split_to(drop);
                }
                self.offset += bytes.len() as u64;
                if !bytes.is_empty() {
                    self.pending.push_back(bytes);
                }
            }
            let failure = match status {
                Ok(false) => continue,
                Ok(true) => match self.total {
                    Some(total) if self.offset < total => {
                        format!("the body ended at byte {} of {total}", self.offset)
                    }
                    _ => {
                        self.response = None;
                        continue;
                    }
                },
                Err(message) => format!("reading the body: {message}"),
            };
            // The connection dropped or stalled: resume from what we have.
            let error = self.http_error(failure, ErrorKind::Network);
            self.resume_after(error)?;
        }
        if chunk.is_empty() {
            self.buffers.recycle(chunk);
            return Ok(None);
        }
        Ok(Some(self.buffers.freeze(chunk)))
    }
}

fn build_client(options: &HttpOptions) -> Result<Client, String> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    for (name, value) in &options.headers {
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("invalid extra header name {name:?}"))?;
        let mut value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("invalid value for extra header {name}"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let mut builder = Client::builder()
        .user_agent(
            options
                .user_agent
                .clone()
                .unwrap_or_else(|| concat!("cdi-rs/", env!("CARGO_PKG_VERSION")).to_string()),
        )
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(30))
        .tls_danger_accept_invalid_certs(options.insecure);
    let mut certs = Vec::new();
    for pem in &options.extra_ca_pem {
        certs.extend(
            reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("reading a CA certificate: {e}"))?,
        );
    }
    if !certs.is_empty() {
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| format!("building the HTTP client: {}", error_chain(&e)))
}

fn validator_of(headers: &HeaderMap) -> Option<Validator> {
    let get = |h| {
        headers
            .get(h)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    match get(header::ETAG) {
        // A weak ETag cannot be used with If-Range.
        Some(tag) if !tag.starts_with("W/") => Some(Validator::ETag(tag)),
        _ => get(header::LAST_MODIFIED).map(Validator::LastModified),
    }
}

fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = v.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// The URL without user information, for logs and messages.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// An error and its causes, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        cur = s.source();
    }
    msg
}
