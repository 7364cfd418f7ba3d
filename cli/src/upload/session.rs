//! One resumable upload from start to end: create it (or pick up the one an earlier run left),
//! send the file in chunks, and whenever something breaks, learn the server's offset and go on
//! from there.
//!
//! ```text
//!            ┌──────── 404: the upload is gone, start over ───────┐
//!            ▼                                                    │
//!  (saved?) Create ──201──► Send ──204──► Send … ──last 204──► Done (compare digests)
//!     │                      │ ▲
//!     │    broken, 5xx, 423  │ │ 409: the server's offset
//!     │      (back off)      ▼ │ 460: resend the chunk
//!     └──────────────────► Sync (HEAD: the server's offset)
//! ```
//!
//! The file goes out in streamed PATCHes (one for the whole file unless `--chunk-size` caps
//! them), read and hashed on a thread as they are sent ([`super::reader`]), and a last, small
//! PATCH held in memory: it carries its own `Upload-Checksum` and the whole file's digest
//! (`X-CDI-Checksum`), which the server checks before it commits the image. So each byte is
//! read once, the server never holds a chunk back to verify it, and nothing unverified is
//! committed. The digest covers exactly the bytes the server confirmed ([`ConfirmedHash`]): a
//! streamed PATCH's hash state is kept only if the server took all of it; otherwise the
//! confirmed part is read back from the file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cdi_datapath::{Algorithm, Checksum, ErrorKind};
use reqwest::Url;

use super::auth::Auth;
use super::error::UploadError;
use super::hash::{Buffered, ConfirmedHash};
use super::progress::{Display, Meter};
use super::reader::{Read, range_body};
use super::state::{FileStamp, Saved, StateFile};
use super::tus::{Failure, PatchBody, Patched, Refusal, Tus, metadata};
use crate::report::bytes as human;
use cdi_tusclient::Backoff;

/// The last bytes of the file go in one PATCH held in memory, of at most this many, with the
/// whole file's digest.
const TAIL: u64 = 1 << 20;

/// What one upload needs.
#[derive(Debug)]
pub struct Plan {
    pub tus: Tus,
    /// The URL the state file is keyed by (the proxy's base URL as given).
    pub url: String,
    pub file: PathBuf,
    pub checksum: Option<Checksum>,
    /// Bytes per streamed PATCH at most (none: the whole file in one).
    pub chunk_size: Option<u64>,
    /// Attempts in a row without progress before giving up.
    pub retries: u32,
    pub state_dir: Option<PathBuf>,
}

/// A finished upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub size: u64,
    /// Where an earlier, interrupted run's upload was picked up.
    pub continued_from: Option<u64>,
    /// Times this run went on after a broken connection or an error answer.
    pub resumes: u32,
    /// Times the server had lost the upload and it started again from 0.
    pub restarts: u32,
    /// The digest of the file as sent.
    pub digest: Checksum,
    /// The digest the server computed of what it received, when it sent one.
    pub server_digest: Option<Checksum>,
    pub elapsed: Duration,
}

/// The next thing to do.
#[derive(Debug)]
enum Step {
    Create,
    /// Ask the server how much it has.
    Sync(Why),
    Send,
    /// Every byte is in; the server's digest if its answer arrived.
    Done(Option<Checksum>),
}

/// Why the offset is asked for.
#[derive(Debug)]
enum Why {
    /// An earlier run left this upload.
    Continue,
    /// The connection broke, or the server or proxy answered 5xx / 423.
    Broken,
    /// The server answered this error, which may have ended the upload.
    Answered(Refusal),
}

struct Session<'a> {
    plan: &'a Plan,
    auth: &'a mut Auth,
    display: &'a Display,
    meter: Arc<Meter>,
    file: Arc<File>,
    stamp: FileStamp,
    state: Option<StateFile>,
    metadata: String,
    hash: ConfirmedHash,
    backoff: Backoff,
    location: Option<Url>,
    confirmed: u64,
    /// The most the server has confirmed; progress is going past it.
    best: u64,
    /// The last chunk, kept until the server confirms it.
    buffer: Option<(u64, Bytes)>,
    continued_from: Option<u64>,
    resumes: u32,
    restarts: u32,
}

