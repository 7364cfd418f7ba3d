//! Resumable uploads, tus 1.0 (core, creation, termination, checksum) at
//! `/v1beta1/upload-tus`.
//!
//! One import runs for the whole upload: each PATCH pushes its bytes into the same data path,
//! so an interrupted upload continues at the server's offset with the decoder's and the hash's
//! state intact, and the result is the same as from one uninterrupted request. The offset is
//! what the data path has taken ([`PushSender::offset`]), checked under the upload's lock by
//! every PATCH: bytes are never applied twice or skipped, whatever point a connection dropped
//! at. A client that hashes the image while sending it gives the whole upload's digest with
//! its last PATCH (`X-CDI-Checksum`); it is checked before the commit. State lives in memory: if the server process restarts, the upload is gone (HEAD says 404),
//! the partial target was never committed, and the client starts again from 0.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, options};
use bytes::Bytes;
use cdi_datapath::source::PushSender;
use cdi_datapath::{Algorithm, Checksum, Error, PendingChecksum};
use cdi_worker::{Failure, Written};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::sync::{Mutex, oneshot};

use crate::config::ContentType;
use crate::digest;
use crate::error::AppError;
use crate::routes::{ClientIdentity, PumpError, authorize, outcome, pump, success};
use crate::state::{Phase, Shared};

/// Where uploads are created; each lives at `TUS_PATH/<id>`.
pub const TUS_PATH: &str = "/v1beta1/upload-tus";
const TUS_VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,creation-defer-length,termination,checksum";
const CHECKSUM_ALGORITHMS: &str = "md5,sha1,sha256,sha512";
/// A PATCH with `Upload-Checksum` is held in memory until it is verified: at most this much.
pub const MAX_VERIFIED_PATCH: u64 = 64 << 20;
/// How long a PATCH waits for an earlier one on the same upload (a connection that dropped
/// and has not been noticed yet) to let go.
const LOCK_WAIT: Duration = Duration::from_secs(15);

/// One resumable upload.
#[derive(Debug)]
pub struct TusUpload {
    pub id: String,
    /// The upload's length; [`DEFERRED`] until a client that created it with
    /// `Upload-Defer-Length` gives it with a PATCH (a cloner knows it only at the end).
    length: std::sync::atomic::AtomicU64,
    /// For a clone server: the cloner's name for its stream (`Upload-Metadata: clone`), so a
    /// restarted cloner finds this upload again and resumes it.
    pub clone_id: Option<String>,
    /// `None` once the stream was ended (completed, failed or terminated).
    sender: Mutex<Option<PushSender>>,
    result: Mutex<Option<oneshot::Receiver<Result<Written, Failure>>>>,
    /// The offset as of the last PATCH step, for HEAD while a PATCH holds the sender.
    seen: std::sync::atomic::AtomicU64,
    /// The digest given when the upload was created, if any.
    expected: Option<Checksum>,
    /// The digest of the whole upload a PATCH may carry (`X-CDI-Checksum`), checked before
    /// the commit, and the algorithms it may use.
    pending: PendingChecksum,
    hashed: Vec<Algorithm>,
}

/// The length of an upload whose length is not known yet.
const DEFERRED: u64 = u64::MAX;

impl TusUpload {
    /// The upload's length, once known.
    pub fn length(&self) -> Option<u64> {
        let l = self.length.load(std::sync::atomic::Ordering::Relaxed);
        (l != DEFERRED).then_some(l)
    }

