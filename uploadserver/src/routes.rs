//! The HTTP routes (upstream's paths and status codes) and the one-request uploads: plain,
//! multipart form and archive, synchronous or not. Resumable uploads are in [`crate::tus`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use cdi_datapath::Error;
use cdi_datapath::source::PushSender;
use cdi_worker::Written;
use cdi_worker::metrics::{UPLOAD_PREFIX, render};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, Method, StatusCode, header};

use crate::config::ContentType;
use crate::digest::{self, CDI_CHECKSUM};
use crate::error::AppError;
use crate::multipart::{Event, FormError, FormParser, PartHead};
use crate::state::{Shared, Transfer};
use crate::tus;

/// The verified client, put on each request by the TLS listener: the common name of the
/// client certificate, if one was presented and chains to `CLIENT_CERT_FILE`.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity(pub Option<String>);

/// How a one-request upload answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// After the image is converted and committed (`/upload`).
    Sync,
    /// As soon as the body is received (`/upload-async`); the import finishes behind it.
    Async,
}

/// The router, testable without sockets.
pub fn app(shared: Arc<Shared>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "OK" }))
        .route("/metrics", get(metrics));
    for version in ["v1beta1", "v1alpha1"] {
        router = router
            .route(&format!("/{version}/upload"), any(plain_sync))
            .route(&format!("/{version}/upload-async"), any(plain_async))
            .route(&format!("/{version}/upload-form"), any(form_sync))
            .route(&format!("/{version}/upload-form-async"), any(form_async))
            .route(&format!("/{version}/upload-archive"), any(archive_sync));
    }
    router
        .merge(tus::routes())
        // Bodies stream into the data path; multipart's default 2 MB cap must not apply.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let text = render(UPLOAD_PREFIX, &s.owner_uid, &s.progress, &s.extra);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// 401 unless the request came with a client certificate for `CLIENT_NAME`.
pub fn authorize(s: &Shared, identity: Option<&ClientIdentity>) -> Result<(), AppError> {
    match identity.and_then(|i| i.0.as_deref()) {
        Some(cn) if cn == s.client_name => Ok(()),
        Some(cn) => Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            format!("client certificate {cn:?} is not {:?}", s.client_name),
        )),
        None => Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "a verified client certificate is required",
        )),
    }
}

/// Upstream answers every method but POST on an upload path with 404 (HEAD on the async
/// paths with 200: clients probe for async support that way).
fn check_method(method: &Method, reply: Reply) -> Result<Option<Response>, AppError> {
    match (method, reply) {
        (&Method::POST, _) => Ok(None),
        (&Method::HEAD, Reply::Async) => Ok(Some(StatusCode::OK.into_response())),
        _ => Err(AppError::new(StatusCode::NOT_FOUND, "uploads are POSTed")),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// What a request body holds: a clone server takes only clone streams, on the plain routes
/// (their path no longer says what the body is) and tus.
fn body_content(s: &Shared, by_route: ContentType) -> Result<ContentType, AppError> {
    match (s.content_type, by_route) {
        (ContentType::Clone, ContentType::Kubevirt) => Ok(ContentType::Clone),
        (ContentType::Clone, _) => Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "this upload server takes a clone stream from cdi-cloner (CONTENT_TYPE=clone): POST \
             it to /v1beta1/upload or use tus",
        )),
        (_, by_route) => Ok(by_route),
    }
}

/// Why feeding a body stopped early.
#[derive(Debug)]
pub enum PumpError {
    /// The client's stream failed or went idle (a disconnect, a malformed body).
    Client(String),
    /// The import stopped reading; its result says why.
    PipelineClosed,
    /// More bytes than allowed.
    TooLong { limit: u64 },
}

/// The error of a body that sent nothing for `idle`.
pub fn idle_error(idle: Duration) -> String {
    format!("no data for {} s", idle.as_secs())
}

/// Feeds `stream` into `sender`, at most `limit` bytes; returns the bytes fed. The stream
/// fails when it yields nothing for `idle`; empty pieces say it is still making progress.
pub async fn pump<S, E>(
    mut stream: S,
    sender: &mut PushSender,
    limit: Option<u64>,
    idle: Duration,
) -> Result<u64, PumpError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut fed = 0u64;
    loop {
        let next = tokio::time::timeout(idle, stream.next())
            .await
            .map_err(|_| PumpError::Client(idle_error(idle)))?;
        let Some(frame) = next else {
            return Ok(fed);
        };
        let data = frame.map_err(|e| PumpError::Client(e.to_string()))?;
        if data.is_empty() {
            continue;
        }
        if let Some(limit) = limit
            && fed + data.len() as u64 > limit
        {
            return Err(PumpError::TooLong { limit });
        }
        sender
            .send(&data)
            .await
            .map_err(|_| PumpError::PipelineClosed)?;
        fed += data.len() as u64;
    }
}