/// Runs the upload to its end.
pub async fn run(plan: &Plan, auth: &mut Auth, display: &Display) -> Result<Uploaded, UploadError> {
    let started = Instant::now();
    let file = File::open(&plan.file).map_err(|e| UploadError::reading(&plan.file, &e))?;
    let meta = file
        .metadata()
        .map_err(|e| UploadError::reading(&plan.file, &e))?;
    if !meta.is_file() {
        return Err(UploadError::new(
            ErrorKind::Config,
            format!("{} is not a regular file", plan.file.display()),
            "upload an image file",
        ));
    }
    let stamp = FileStamp::of(&meta);
    let meter = Arc::clone(display.meter());
    meter
        .total
        .store(stamp.size, std::sync::atomic::Ordering::Relaxed);
    let name = plan
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let checksum_text = plan.checksum.as_ref().map(ToString::to_string);
    let mut pairs = vec![("filename", name.as_str())];
    if let Some(c) = &checksum_text {
        pairs.push(("checksum", c));
    }
    let algorithm = plan
        .checksum
        .as_ref()
        .map_or(Algorithm::Sha256, |c| c.algorithm);
    let mut session = Session {
        plan,
        auth,
        display,
        meter,
        file: Arc::new(file),
        stamp,
        state: plan
            .state_dir
            .as_deref()
            .map(|d| StateFile::new(d, &plan.url, &plan.file)),
        metadata: metadata(&pairs),
        hash: ConfirmedHash::new(algorithm),
        backoff: Backoff::new(),
        location: None,
        confirmed: 0,
        best: 0,
        buffer: None,
        continued_from: None,
        resumes: 0,
        restarts: 0,
    };
    let server_digest = session.drive().await?;
    session.finish(server_digest, started)
}

