//! The client side of tus 1.0 (core, creation with a deferred length, termination, checksum)
//! against the upload proxy or an upload server: one function per request, each returning what
//! the server said as a typed result. Deciding what to do next is the caller's job.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use cdi_datapath::{Algorithm, Checksum};
use reqwest::{Response, StatusCode, Url};
use sha2::{Digest, Sha256};

use crate::Meter;

/// The resumable upload endpoint, on the proxy and on the upload server alike.
pub const TUS_PATH: &str = "/v1beta1/upload-tus";
const TUS_VERSION: &str = "1.0.0";
/// A HEAD, POST or DELETE that takes longer than this has failed.
const SHORT_REQUEST: Duration = Duration::from_secs(60);
/// A PATCH whose body has not moved for this long is given up (a dead connection that no
/// error reports).
const STALL: Duration = Duration::from_secs(60);
/// How long the answer to a fully sent chunk may take: the server hands the chunk to the
/// image conversion first, which waits for the disk.
const CHUNK_ANSWER: Duration = Duration::from_secs(5 * 60);
/// How long the answer to the last chunk may take: the server finishes converting, syncs the
/// volume and commits the image before it answers.
const FINAL_ANSWER: Duration = Duration::from_secs(60 * 60);
/// Body pieces handed to the connection; the progress display moves by these.
const PIECE: usize = 256 << 10;
/// At most this much of an error body is kept for the message.
const MESSAGE_LIMIT: usize = 2000;

/// A request that got no usable answer, or an error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The connection failed, broke, stalled or timed out: nothing is known of the server.
    Transport(String),
    /// The server answered with an error status.
    Refused(Refusal),
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// The body's text (the servers answer errors in plain text).
    pub message: String,
    /// The server's `Upload-Offset`, when it sent one.
    pub offset: Option<u64>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(why) => f.write_str(why),
            Failure::Refused(r) => write!(f, "{r}"),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or(if self.status == 460 {
                "Checksum Mismatch"
            } else {
                ""
            });
        write!(f, "{} {reason}", self.status)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// A created upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub location: Url,
    /// The server's `Upload-Offset`: 0 for a new upload, more when a clone server hands a
    /// restarted cloner the upload it had begun.
    pub offset: u64,
    /// For an empty upload, created complete: the server's digest.
    pub complete: Option<Option<Checksum>>,
}

/// What HEAD says of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub offset: u64,
    pub length: Option<u64>,
}

/// A PATCH the server took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patched {
    pub offset: u64,
    /// On the last PATCH: the digest of everything the server received.
    pub digest: Option<Checksum>,
}

/// What a PATCH carries.
pub struct PatchBody {
    body: reqwest::Body,
    /// `Content-Length`, when known before the body is produced.
    len: Option<u64>,
    /// `Upload-Length` declared with this PATCH, for an upload created with a deferred length.
    declare_length: Option<u64>,
    /// `Upload-Checksum`: the digest of these bytes, when they were in memory to hash first.
    chunk_checksum: Option<String>,
    /// `X-CDI-Checksum`: the digest of the whole upload, sent with its last bytes so that the
    /// server checks it before it commits the image.
    whole: Option<Checksum>,
}

impl std::fmt::Debug for PatchBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatchBody")
            .field("len", &self.len)
            .field("declare_length", &self.declare_length)
            .finish_non_exhaustive()
    }
}

impl PatchBody {
    /// Bytes in memory, with their own checksum (and the whole upload's, on the last PATCH).
    pub fn held(chunk: Bytes, whole: Option<Checksum>, meter: &Arc<Meter>) -> PatchBody {
        let len = chunk.len() as u64;
        let checksum = chunk_checksum(&chunk);
        let meter = Arc::clone(meter);
        let pieces = (0..chunk.len())
            .step_by(PIECE)
            .map(move |at| chunk.slice(at..(at + PIECE).min(chunk.len())))
            .collect::<Vec<_>>();
        let stream = futures_util::stream::iter(pieces.into_iter().map(move |piece| {
            meter
                .in_flight
                .fetch_add(piece.len() as u64, Ordering::Relaxed);
            Ok::<_, std::convert::Infallible>(piece)
        }));
        PatchBody {
            body: reqwest::Body::wrap_stream(stream),
            len: Some(len),
            declare_length: None,
            chunk_checksum: Some(checksum),
            whole,
        }
    }

    /// `len` bytes streamed as they are read (see [`super::reader`]), with no checksum of
    /// their own: the whole upload's digest covers them.
    pub fn streamed(body: reqwest::Body, len: u64) -> PatchBody {
        PatchBody {
            body,
            len: Some(len),
            declare_length: None,
            chunk_checksum: None,
            whole: None,
        }
    }

