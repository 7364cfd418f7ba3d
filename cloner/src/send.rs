//! The clone session: creates (or, after a restart, finds again) the tus upload, sends the
//! stream in PATCHes of at most [`PATCH_BYTES`], and after a dropped connection or a 5xx asks
//! the server's offset and regenerates the stream from the last window boundary before it.
//! The server's offset only grows, so the checkpoints of one PATCH are all a resume needs.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cdi_datapath::Progress;
use cdi_datapath::clone::{Checkpoint, CloneSource, Producer};
use cdi_tusclient::{Backoff, Failure, Meter, PatchBody, Refusal, Tus, metadata};
use cdi_worker::metrics::Extra;
use reqwest::Url;
use sha2::{Digest, Sha256};

use crate::config::Tls;
use crate::error::CloneError;

/// Stream bytes per PATCH: the most a connection cut re-sends is one window, but the
/// checkpoints kept to find it are those of one PATCH (one per MiB), so PATCHes are bounded.
pub const PATCH_BYTES: u64 = 256 << 20;
/// Attempts in a row that made no progress before the clone fails.
const MAX_FAILURES: u32 = 8;
/// Pieces (up to a window each) between the reading thread and the connection.
const PIECES_IN_FLIGHT: usize = 8;
/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTPS client: our certificate for the server's CN check, the server's CA only; with
/// `resolve`, the server's host name is dialled at that address.
pub fn client(
    tls: &Tls,
    resolve: Option<(String, std::net::SocketAddr)>,
) -> Result<reqwest::Client, CloneError> {
    let ca = reqwest::Certificate::from_pem_bundle(&tls.server_ca_pem)
        .map_err(|e| CloneError::Tls(format!("SERVER_CA_CERT: {e}")))?;
    let identity = reqwest::Identity::from_pem(&tls.identity_pem)
        .map_err(|e| CloneError::Tls(format!("CLIENT_CERT / CLIENT_KEY: {e}")))?;
    let mut builder = reqwest::Client::builder();
    if let Some((host, addr)) = resolve {
        builder = builder.resolve(&host, addr);
    }
    builder
        .tls_certs_only(ca)
        .identity(identity)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(30))
        .build()
        .map_err(|e| CloneError::Tls(cdi_tusclient::chain(&e)))
}

/// How one PATCH of the stream ended on our side.
struct Sent {
    /// The window boundaries the producer passed.
    checkpoints: Vec<Checkpoint>,
    /// The stream's whole length, when this PATCH carried its end.
    ended: Option<u64>,
}