impl Session<'_> {
    fn size(&self) -> u64 {
        self.stamp.size
    }

    async fn drive(&mut self) -> Result<Option<Checksum>, UploadError> {
        let mut step = self.first_step().await;
        loop {
            self.auth.keep_fresh().await?;
            step = match step {
                Step::Create => self.create().await?,
                Step::Sync(why) => self.sync(why).await?,
                Step::Send => self.send().await?,
                Step::Done(digest) => return Ok(digest),
            };
        }
    }

    /// Continue the upload an earlier run saved, if it was of this very file.
    async fn first_step(&mut self) -> Step {
        let Some(saved) = self.state.as_ref().and_then(StateFile::load) else {
            return Step::Create;
        };
        let same = saved.url == self.plan.url
            && saved.file == self.plan.file
            && saved.stamp == self.stamp
            && saved.checksum == self.plan.checksum.as_ref().map(ToString::to_string);
        let location = Url::parse(&saved.location).ok();
        match location {
            Some(location) if same => {
                self.display.note(&format!(
                    "found an interrupted upload of this file; asking the server how much of it it has (state: {})",
                    self.state_path()
                ));
                self.location = Some(location);
                Step::Sync(Why::Continue)
            }
            other => {
                self.display.note(
                    "the file or the options changed since the interrupted upload of it: starting over",
                );
                if let Some(location) = other {
                    let _ = self.plan.tus.terminate(&location, self.auth.token()).await;
                }
                if let Some(s) = &self.state {
                    s.remove();
                }
                Step::Create
            }
        }
    }

    fn state_path(&self) -> String {
        self.state
            .as_ref()
            .map_or_else(|| "none".into(), |s| s.path().display().to_string())
    }

    fn save_state(&self) {
        let (Some(state), Some(location)) = (&self.state, &self.location) else {
            return;
        };
        let saved = Saved {
            url: self.plan.url.clone(),
            file: self.plan.file.clone(),
            stamp: self.stamp.clone(),
            location: location.to_string(),
            checksum: self.plan.checksum.as_ref().map(ToString::to_string),
        };
        if let Err(e) = state.save(&saved) {
            self.display.note(&format!(
                "could not save the upload's state in {} ({e}); an interrupted upload will start over next time",
                state.path().display()
            ));
        }
    }

    fn forget_state(&self) {
        if let Some(s) = &self.state {
            s.remove();
        }
    }

    /// Waits before another attempt, or gives up after `retries` attempts without progress.
    async fn back_off(&mut self, what: &str, failure: &Failure) -> Result<(), UploadError> {
        if self.backoff.failures() >= self.plan.retries {
            return Err(self.interrupted(what, failure));
        }
        let wait = self.backoff.fail();
        self.display.note(&format!(
            "{what}: {failure}; retrying in {:.1} s (attempt {} of {})",
            wait.as_secs_f64(),
            self.backoff.failures(),
            self.plan.retries
        ));
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn interrupted(&self, what: &str, failure: &Failure) -> UploadError {
        let advice = if matches!(failure, Failure::Refused(r) if r.status == 503) {
            "the server is busy (another upload is in progress, or the volume is not ready yet): wait, then run the same command again".to_string()
        } else if self.location.is_some() && self.state.is_some() {
            format!(
                "check the URL and the network, then run the same command again: it continues from byte {} (to start over instead, remove {})",
                self.confirmed,
                self.state_path()
            )
        } else {
            "check the URL and the network, then run the same command again".to_string()
        };
        UploadError::new(
            ErrorKind::Network,
            format!(
                "the upload stopped at {} of {} after {} attempts without progress; {what}: {failure}",
                human(self.confirmed),
                human(self.size()),
                self.plan.retries + 1
            ),
            advice,
        )
    }

    /// The server's offset is `offset`: the digest and the display follow.
    fn adopt(&mut self, offset: u64) -> Result<(), UploadError> {
        let buffered = self
            .buffer
            .as_ref()
            .map(|(at, data)| Buffered { offset: *at, data });
        let rebuilds = self.hash.rebuilds();
        self.hash
            .advance_to(offset, buffered, &self.file)
            .map_err(|e| UploadError::reading(&self.plan.file, &e))?;
        if self.hash.rebuilds() != rebuilds {
            self.display.note(&format!(
                "the server has fewer bytes than it confirmed before ({offset}): the digest was recomputed from the file"
            ));
        }
        if offset > self.best {
            self.best = offset;
            self.backoff.reset();
        }
        self.confirmed = offset;
        self.meter.confirm(offset);
        Ok(())
    }

    async fn create(&mut self) -> Result<Step, UploadError> {
        let created = self
            .plan
            .tus
            .create(Some(self.size()), &self.metadata, self.auth.token())
            .await;
        match created {
            Ok(c) => {
                self.location = Some(c.location);
                self.hash.restart();
                self.confirmed = 0;
                self.best = 0;
                self.meter.confirm(0);
                self.save_state();
                Ok(match c.complete {
                    Some(digest) => Step::Done(digest),
                    None => Step::Send,
                })
            }
            Err(Failure::Refused(r)) if matches!(r.status, 401 | 403) => {
                self.auth.refused(&r).await?;
                Ok(Step::Create)
            }
            Err(Failure::Refused(r)) if matches!(r.status, 404 | 405) => Err(UploadError::new(
                ErrorKind::NotFound,
                format!(
                    "{} has no resumable upload endpoint ({r})",
                    self.plan.tus.endpoint
                ),
                "check --url: it is the upload proxy's base URL, like https://cdi-uploadproxy.example:443",
            )),
            Err(
                f @ Failure::Refused(Refusal {
                    status: 423 | 500..,
                    ..
                }),
            )
            | Err(f @ Failure::Transport(_)) => {
                self.back_off("creating the upload failed", &f).await?;
                Ok(Step::Create)
            }
            Err(Failure::Refused(r)) => {
                Err(self.refused("the server refused to create the upload", r))
            }
        }
    }

    async fn sync(&mut self, why: Why) -> Result<Step, UploadError> {
        let Some(location) = self.location.clone() else {
            return Ok(Step::Create);
        };
        match self.plan.tus.head(&location, self.auth.token()).await {
            Ok(head) => {
                let size = self.size();
                if head.length.is_some_and(|l| l != size) || head.offset > size {
                    self.display.note(&format!(
                        "the server's upload is not of this file ({} of {:?} bytes): starting over",
                        head.offset, head.length
                    ));
                    let _ = self.plan.tus.terminate(&location, self.auth.token()).await;
                    return Ok(Step::Create);
                }
                let before = self.best;
                self.adopt(head.offset)?;
                match why {
                    Why::Continue => {
                        self.continued_from = Some(head.offset);
                        self.display.note(&format!(
                            "continuing the interrupted upload at {} of {} ({:.1}%)",
                            human(head.offset),
                            human(size),
                            percent(head.offset, size)
                        ));
                    }
                    Why::Broken | Why::Answered(_) => {
                        self.resumes += 1;
                        self.display.note(&format!(
                            "resuming at byte {} of {} (the server has {})",
                            head.offset,
                            size,
                            human(head.offset)
                        ));
                    }
                }
                if let Why::Answered(r) = &why
                    && head.offset <= before
                {
                    // The upload lives on but the error got us nowhere.
                    self.back_off("the server refused a chunk", &Failure::Refused(r.clone()))
                        .await?;
                }
                if head.offset == size {
                    self.display.note(
                        "the server has every byte, but its answer to the last chunk was lost: its digest cannot be compared",
                    );
                    return Ok(Step::Done(None));
                }
                Ok(Step::Send)
            }
            Err(Failure::Refused(r)) if r.status == 404 => match why {
                Why::Answered(answer) => Err(self.refused("the server ended the upload", answer)),
                Why::Continue => {
                    self.display.note(
                        "the server no longer has the interrupted upload (it ended or the server restarted): starting over",
                    );
                    self.forget_state();
                    Ok(Step::Create)
                }
                Why::Broken => {
                    self.restarts += 1;
                    self.display.note(
                        "the server no longer has the upload (it restarted?): starting over from byte 0",
                    );
                    self.forget_state();
                    Ok(Step::Create)
                }
            },
            Err(Failure::Refused(r)) if matches!(r.status, 401 | 403) => {
                self.auth.refused(&r).await?;
                Ok(Step::Sync(why))
            }
            Err(
                f @ Failure::Refused(Refusal {
                    status: 423 | 500..,
                    ..
                }),
            )
            | Err(f @ Failure::Transport(_)) => {
                self.back_off("asking the server for its offset failed", &f)
                    .await?;
                Ok(Step::Sync(why))
            }
            Err(Failure::Refused(r)) => match why {
                Why::Answered(answer) => Err(self.refused("the server ended the upload", answer)),
                _ => Err(self.refused("the server refused to say how much it has", r)),
            },
        }
    }

    /// The rest of the file from the confirmed offset: the buffered tail if it is that, else
    /// read.
    fn tail(&mut self) -> Result<Bytes, UploadError> {
        let len = (self.size() - self.confirmed) as usize;
        if let Some((at, data)) = &self.buffer
            && *at == self.confirmed
            && data.len() == len
        {
            return Ok(data.clone());
        }
        let mut data = vec![0u8; len];
        self.file
            .read_exact_at(&mut data, self.confirmed)
            .map_err(|e| UploadError::reading(&self.plan.file, &e))?;
        let data = Bytes::from(data);
        self.buffer = Some((self.confirmed, data.clone()));
        Ok(data)
    }

    async fn send(&mut self) -> Result<Step, UploadError> {
        let Some(location) = self.location.clone() else {
            return Ok(Step::Create);
        };
        if self.size() - self.confirmed <= TAIL {
            return self.send_last(&location).await;
        }
        let offset = self.confirmed;
        let len = (self.size() - offset - TAIL).min(self.plan.chunk_size.unwrap_or(u64::MAX));
        let end = offset + len;
        let (hasher, upto) = self.hash.fork();
        debug_assert_eq!(upto, offset);
        let (body, reader) = range_body(
            Arc::clone(&self.file),
            offset,
            len,
            hasher,
            Arc::clone(&self.meter),
        )
        .map_err(|e| UploadError::reading(&self.plan.file, &e))?;
        let answer = self
            .plan
            .tus
            .patch(
                &location,
                offset,
                PatchBody::streamed(body, len),
                false,
                self.auth.token(),
                &self.meter,
            )
            .await;
        let read = tokio::task::spawn_blocking(move || reader.join())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(Ok(Read::Dropped))
            .map_err(|e| UploadError::reading(&self.plan.file, &e))?;
        if let (Ok(patched), Read::Whole(hasher)) = (&answer, read)
            && patched.offset == end
        {
            self.hash.adopt_fork(*hasher, end);
        }
        self.answered(answer, offset, end).await
    }

    /// The last bytes, with their own checksum and the whole file's digest.
    async fn send_last(&mut self, location: &Url) -> Result<Step, UploadError> {
        let offset = self.confirmed;
        let data = self.tail()?;
        let end = offset + data.len() as u64;
        let (mut hasher, _) = self.hash.fork();
        hasher.update(&data);
        let whole = Checksum {
            algorithm: hasher.algorithm(),
            hex: hasher.finish_hex(),
        };
        if let Some(expected) = &self.plan.checksum
            && expected.algorithm == whole.algorithm
            && *expected != whole
        {
            let _ = self.plan.tus.terminate(location, self.auth.token()).await;
            self.forget_state();
            return Err(UploadError::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "checksum mismatch: {} is {whole}, but --checksum says {expected}; the upload was ended and the server kept nothing",
                    self.plan.file.display()
                ),
                "check that --checksum belongs to this file (or fetch the file again), then upload again",
            ));
        }
        let answer = self
            .plan
            .tus
            .patch(
                location,
                offset,
                PatchBody::held(data, Some(whole), &self.meter),
                true,
                self.auth.token(),
                &self.meter,
            )
            .await;
        self.answered(answer, offset, end).await
    }

    /// What follows the server's answer to a PATCH of bytes `offset..end`.
    async fn answered(
        &mut self,
        answer: Result<Patched, Failure>,
        offset: u64,
        end: u64,
    ) -> Result<Step, UploadError> {
        self.meter.confirm(self.confirmed);
        match answer {
            Ok(patched) => {
                if patched.offset < offset || patched.offset > end {
                    let f = Failure::Transport(format!(
                        "the server confirmed byte {} for a chunk of bytes {offset}-{end}",
                        patched.offset
                    ));
                    self.back_off("the offsets disagreed", &f).await?;
                    return Ok(Step::Sync(Why::Broken));
                }
                self.adopt(patched.offset)?;
                if patched.offset == self.size() {
                    return Ok(Step::Done(patched.digest));
                }
                Ok(Step::Send)
            }
            Err(f @ Failure::Transport(_)) => {
                self.back_off(&format!("sending bytes {offset}-{end} failed"), &f)
                    .await?;
                Ok(Step::Sync(Why::Broken))
            }
            Err(Failure::Refused(r)) => match r.status {
                409 if r.offset.is_some_and(|at| at <= self.size()) => {
                    let at = r.offset.unwrap_or(offset);
                    self.display.note(&format!(
                        "the server is at byte {at}, not {offset}: going on from there"
                    ));
                    let before = self.best;
                    self.adopt(at)?;
                    if at <= before {
                        self.back_off("the offsets disagreed", &Failure::Refused(r))
                            .await?;
                    }
                    self.resumes += 1;
                    Ok(Step::Send)
                }
                460 => {
                    self.back_off(
                        &format!("bytes {offset}-{end} arrived damaged"),
                        &Failure::Refused(r),
                    )
                    .await?;
                    Ok(Step::Send)
                }
                401 | 403 => {
                    self.auth.refused(&r).await?;
                    Ok(Step::Send)
                }
                413 => Err(self.refused("the server refused the chunk size", r)),
                404 => {
                    self.back_off("the server no longer has the upload", &Failure::Refused(r))
                        .await?;
                    Ok(Step::Sync(Why::Broken))
                }
                423 | 502..=504 => {
                    let f = Failure::Refused(r);
                    self.back_off(&format!("sending bytes {offset}-{end} failed"), &f)
                        .await?;
                    Ok(Step::Sync(Why::Broken))
                }
                _ => Ok(Step::Sync(Why::Answered(r))),
            },
        }
    }

    /// An error answer that ends the upload: what it means, and what to do.
    fn refused(&mut self, context: &str, r: Refusal) -> UploadError {
        // Whatever the server had, it has dropped: nothing is left to continue.
        self.forget_state();
        let kind = classify(&r);
        if kind == ErrorKind::ChecksumMismatch
            && let Some(expected) = &self.plan.checksum
        {
            let size = self.size();
            let buffered = self
                .buffer
                .as_ref()
                .map(|(at, data)| Buffered { offset: *at, data });
            if self.hash.advance_to(size, buffered, &self.file).is_ok() {
                let actual = self.hash.digest();
                if actual != *expected {
                    return UploadError::new(
                        ErrorKind::ChecksumMismatch,
                        format!(
                            "checksum mismatch: {} is {actual}, but --checksum says {expected}; the server refused the upload and kept nothing",
                            self.plan.file.display()
                        ),
                        "check that --checksum belongs to this file (or fetch the file again), then upload again",
                    );
                }
            }
        }
        UploadError::new(kind, format!("{context}: {r}"), advice(kind))
    }

    fn finish(
        &mut self,
        server_digest: Option<Checksum>,
        started: Instant,
    ) -> Result<Uploaded, UploadError> {
        self.forget_state();
        if self.hash.upto() != self.size() {
            return Err(UploadError::new(
                ErrorKind::Io,
                format!(
                    "internal error: the digest covers {} of {} bytes",
                    self.hash.upto(),
                    self.size()
                ),
                "upload again, and report this bug",
            ));
        }
        let digest = self.hash.digest();
        if let Some(theirs) = &server_digest
            && theirs.algorithm == digest.algorithm
            && theirs.hex != digest.hex
        {
            return Err(UploadError::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "the server received other bytes than {} holds: it computed {theirs}, the file is {digest}",
                    self.plan.file.display()
                ),
                "the image on the volume is not this file: upload it again (and look for whatever alters data on the way)",
            ));
        }
        if let Ok(meta) = std::fs::metadata(&self.plan.file)
            && FileStamp::of(&meta) != self.stamp
        {
            self.display.note(
                "the file changed while it was being uploaded: the volume has the bytes as they were read",
            );
        }
        Ok(Uploaded {
            size: self.size(),
            continued_from: self.continued_from,
            resumes: self.resumes,
            restarts: self.restarts,
            digest,
            server_digest,
            elapsed: started.elapsed(),
        })
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The kind of failure an error answer reports (it picks the exit code).
pub fn classify(r: &Refusal) -> ErrorKind {
    let m = r.message.to_ascii_lowercase();
    match r.status {
        401 | 403 => ErrorKind::Auth,
        507 => ErrorKind::NoSpace,
        _ if m.contains("checksum mismatch") => ErrorKind::ChecksumMismatch,
        _ if m.contains("larger than the reported available storage") => ErrorKind::TooLarge,
        _ if m.contains("unsupported") => ErrorKind::Unsupported,
        400 if m.contains("upload refused") => ErrorKind::InvalidImage,
        404 => ErrorKind::NotFound,
        400..=499 => ErrorKind::Config,
        500 => ErrorKind::Io,
        _ => ErrorKind::Network,
    }
}