    /// Takes the length a PATCH declares for a deferred upload; it must not be below the
    /// offset, and a known length cannot change.
    fn declare_length(&self, length: u64, offset: u64) -> Result<(), AppError> {
        match self.length() {
            Some(known) if known == length => Ok(()),
            Some(known) => Err(tus_error(
                StatusCode::BAD_REQUEST,
                format!("Upload-Length {length} disagrees with the upload's length {known}"),
            )),
            None if length < offset || length == DEFERRED => Err(tus_error(
                StatusCode::BAD_REQUEST,
                format!("Upload-Length {length} is below the {offset} bytes already received"),
            )),
            None => {
                self.length
                    .store(length, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        }
    }

    pub fn path(&self) -> String {
        format!("{TUS_PATH}/{}", self.id)
    }

    /// Bytes received, as last recorded.
    pub fn offset(&self) -> u64 {
        self.seen.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn record(&self, offset: u64) {
        self.seen
            .store(offset, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes the whole upload's digest from a PATCH's `X-CDI-Checksum`: a client that computes
    /// it while sending knows it only at the end, so it comes with the last bytes and is
    /// checked before the image is committed.
    fn expect(&self, headers: &HeaderMap) -> Result<(), AppError> {
        let Some(value) = headers.get(digest::CDI_CHECKSUM) else {
            return Ok(());
        };
        let bad = |message: String| tus_error(StatusCode::BAD_REQUEST, message);
        let value = value
            .to_str()
            .map_err(|_| bad("X-CDI-Checksum is not visible ASCII".into()))?;
        let checksum = digest::cdi_form("X-CDI-Checksum", value).map_err(|e| bad(e.to_string()))?;
        if !self.hashed.contains(&checksum.algorithm) {
            let names: Vec<&str> = self.hashed.iter().map(|a| a.name()).collect();
            return Err(bad(format!(
                "X-CDI-Checksum on a PATCH must use an algorithm this upload computes ({}), not {}",
                names.join(" or "),
                checksum.algorithm.name()
            )));
        }
        if let Some(expected) = &self.expected
            && expected.algorithm == checksum.algorithm
            && *expected != checksum
        {
            return Err(bad(format!(
                "X-CDI-Checksum {checksum} disagrees with {expected}, given when the upload was created"
            )));
        }
        self.pending.set(checksum.clone()).map_err(|earlier| {
            bad(format!(
                "X-CDI-Checksum {checksum} disagrees with {earlier}, given by an earlier PATCH"
            ))
        })
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(TUS_PATH, any(create))
        .route(&format!("{TUS_PATH}/{{id}}"), any(upload))
        .route(&format!("{TUS_PATH}/"), options(capabilities))
}

fn tus_headers(mut headers: HeaderMap) -> HeaderMap {
    headers.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    headers
}

fn tus_error(status: StatusCode, message: impl Into<String>) -> AppError {
    AppError::new(status, message).with_header("tus-resumable", TUS_VERSION.into())
}

async fn capabilities() -> Response {
    let mut h = HeaderMap::new();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
    h.insert(
        "tus-checksum-algorithm",
        HeaderValue::from_static(CHECKSUM_ALGORITHMS),
    );
    (StatusCode::NO_CONTENT, tus_headers(h)).into_response()
}

/// Every tus request but OPTIONS names the protocol version.
fn check_version(headers: &HeaderMap) -> Result<(), AppError> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(TUS_VERSION) => Ok(()),
        other => Err(tus_error(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "Tus-Resumable must be {TUS_VERSION} (got {})",
                other.unwrap_or("none")
            ),
        )
        .with_header("tus-version", TUS_VERSION.into())),
    }
}

fn number(headers: &HeaderMap, name: &'static str) -> Result<Option<u64>, AppError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    tus_error(
                        StatusCode::BAD_REQUEST,
                        format!("{name} is not a number of bytes"),
                    )
                })
        })
        .transpose()
}

/// The entry `wanted` of `Upload-Metadata` (`key base64,key base64`).
fn metadata(headers: &HeaderMap, wanted: &str) -> Result<Option<String>, AppError> {
    use base64::Engine;
    let Some(value) = headers.get("upload-metadata") else {
        return Ok(None);
    };
    let bad = || {
        tus_error(
            StatusCode::BAD_REQUEST,
            "Upload-Metadata must be comma-separated \"key base64value\" pairs",
        )
    };
    let value = value.to_str().map_err(|_| bad())?;
    for pair in value.split(',') {
        let mut parts = pair.trim().splitn(2, ' ');
        let key = parts.next().unwrap_or("");
        if key != wanted {
            continue;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(parts.next().unwrap_or("").trim())
            .map_err(|_| bad())?;
        return String::from_utf8(decoded).map(Some).map_err(|_| bad());
    }
    Ok(None)
}

/// 32 hex digits from the kernel's random source: an upload's name, hard to guess.
fn new_id() -> Result<String, AppError> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            AppError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("no random source: {e}"),
            )
        })?;
    Ok(hex::encode(bytes))
}