/// One clone: the source, the upload and where it stands.
pub struct Sender {
    tus: Tus,
    source: Arc<CloneSource>,
    meter: Arc<Meter>,
    progress: Arc<Progress>,
    extra: Arc<Extra>,
    backoff: Backoff,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("source", &self.source.path())
            .field("endpoint", &self.tus.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

/// The failure is worth another attempt: no answer, or a server error or busy.
fn retryable(f: &Failure) -> bool {
    match f {
        Failure::Transport(_) => true,
        Failure::Refused(r) => r.status >= 500 && r.status != 507 || r.status == 423,
    }
}

impl Sender {
    pub fn new(
        http: reqwest::Client,
        endpoint: Url,
        source: Arc<CloneSource>,
        progress: &Arc<Progress>,
        extra: &Arc<Extra>,
    ) -> Sender {
        Sender {
            tus: Tus { http, endpoint },
            source,
            meter: Arc::new(Meter::default()),
            progress: Arc::clone(progress),
            extra: Arc::clone(extra),
            backoff: Backoff::new(),
        }
    }

    /// The stream's name: its source's identity, so a restarted cloner of an unchanged source
    /// finds its upload again, and a changed source starts a new one.
    fn stream_id(&self) -> String {
        let d = Sha256::digest(
            format!(
                "{}|{}",
                self.source.path().display(),
                self.source.identity()
            )
            .as_bytes(),
        );
        hex::encode(&d[..16])
    }

    /// An upper bound of the stream's length from the source's extents (no data read), for
    /// the server's progress.
    fn estimate(&self) -> Result<u64, CloneError> {
        use cdi_datapath::clone::plan::WINDOW;
        const FRAME_HEAD: u64 = 16;
        let mut total = 32 + 64;
        let mut pos = 0;
        while let Some((start, end)) = self.source.next_extent(pos)? {
            let windows = end.div_ceil(WINDOW) - start / WINDOW;
            total += (end - start) + windows * FRAME_HEAD;
            pos = end;
        }
        Ok(total)
    }

    /// Waits before the next attempt, or fails after too many in a row.
    async fn back_off(&mut self, what: &str, failure: &Failure) -> Result<(), CloneError> {
        if !retryable(failure) {
            return Err(match failure {
                Failure::Refused(r) => CloneError::Refused(r.clone()),
                Failure::Transport(t) => CloneError::Unreachable {
                    failures: 1,
                    last: t.clone(),
                },
            });
        }
        if self.backoff.failures() + 1 >= MAX_FAILURES {
            return Err(CloneError::Unreachable {
                failures: MAX_FAILURES,
                last: format!("{what}: {failure}"),
            });
        }
        let wait = self.backoff.fail();
        tracing::warn!(error = %failure, wait_ms = wait.as_millis() as u64, "{what} failed; retrying.");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Creates the upload, or finds the one this stream began: its location and offset.
    async fn create(&mut self) -> Result<(Url, u64), CloneError> {
        let meta = metadata(&[
            ("clone", &self.stream_id()),
            ("estimate", &self.estimate()?.to_string()),
        ]);
        loop {
            match self.tus.create(None, &meta, None).await {
                Ok(created) => {
                    if created.offset > 0 {
                        tracing::info!(
                            offset = created.offset,
                            "Resuming the upload this clone began."
                        );
                    }
                    return Ok((created.location, created.offset));
                }
                Err(f) => self.back_off("creating the upload", &f).await?,
            }
        }
    }

    /// Sends the whole stream and has the server commit it. When the source fails (changed,
    /// shrunk, unreadable), the upload is terminated so the server discards its partial copy
    /// at once rather than when the next cloner comes.
    pub async fn run(&mut self) -> Result<(), CloneError> {
        let (location, offset) = self.create().await?;
        let mut at = location.clone();
        let result = self.send(&mut at, offset).await;
        if let Err(CloneError::Source(e)) = &result {
            tracing::warn!(error = %e, "The source failed; terminating the upload.");
            if let Err(f) = self.tus.terminate(&at, None).await {
                tracing::warn!(error = %f, "Could not terminate the upload.");
            }
        }
        result
    }

    async fn send(&mut self, location: &mut Url, mut offset: u64) -> Result<(), CloneError> {
        let mut base = Checkpoint::start(&self.source);
        loop {
            self.meter.confirm(offset);
            let (result, sent) = self.patch(location, offset, base.clone()).await;
            let sent = sent?;
            match result {
                Ok(new_offset) => {
                    if new_offset > offset {
                        self.backoff.reset();
                    }
                    offset = new_offset;
                    base = latest(&base, &sent.checkpoints, offset);
                    if let Some(total) = sent.ended
                        && offset == total
                    {
                        return self.commit(location, total).await;
                    }
                }
                // The server has a different offset than we thought (a restarted cloner was
                // told a stale one while the old connection still held the upload): go there.
                Err(Failure::Refused(Refusal {
                    status: 409,
                    offset: Some(server),
                    ..
                })) => {
                    tracing::info!(
                        offset = server,
                        "The server is at another offset; resuming there."
                    );
                    offset = server;
                    base = latest(&base, &sent.checkpoints, offset);
                }
                Err(failure) => {
                    self.back_off("sending the stream", &failure).await?;
                    match self.tus.head(location, None).await {
                        Ok(head) => offset = head.offset,
                        Err(Failure::Refused(Refusal { status: 404, .. })) => {
                            tracing::warn!("The server lost the upload; starting it again.");
                            (*location, offset) = self.create().await?;
                            base = Checkpoint::start(&self.source);
                        }
                        Err(f) => {
                            self.back_off("asking the server's offset", &f).await?;
                            continue;
                        }
                    }
                    base = latest(&base, &sent.checkpoints, offset);
                    self.extra.resumes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(offset, "Resuming the stream at the server's offset.");
                }
            }
        }
    }

    /// Declares the stream's length: the server checks the digest and commits the target.
    async fn commit(&mut self, location: &Url, total: u64) -> Result<(), CloneError> {
        loop {
            let body =
                PatchBody::streamed(reqwest::Body::from(Vec::new()), 0).declaring_length(total);
            match self
                .tus
                .patch(location, total, body, true, None, &self.meter)
                .await
            {
                Ok(_) => return Ok(()),
                // The answer to an earlier attempt was lost: the server already committed.
                Err(Failure::Refused(r))
                    if r.status == 409 && r.message.contains("already completed") =>
                {
                    return Ok(());
                }
                Err(f) => self.back_off("committing the clone", &f).await?,
            }
        }
    }

    /// One PATCH from `offset`, regenerating the stream from `base` (at or before it).
    async fn patch(
        &mut self,
        location: &Url,
        offset: u64,
        base: Checkpoint,
    ) -> (Result<u64, Failure>, Result<Sent, CloneError>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(PIECES_IN_FLIGHT);
        let checkpoints = Arc::new(Mutex::new(Vec::new()));
        let producer = {
            let source = Arc::clone(&self.source);
            let checkpoints = Arc::clone(&checkpoints);
            let meter = Arc::clone(&self.meter);
            let progress = Arc::clone(&self.progress);
            std::thread::Builder::new()
                .name("clone-reader".into())
                .spawn(move || produce(source, base, offset, tx, &checkpoints, &meter, &progress))
        };
        let producer = match producer {
            Ok(p) => p,
            Err(e) => {
                let e = CloneError::Source(cdi_datapath::Error::Source(e));
                return (Err(Failure::Transport(String::new())), Err(e));
            }
        };
        let meter = Arc::clone(&self.meter);
        let stream = futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx).map(|piece| {
                piece.map(|p| {
                    meter.in_flight.fetch_add(p.len() as u64, Ordering::Relaxed);
                    Ok::<_, std::convert::Infallible>(p)
                })
            })
        });
        let body = PatchBody::of_unknown_length(reqwest::Body::wrap_stream(stream));
        let result = self
            .tus
            .patch(location, offset, body, false, None, &self.meter)
            .await
            .map(|p| p.offset);
        let ended = match producer.join() {
            Ok(r) => r,
            Err(_) => Err(cdi_datapath::Error::Cancelled),
        };
        let checkpoints =
            std::mem::take(&mut *checkpoints.lock().unwrap_or_else(|p| p.into_inner()));
        let sent = match ended {
            Ok(ended) => Ok(Sent { checkpoints, ended }),
            // The request was dropped before the reader finished: nothing wrong with the source.
            Err(cdi_datapath::Error::Cancelled) => Ok(Sent {
                checkpoints,
                ended: None,
            }),
            Err(e) => Err(CloneError::Source(e)),
        };
        (result, sent)
    }
}