    /// A body whose length is known only once it is produced (sent chunked); its producer
    /// sets [`Meter::body_done`] after its last byte.
    pub fn of_unknown_length(body: reqwest::Body) -> PatchBody {
        PatchBody {
            body,
            len: None,
            declare_length: None,
            chunk_checksum: None,
            whole: None,
        }
    }

    /// Declares the upload's length with this PATCH (`Upload-Length`, for a deferred one).
    pub fn declaring_length(mut self, length: u64) -> PatchBody {
        self.declare_length = Some(length);
        self
    }
}

/// The tus client: an HTTP client, the endpoint's URL and the bearer token (if any).
#[derive(Debug, Clone)]
pub struct Tus {
    pub http: reqwest::Client,
    pub endpoint: Url,
}

/// The `Upload-Metadata` value: `key base64,key base64`.
pub fn metadata(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A per-chunk `Upload-Checksum` value.
pub fn chunk_checksum(data: &[u8]) -> String {
    format!("sha256 {}", STANDARD.encode(Sha256::digest(data)))
}

/// The digest the server reports of the whole upload: CDI's `X-CDI-Checksum` (`sha256:HEX`),
/// else RFC 9530's `Repr-Digest` (`sha-256=:BASE64:`).
pub fn server_digest(headers: &reqwest::header::HeaderMap) -> Option<Checksum> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(c) = text("x-cdi-checksum").and_then(|v| v.trim().parse::<Checksum>().ok()) {
        return Some(c);
    }
    let repr = text("repr-digest")?;
    repr.split(',').find_map(|member| {
        let (name, value) = member.trim().split_once('=')?;
        let algorithm = match name.trim() {
            "sha-256" => Algorithm::Sha256,
            "sha-512" => Algorithm::Sha512,
            _ => return None,
        };
        let b64 = value.trim().strip_prefix(':')?.strip_suffix(':')?;
        let raw = STANDARD.decode(b64).ok()?;
        format!("{}:{}", algorithm.name(), hex::encode(raw))
            .parse()
            .ok()
    })
}