async fn create(
    State(s): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    identity: Option<axum::Extension<ClientIdentity>>,
) -> Result<Response, AppError> {
    if method == Method::OPTIONS {
        return Ok(capabilities().await);
    }
    if method != Method::POST {
        return Err(tus_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "create an upload with POST",
        ));
    }
    authorize(&s, identity.as_ref().map(|e| &e.0))?;
    check_version(&headers)?;
    let deferred = match headers.get("upload-defer-length").map(|v| v.as_bytes()) {
        None => false,
        Some(b"1") => true,
        Some(_) => {
            return Err(tus_error(
                StatusCode::BAD_REQUEST,
                "Upload-Defer-Length must be 1",
            ));
        }
    };
    let length = match (number(&headers, "upload-length")?, deferred) {
        (Some(_), true) => {
            return Err(tus_error(
                StatusCode::BAD_REQUEST,
                "give Upload-Length or Upload-Defer-Length, not both",
            ));
        }
        (Some(l), false) if l == DEFERRED => {
            return Err(tus_error(
                StatusCode::BAD_REQUEST,
                "Upload-Length is too large",
            ));
        }
        (Some(l), false) => Some(l),
        (None, true) => None,
        (None, false) => {
            return Err(tus_error(
                StatusCode::BAD_REQUEST,
                "Upload-Length (or Upload-Defer-Length: 1) is required",
            ));
        }
    };
    let checksum = metadata(&headers, "checksum")?;
    let expected = digest::expected(&headers, checksum.as_deref())
        .map_err(|e| tus_error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let clone_id = if s.content_type == ContentType::Clone {
        metadata(&headers, "clone")?
    } else {
        None
    };
    if let Some(existing) = clone_upload(&s) {
        if clone_id.is_some() && existing.clone_id == clone_id {
            // A restarted cloner: it resumes this upload at its offset.
            tracing::info!(id = %existing.id, "The cloner came back; resuming its upload.");
            let mut h = HeaderMap::new();
            if let Ok(v) = existing.path().parse() {
                h.insert(header::LOCATION, v);
            }
            // Its old connection may still hold the upload (the server has not noticed it
            // died yet): wait for it to let go, so the offset is the real one.
            let offset = match tokio::time::timeout(LOCK_WAIT, existing.sender.lock()).await {
                Ok(guard) => guard.as_ref().map_or(existing.offset(), PushSender::offset),
                Err(_) => current_offset(&existing),
            };
            h.insert("upload-offset", offset.into());
            return Ok((StatusCode::CREATED, tus_headers(h)).into_response());
        }
        // Only one cloner sends to a clone target: a different stream (the source changed,
        // or a new cloner began afresh) replaces the one left behind.
        tracing::info!(id = %existing.id, "A different clone stream replaces the unfinished one.");
        terminate(&s, &existing.id).await?;
    }
    // A clone stream of unknown length is sized for progress by the cloner's estimate (an
    // upper bound; its decoder never relies on the length). Other formats get no length.
    let estimate = match length {
        Some(l) => Some(l),
        None if s.content_type == ContentType::Clone => {
            metadata(&headers, "estimate")?.and_then(|e| e.trim().parse().ok())
        }
        None => None,
    };
    let upload = {
        let mut phase = s.phase();
        Shared::check_idle(&phase).map_err(AppError::from)?;
        s.progress.reset();
        let transfer = s.start(estimate, expected.clone(), s.content_type);
        let upload = Arc::new(TusUpload {
            id: new_id()?,
            length: length.unwrap_or(DEFERRED).into(),
            clone_id,
            sender: Mutex::new(Some(transfer.sender)),
            result: Mutex::new(Some(transfer.result)),
            seen: 0.into(),
            expected,
            pending: transfer.pending,
            hashed: transfer.hashed,
        });
        *phase = Phase::Tus(Arc::clone(&upload));
        upload
    };
    tracing::info!(id = %upload.id, ?length, "Resumable upload created.");
    let mut h = HeaderMap::new();
    if let Ok(v) = upload.path().parse() {
        h.insert(header::LOCATION, v);
    }
    h.insert("upload-offset", HeaderValue::from_static("0"));
    if length == Some(0) {
        let mut guard = upload.sender.lock().await;
        return complete(&s, &upload, &mut guard, StatusCode::CREATED, h).await;
    }
    Ok((StatusCode::CREATED, tus_headers(h)).into_response())
}

/// On a clone server, the unfinished upload, if there is one.
fn clone_upload(s: &Shared) -> Option<Arc<TusUpload>> {
    if s.content_type != ContentType::Clone {
        return None;
    }
    match &*s.phase() {
        Phase::Tus(t) => Some(Arc::clone(t)),
        _ => None,
    }
}

/// The upload's offset: the sender's own count, or while a PATCH holds it, the last recorded
/// one (a resumed PATCH re-checks under the lock anyway).
fn current_offset(t: &TusUpload) -> u64 {
    match t.sender.try_lock() {
        Ok(guard) => guard.as_ref().map_or(t.offset(), PushSender::offset),
        Err(_) => t.offset(),
    }
}