/// The latest checkpoint at or before `offset`.
fn latest(base: &Checkpoint, checkpoints: &[Checkpoint], offset: u64) -> Checkpoint {
    checkpoints
        .iter()
        .rev()
        .find(|c| c.stream_offset <= offset)
        .unwrap_or(base)
        .clone()
}

/// The reading thread of one PATCH: from `base` skips to `offset`, then hands pieces on until
/// [`PATCH_BYTES`] more went out (at a window boundary) or the stream ended (its length).
fn produce(
    source: Arc<CloneSource>,
    base: Checkpoint,
    offset: u64,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    checkpoints: &Mutex<Vec<Checkpoint>>,
    meter: &Meter,
    progress: &Progress,
) -> Result<Option<u64>, cdi_datapath::Error> {
    let size = source.size();
    let mut p = Producer::new(source, base);
    p.skip_to(offset)?;
    let limit = offset + PATCH_BYTES;
    let ended = loop {
        let Some(piece) = p.next_piece()? else {
            break Some(p.offset());
        };
        if tx.blocking_send(piece).is_err() {
            return Err(cdi_datapath::Error::Cancelled);
        }
        if let Some(c) = p.checkpoint() {
            progress.set_position(c.disk_position(), size);
            checkpoints
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
            if p.offset() >= limit {
                break None;
            }
        }
    };
    if ended.is_some() {
        progress.set_position(size, size);
    }
    meter.body_done.store(true, Ordering::Relaxed);
    Ok(ended)
}