fn offset_header(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get("upload-offset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An error and its causes, `: `-separated (reqwest's own message names only the URL).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// A request that got no answer. The URL is left out: the messages name what was being done.
fn transport(e: reqwest::Error) -> Failure {
    let e = e.without_url();
    if e.is_timeout() {
        Failure::Transport(format!("timed out: {}", chain(&e)))
    } else {
        Failure::Transport(chain(&e))
    }
}

/// The error answer of `response`, with its body's text.
async fn refusal(response: Response) -> Failure {
    let status = response.status().as_u16();
    let offset = offset_header(response.headers());
    let message = match tokio::time::timeout(SHORT_REQUEST, response.text()).await {
        Ok(Ok(text)) => {
            let text = text.trim();
            match text.char_indices().nth(MESSAGE_LIMIT) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text.to_owned(),
            }
        }
        _ => String::new(),
    };
    Failure::Refused(Refusal {
        status,
        message,
        offset,
    })
}

impl Tus {
    fn request(
        &self,
        method: reqwest::Method,
        url: &Url,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, url.clone())
            .header("tus-resumable", TUS_VERSION);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// POST: a new upload of `length` bytes, or of a length given later with a PATCH.
    pub async fn create(
        &self,
        length: Option<u64>,
        metadata: &str,
        token: Option<&str>,
    ) -> Result<Created, Failure> {
        let mut r = self
            .request(reqwest::Method::POST, &self.endpoint, token)
            .timeout(SHORT_REQUEST);
        r = match length {
            Some(length) => r.header("upload-length", length.to_string()),
            None => r.header("upload-defer-length", "1"),
        };
        if !metadata.is_empty() {
            r = r.header("upload-metadata", metadata);
        }
        let response = r.send().await.map_err(transport)?;
        if response.status() != StatusCode::CREATED {
            return Err(refusal(response).await);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| self.endpoint.join(l).ok())
            .ok_or_else(|| {
                Failure::Transport("the server created the upload but sent no Location".into())
            })?;
        let complete = (length == Some(0)).then(|| server_digest(response.headers()));
        let offset = offset_header(response.headers()).unwrap_or(0);
        Ok(Created {
            location,
            offset,
            complete,
        })
    }

    /// HEAD: how much of the upload the server has.
    pub async fn head(&self, location: &Url, token: Option<&str>) -> Result<Head, Failure> {
        let response = self
            .request(reqwest::Method::HEAD, location, token)
            .timeout(SHORT_REQUEST)
            .send()
            .await
            .map_err(transport)?;
        if response.status() != StatusCode::OK {
            return Err(refusal(response).await);
        }
        let offset = offset_header(response.headers()).ok_or_else(|| {
            Failure::Transport("the server's HEAD answer has no Upload-Offset".into())
        })?;
        let length = response
            .headers()
            .get("upload-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Ok(Head { offset, length })
    }

    /// PATCH: `body` at `offset`; `last` when it ends the upload.
    pub async fn patch(
        &self,
        location: &Url,
        offset: u64,
        body: PatchBody,
        last: bool,
        token: Option<&str>,
        meter: &Arc<Meter>,
    ) -> Result<Patched, Failure> {
        meter.in_flight.store(0, Ordering::Relaxed);
        meter.body_done.store(false, Ordering::Relaxed);
        let mut request = self
            .request(reqwest::Method::PATCH, location, token)
            .header("upload-offset", offset.to_string())
            .header("content-type", "application/offset+octet-stream");
        if let Some(len) = body.len {
            request = request.header("content-length", len.to_string());
        }
        if let Some(length) = body.declare_length {
            request = request.header("upload-length", length.to_string());
        }
        if let Some(checksum) = body.chunk_checksum {
            request = request.header("upload-checksum", checksum);
        }
        if let Some(whole) = body.whole {
            request = request.header("x-cdi-checksum", whole.to_string());
        }
        let response = watched(
            request.body(body.body).send(),
            meter,
            body.len,
            if last { FINAL_ANSWER } else { CHUNK_ANSWER },
        )
        .await?;
        if response.status() != StatusCode::NO_CONTENT && response.status() != StatusCode::OK {
            return Err(refusal(response).await);
        }
        let new_offset = offset_header(response.headers()).ok_or_else(|| {
            Failure::Transport("the server's PATCH answer has no Upload-Offset".into())
        })?;
        Ok(Patched {
            offset: new_offset,
            digest: server_digest(response.headers()),
        })
    }

    /// DELETE: ends the upload on the server, which removes what it wrote. Best effort.
    pub async fn terminate(&self, location: &Url, token: Option<&str>) -> Result<(), Failure> {
        let response = self
            .request(reqwest::Method::DELETE, location, token)
            .timeout(SHORT_REQUEST)
            .send()
            .await
            .map_err(transport)?;
        if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(refusal(response).await)
        }
    }
}

/// Runs a PATCH, giving up when its body stops moving for [`STALL`] or its answer takes longer
/// than `answer_within` after the body was sent.
async fn watched(
    send: impl std::future::Future<Output = reqwest::Result<Response>>,
    meter: &Meter,
    len: Option<u64>,
    answer_within: Duration,
) -> Result<Response, Failure> {
    tokio::pin!(send);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut seen = 0u64;
    let mut moved_at = Instant::now();
    let mut sent_at: Option<Instant> = None;
    loop {
        tokio::select! {
            r = &mut send => return r.map_err(transport),
            _ = tick.tick() => {
                let now = meter.in_flight.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    moved_at = Instant::now();
                }
                let sent = match len {
                    Some(len) => now >= len,
                    None => meter.body_done.load(Ordering::Relaxed),
                };
                if sent {
                    let at = *sent_at.get_or_insert_with(Instant::now);
                    if at.elapsed() > answer_within {
                        return Err(Failure::Transport(format!(
                            "no answer {} s after the chunk was sent",
                            answer_within.as_secs()
                        )));
                    }
                } else if moved_at.elapsed() > STALL {
                    return Err(Failure::Transport(format!(
                        "the connection stalled: nothing could be sent for {} s",
                        STALL.as_secs()
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_digest_reads_cdi_form_then_repr_digest() {
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "repr-digest",
            format!(
                "sha-256=:{}:",
                STANDARD.encode(hex::decode(hello).expect("hex"))
            )
            .parse()
            .expect("value"),
        );
        assert_eq!(
            server_digest(&h).map(|c| c.to_string()),
            Some(format!("sha256:{hello}"))
        );
        h.insert(
            "x-cdi-checksum",
            format!("sha256:{}", "0".repeat(64)).parse().expect("value"),
        );
        assert_eq!(server_digest(&h).map(|c| c.hex), Some("0".repeat(64)));
    }

    #[test]
    fn metadata_is_base64_pairs() {
        assert_eq!(
            metadata(&[("filename", "a.img"), ("checksum", "sha256:00")]),
            "filename YS5pbWc=,checksum c2hhMjU2OjAw"
        );
        assert_eq!(
            chunk_checksum(b"hello"),
            "sha256 LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="
        );
    }

    #[test]
    fn refusals_read_with_their_status_name() {
        let r = Refusal {
            status: 460,
            message: "bad chunk".into(),
            offset: Some(5),
        };
        assert_eq!(r.to_string(), "460 Checksum Mismatch: bad chunk");
        let r = Refusal {
            status: 401,
            message: String::new(),
            offset: None,
        };
        assert_eq!(r.to_string(), "401 Unauthorized");
    }
}