/// The upload named `id`, if it is the current one.
fn find(s: &Shared, id: &str) -> Result<Arc<TusUpload>, AppError> {
    match &*s.phase() {
        Phase::Tus(t) if t.id == id => Ok(Arc::clone(t)),
        Phase::Done if s.completed_tus().as_deref() == Some(id) => Err(tus_error(
            StatusCode::CONFLICT,
            "this upload already completed",
        )),
        _ => Err(tus_error(
            StatusCode::NOT_FOUND,
            format!(
                "no upload {id} here (it completed, failed, was terminated, or the server restarted); create a new one"
            ),
        )),
    }
}

async fn upload(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    req: http::Request<Body>,
) -> Result<Response, AppError> {
    if req.method() == Method::OPTIONS {
        return Ok(capabilities().await);
    }
    let identity = req.extensions().get::<ClientIdentity>().cloned();
    authorize(&s, identity.as_ref())?;
    check_version(req.headers())?;
    match *req.method() {
        Method::HEAD => head(&s, &id).await,
        Method::PATCH => patch(&s, &id, req).await,
        Method::DELETE => terminate(&s, &id).await,
        _ => Err(tus_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "use HEAD, PATCH or DELETE on an upload",
        )),
    }
}

async fn head(s: &Shared, id: &str) -> Result<Response, AppError> {
    let (offset, length) = match find(s, id) {
        Ok(t) => (current_offset(&t), t.length()),
        Err(e) if e.status == StatusCode::CONFLICT => {
            let length = s.completed_tus_length().unwrap_or(0);
            (length, Some(length))
        }
        Err(e) => return Err(e),
    };
    let mut h = HeaderMap::new();
    h.insert("upload-offset", offset.into());
    match length {
        Some(length) => h.insert("upload-length", length.into()),
        None => h.insert("upload-defer-length", HeaderValue::from_static("1")),
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::OK, tus_headers(h)).into_response())
}

async fn patch(s: &Shared, id: &str, req: http::Request<Body>) -> Result<Response, AppError> {
    let t = find(s, id)?;
    let headers = req.headers().clone();
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/offset+octet-stream")
    {
        return Err(tus_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a PATCH body must be Content-Type: application/offset+octet-stream",
        ));
    }
    let claimed = number(&headers, "upload-offset")?
        .ok_or_else(|| tus_error(StatusCode::BAD_REQUEST, "Upload-Offset is required"))?;
    let declared = number(&headers, "upload-length")?;
    t.expect(&headers)?;
    let checksum = headers
        .get("upload-checksum")
        .map(|v| {
            v.to_str()
                .map_err(|_| tus_error(StatusCode::BAD_REQUEST, "Upload-Checksum is malformed"))
                .and_then(|v| {
                    digest::parse_upload_checksum(v)
                        .map_err(|e| tus_error(StatusCode::BAD_REQUEST, e.to_string()))
                })
        })
        .transpose()?;
    let mut guard = tokio::time::timeout(LOCK_WAIT, t.sender.lock())
        .await
        .map_err(|_| {
            tus_error(
                StatusCode::LOCKED,
                "another PATCH is still being received for this upload; retry shortly",
            )
        })?;
    let Some(sender) = guard.as_mut() else {
        return Err(find(s, id)
            .err()
            .unwrap_or_else(|| tus_error(StatusCode::NOT_FOUND, "this upload has ended")));
    };
    let offset = sender.offset();
    if claimed != offset {
        return Err(tus_error(
            StatusCode::CONFLICT,
            format!("Upload-Offset is {claimed} but the server has {offset} bytes"),
        )
        .with_header("upload-offset", offset.to_string()));
    }
    if let Some(length) = declared {
        t.declare_length(length, offset)?;
    }
    if offset > 0 {
        s.extra
            .resumes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let remaining = t.length().map(|l| l - offset);
    let body = req.into_body().into_data_stream();
    let fed = match checksum {
        Some((algorithm, want)) => {
            let limit = remaining.map_or(MAX_VERIFIED_PATCH, |r| r.min(MAX_VERIFIED_PATCH));
            let data = collect(body, limit, s.body_idle).await.map_err(|e| match e {
                PumpError::TooLong { .. } if remaining.is_none_or(|r| r > MAX_VERIFIED_PATCH) => tus_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "a PATCH with Upload-Checksum may carry at most {MAX_VERIFIED_PATCH} bytes; send smaller chunks"
                    ),
                ),
                other => pump_error(other, offset),
            })?;
            if digest::digest_of(algorithm, &data) != want {
                return Err(tus_error(
                    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
                    "Checksum Mismatch: this PATCH's bytes were discarded; send them again",
                )
                .with_header("upload-offset", offset.to_string()));
            }
            sender
                .send(&data)
                .await
                .map(|()| data.len() as u64)
                .map_err(|_| PumpError::PipelineClosed)
        }
        None => pump(body, sender, remaining, s.body_idle).await,
    };
    let offset = sender.offset();
    t.record(offset);
    match fed {
        Ok(_) => {}
        Err(PumpError::PipelineClosed) => return Err(failed(s, &t, &mut guard).await),
        Err(e) => return Err(pump_error(e, offset)),
    }
    if t.length() == Some(offset) {
        let mut h = HeaderMap::new();
        h.insert("upload-offset", offset.into());
        return complete(s, &t, &mut guard, StatusCode::NO_CONTENT, h).await;
    }
    let mut h = HeaderMap::new();
    h.insert("upload-offset", offset.into());
    Ok((StatusCode::NO_CONTENT, tus_headers(h)).into_response())
}