/// The success response: the digest computed of the upload, as `Repr-Digest` and CDI's form.
pub fn success(
    s: &Shared,
    status: StatusCode,
    written: &Written,
    mut headers: HeaderMap,
) -> Response {
    let mut body = serde_json::json!({ "message": crate::completion_message(s.content_type) });
    if let Some(d) = &written.digest {
        if let Some(v) = digest::repr_digest(d).and_then(|v| v.parse().ok()) {
            headers.insert("repr-digest", v);
        }
        if let Ok(v) = d.to_string().parse() {
            headers.insert(CDI_CHECKSUM, v);
        }
        body["digest"] = d.to_string().into();
    }
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    (status, headers, body.to_string()).into_response()
}

/// Waits for the import and turns its end into a response or an error.
pub async fn outcome(
    result: tokio::sync::oneshot::Receiver<Result<Written, cdi_worker::Failure>>,
) -> Result<Written, AppError> {
    match result.await {
        Ok(Ok(written)) => Ok(written),
        Ok(Err(failure)) => Err(AppError::from_failure(&failure)),
        Err(_) => Err(AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Saving stream failed: the import thread ended without a result",
        )),
    }
}

/// Feeds a whole body and ends the stream; a client-side failure fails the import (which
/// removes what it wrote) and is reported as 400.
async fn feed<S, E>(
    mut t: Transfer,
    stream: S,
    idle: Duration,
) -> Result<Transfer, (Transfer, AppError)>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    match pump(stream, &mut t.sender, None, idle).await {
        Ok(_) | Err(PumpError::PipelineClosed) | Err(PumpError::TooLong { .. }) => Ok(t),
        Err(PumpError::Client(why)) => Err((
            t,
            AppError::new(
                StatusCode::BAD_REQUEST,
                format!("the upload body could not be read: {why}"),
            ),
        )),
    }
}

async fn one_request(
    s: Arc<Shared>,
    method: Method,
    headers: HeaderMap,
    identity: Option<ClientIdentity>,
    stream: impl Stream<Item = Result<Bytes, String>> + Unpin,
    content: ContentType,
    reply: Reply,
) -> Result<Response, AppError> {
    if let Some(r) = check_method(&method, reply)? {
        return Ok(r);
    }
    authorize(&s, identity.as_ref())?;
    let content = body_content(&s, content)?;
    let expected = digest::expected(&headers, None)
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let claim = s.begin()?;
    s.progress.reset();
    let transfer = s.start(content_length(&headers), expected, content);
    let Transfer { sender, result, .. } = match feed(transfer, stream, s.body_idle).await {
        Ok(t) => t,
        Err((t, err)) => {
            let why = err.message.clone();
            t.sender
                .fail(Error::Source(std::io::Error::other(why)))
                .await;
            let _ = t.result.await;
            return Err(err);
        }
    };
    if sender.finish().await.is_err() {
        tracing::debug!("The import stopped before the end of the body.");
    }
    match reply {
        Reply::Sync => {
            let written = outcome(result).await?;
            claim.succeed(written.clone());
            Ok(success(&s, StatusCode::OK, &written, HeaderMap::new()))
        }
        Reply::Async => {
            tokio::spawn(async move {
                match outcome(result).await {
                    Ok(written) => claim.succeed(written),
                    Err(e) => tracing::error!(error = %e.message, "Asynchronous upload failed."),
                }
            });
            Ok(StatusCode::OK.into_response())
        }
    }
}

fn body_stream(body: Body) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
    body.into_data_stream()
        .map(|r| r.map_err(|e| e.to_string()))
}

async fn plain(
    s: Arc<Shared>,
    req: http::Request<Body>,
    content: ContentType,
    reply: Reply,
) -> Result<Response, AppError> {
    let (parts, body) = req.into_parts();
    let identity = parts.extensions.get::<ClientIdentity>().cloned();
    one_request(
        s,
        parts.method,
        parts.headers,
        identity,
        body_stream(body),
        content,
        reply,
    )
    .await
}

async fn plain_sync(
    State(s): State<Arc<Shared>>,
    req: http::Request<Body>,
) -> Result<Response, AppError> {
    plain(s, req, ContentType::Kubevirt, Reply::Sync).await
}

async fn plain_async(
    State(s): State<Arc<Shared>>,
    req: http::Request<Body>,
) -> Result<Response, AppError> {
    plain(s, req, ContentType::Kubevirt, Reply::Async).await
}

async fn archive_sync(
    State(s): State<Arc<Shared>>,
    req: http::Request<Body>,
) -> Result<Response, AppError> {
    plain(s, req, ContentType::Archive, Reply::Sync).await
}