/// What to do about an upload the server ended, by kind.
pub fn advice(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ChecksumMismatch => {
            "check --checksum and the file; the server kept nothing, so upload again once they agree"
        }
        ErrorKind::TooLarge => {
            "the image does not fit the volume: upload into a larger one (a larger --size)"
        }
        ErrorKind::InvalidImage => {
            "the server refused the image for the reason above: fix or replace the file (qemu-img check, qemu-img convert), then upload again"
        }
        ErrorKind::Unsupported => {
            "convert the image to raw or a self-contained qcow2 (optionally gz/xz/zst-compressed) and upload again"
        }
        ErrorKind::NoSpace => "the volume is full: upload into a larger one",
        ErrorKind::Io => {
            "the upload server could not write the volume: check its pod's log, then upload again"
        }
        ErrorKind::NotFound => "check the URL",
        ErrorKind::Auth => "check the token or certificate",
        ErrorKind::Config => {
            "the server refused the request as sent: check the options (and the server's message)"
        }
        ErrorKind::Network => "check the URL and the network, then upload again",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, message: &str) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            offset: None,
        }
    }

    #[test]
    fn error_answers_map_to_the_kinds_their_exit_codes_follow() {
        let cases = [
            (
                400,
                "upload refused: checksum mismatch: sha256 expected 00 got 11",
                ErrorKind::ChecksumMismatch,
            ),
            (
                400,
                "effective image size is larger than the reported available storage: 1 > 0",
                ErrorKind::TooLarge,
            ),
            (
                400,
                "upload refused: invalid qcow2 header",
                ErrorKind::InvalidImage,
            ),
            (507, "Saving stream failed: no space", ErrorKind::NoSpace),
            (500, "Saving stream failed: I/O error", ErrorKind::Io),
            (
                401,
                "a verified client certificate is required",
                ErrorKind::Auth,
            ),
            (412, "Tus-Resumable must be 1.0.0", ErrorKind::Config),
            (
                502,
                "error in upload-proxy: connection refused",
                ErrorKind::Network,
            ),
        ];
        for (status, message, kind) in cases {
            assert_eq!(
                classify(&refusal(status, message)),
                kind,
                "{status} {message}"
            );
        }
    }
}