fn pump_error(e: PumpError, offset: u64) -> AppError {
    let e = match e {
        PumpError::Client(why) => tus_error(
            StatusCode::BAD_REQUEST,
            format!("the PATCH body could not be read: {why}; resume at the server's offset"),
        ),
        PumpError::TooLong { limit } => tus_error(
            StatusCode::BAD_REQUEST,
            format!("the PATCH goes past Upload-Length ({limit} bytes were left)"),
        ),
        PumpError::PipelineClosed => {
            tus_error(StatusCode::INTERNAL_SERVER_ERROR, "the import stopped")
        }
    };
    e.with_header("upload-offset", offset.to_string())
}

/// Reads a whole PATCH body of at most `limit` bytes.
async fn collect(
    mut body: impl futures_util::Stream<Item = Result<Bytes, axum::Error>> + Unpin,
    limit: u64,
    idle: Duration,
) -> Result<Vec<u8>, PumpError> {
    let mut data = Vec::new();
    while let Some(frame) = tokio::time::timeout(idle, body.next())
        .await
        .map_err(|_| PumpError::Client(crate::routes::idle_error(idle)))?
    {
        let frame = frame.map_err(|e| PumpError::Client(e.to_string()))?;
        if (data.len() + frame.len()) as u64 > limit {
            return Err(PumpError::TooLong { limit });
        }
        data.extend_from_slice(&frame);
    }
    Ok(data)
}

/// The import stopped reading before the upload's end: its error, and the upload is over.
async fn failed(s: &Shared, t: &TusUpload, guard: &mut Option<PushSender>) -> AppError {
    guard.take();
    let result = t.result.lock().await.take();
    s.set_phase(Phase::Idle);
    match result {
        Some(r) => match outcome(r).await {
            Ok(_) => tus_error(StatusCode::INTERNAL_SERVER_ERROR, "the import ended early"),
            Err(e) => e.with_header("tus-resumable", TUS_VERSION.into()),
        },
        None => tus_error(StatusCode::NOT_FOUND, "this upload has ended"),
    }
}

/// Every byte is in: end the stream and answer with the import's result.
async fn complete(
    s: &Shared,
    t: &TusUpload,
    guard: &mut Option<PushSender>,
    status: StatusCode,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if let Some(sender) = guard.take() {
        let _ = sender.finish().await;
    }
    let Some(result) = t.result.lock().await.take() else {
        return Err(tus_error(StatusCode::NOT_FOUND, "this upload has ended"));
    };
    match outcome(result).await {
        Ok(written) => {
            let length = t.length().unwrap_or_else(|| t.offset());
            tracing::info!(id = %t.id, length, "Resumable upload complete.");
            s.complete_tus(&t.id, length, written.clone());
            Ok(success(s, status, &written, tus_headers(headers)))
        }
        Err(e) => {
            s.set_phase(Phase::Idle);
            Err(e.with_header("tus-resumable", TUS_VERSION.into()))
        }
    }
}

async fn terminate(s: &Shared, id: &str) -> Result<Response, AppError> {
    let t = find(s, id)?;
    let mut guard = tokio::time::timeout(LOCK_WAIT, t.sender.lock())
        .await
        .map_err(|_| {
            tus_error(
                StatusCode::LOCKED,
                "a PATCH is still being received for this upload; retry shortly",
            )
        })?;
    if let Some(sender) = guard.take() {
        sender
            .fail(Error::Config("the client terminated the upload".into()))
            .await;
    }
    if let Some(result) = t.result.lock().await.take() {
        // The import removes what it wrote before it reports.
        let _ = result.await;
    }
    s.set_phase(Phase::Idle);
    tracing::info!(id = %t.id, "Resumable upload terminated by the client.");
    Ok((StatusCode::NO_CONTENT, tus_headers(HeaderMap::new())).into_response())
}