/// The part named `file` of a multipart form; other parts are skipped. The image is committed
/// only once the whole form has arrived: a second `file` part, a form cut short or one that
/// goes on after its closing boundary fails the upload.
async fn form(
    s: Arc<Shared>,
    req: http::Request<Body>,
    reply: Reply,
) -> Result<Response, AppError> {
    if let Some(r) = check_method(req.method(), reply)? {
        return Ok(r);
    }
    let identity = req.extensions().get::<ClientIdentity>().cloned();
    authorize(&s, identity.as_ref())?;
    if s.content_type == ContentType::Clone {
        body_content(&s, ContentType::Archive)?;
    }
    let (parts, body) = req.into_parts();
    let bad = |e: String| AppError::new(StatusCode::BAD_REQUEST, e);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let boundary = crate::multipart::boundary(content_type)
        .map_err(|e| bad(format!("not a multipart form: {e}")))?;
    let mut reader = FormReader {
        body: body_stream(body),
        parser: FormParser::new(&boundary),
        idle: s.body_idle,
        stage: FormStage::File,
    };
    let head = reader
        .find_file()
        .await
        .map_err(|e| bad(format!("the upload body could not be read: {e}")))?;
    if let Some(encoding) = head.transfer_encoding.as_deref()
        && !["binary", "8bit", "7bit"]
            .iter()
            .any(|e| encoding.eq_ignore_ascii_case(e))
    {
        return Err(bad(format!(
            "the part named \"file\" has Content-Transfer-Encoding {encoding:?}; send the file as binary"
        )));
    }
    tracing::debug!(filename = ?head.filename, "Form upload: the part named \"file\" (the filename is not used).");
    let stream = Box::pin(futures_util::stream::unfold(reader, |mut r| async move {
        r.next_piece().await.map(|piece| (piece, r))
    }));
    // The part's length is not known up front; progress counts bytes only.
    let mut headers = parts.headers;
    headers.remove(header::CONTENT_LENGTH);
    one_request(
        s,
        parts.method,
        headers,
        identity,
        stream,
        ContentType::Kubevirt,
        reply,
    )
    .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FormStage {
    /// In the part named `file`.
    File,
    /// After it: the rest is read to make sure the form is whole.
    Rest,
    Done,
}

/// A form body read through the parser, each read bounded by the idle timeout.
struct FormReader<S> {
    body: S,
    parser: FormParser,
    idle: Duration,
    stage: FormStage,
}

impl<S> FormReader<S>
where
    S: Stream<Item = Result<Bytes, String>> + Unpin,
{
    /// Reads the next piece of the body into the parser; false at its end.
    async fn pull(&mut self) -> Result<bool, String> {
        match tokio::time::timeout(self.idle, self.body.next()).await {
            Err(_) => Err(idle_error(self.idle)),
            Ok(Some(Ok(data))) => {
                self.parser.feed(&data);
                Ok(true)
            }
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => {
                self.parser.finish();
                Ok(false)
            }
        }
    }

    fn event(&mut self) -> Result<Option<Event>, String> {
        self.parser
            .next_event()
            .map_err(|e: FormError| format!("malformed multipart form: {e}"))
    }

    /// Skips to the part named `file`.
    async fn find_file(&mut self) -> Result<PartHead, String> {
        loop {
            match self.event()? {
                Some(Event::Part(head)) if head.name.as_deref() == Some("file") => return Ok(head),
                Some(Event::Part(_) | Event::Data(_)) => {}
                Some(Event::End) => return Err("the form has no part named \"file\"".into()),
                None => {
                    self.pull().await?;
                }
            }
        }
    }

    /// The next piece of the file: data, or an empty piece while the rest of the form is
    /// read (it is making progress), an error, or `None` once the whole form is in.
    async fn next_piece(&mut self) -> Option<Result<Bytes, String>> {
        loop {
            if self.stage == FormStage::Done {
                return None;
            }
            let event = match self.event() {
                Ok(e) => e,
                Err(e) => {
                    self.stage = FormStage::Done;
                    return Some(Err(e));
                }
            };
            match event {
                Some(Event::Data(data)) if self.stage == FormStage::File => return Some(Ok(data)),
                Some(Event::Data(_)) => {}
                Some(Event::Part(head)) if head.name.as_deref() == Some("file") => {
                    self.stage = FormStage::Done;
                    return Some(Err(
                        "the form has a second part named \"file\"; send one file per upload"
                            .into(),
                    ));
                }
                Some(Event::Part(_)) => self.stage = FormStage::Rest,
                Some(Event::End) => {
                    self.stage = FormStage::Done;
                    return None;
                }
                None => {
                    if let Err(e) = self.pull().await {
                        self.stage = FormStage::Done;
                        return Some(Err(e));
                    }
                    if self.stage == FormStage::Rest {
                        return Some(Ok(Bytes::new()));
                    }
                }
            }
        }
    }
}

async fn form_sync(
    State(s): State<Arc<Shared>>,
    req: http::Request<Body>,
) -> Result<Response, AppError> {
    form(s, req, Reply::Sync).await
}

async fn form_async(
    State(s): State<Arc<Shared>>,
    req: http::Request<Body>,
) -> Result<Response, AppError> {
    form(s, req, Reply::Async).await
}
