//! One upload at a time: the server's state, and the bridge from a request body to the data
//! path ([`Transfer`]: a push source feeding an import on its own thread).
//!
//! ```text
//!  Idle ──begin──► Receiving (plain/form/archive request, or a tus upload across PATCHes)
//!   ▲                 │ failed: target removed, a new upload may start
//!   └─────────────────┤
//!                     └─ succeeded ──► Done (409 for anything else; the server exits)
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use cdi_datapath::source::{PushSender, push_channel};
use cdi_datapath::{Algorithm, Checksum, FormatChoice, ImportSpec, PendingChecksum, Progress};
use cdi_worker::metrics::Extra;
use cdi_worker::{Failure, TargetSpec, Written};
use tokio::sync::{oneshot, watch};

use crate::config::ContentType;
use crate::tus::TusUpload;

/// What the server is doing.
#[derive(Debug)]
pub enum Phase {
    Idle,
    /// A plain, form or archive upload in one request.
    Receiving,
    /// A resumable upload, alive across requests until it completes or is terminated.
    Tus(Arc<TusUpload>),
    Done,
}

/// Why a new upload cannot start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 503: another upload is running.
    Busy(String),
    /// 409: the upload already succeeded.
    Done,
}

/// How the server ended, for `main`.
#[derive(Debug, Clone)]
pub enum Finished {
    Uploaded(Written),
    DeadlinePassed,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct Shared {
    pub target: TargetSpec,
    pub content_type: ContentType,
    pub client_name: String,
    pub owner_uid: String,
    pub spill_dir: std::path::PathBuf,
    /// A request body that sends nothing for this long fails.
    pub body_idle: std::time::Duration,
    pub progress: Arc<Progress>,
    pub extra: Arc<Extra>,
    phase: Mutex<Phase>,
    /// The resumable upload that completed, so a client whose last response was lost learns
    /// it is done: its id and length.
    completed: Mutex<Option<(String, u64)>>,
    finished: watch::Sender<Option<Finished>>,
}

/// Holds the server in [`Phase::Receiving`]; back to idle when dropped unless it succeeded.
#[derive(Debug)]
pub struct Claim {
    shared: Arc<Shared>,
    released: bool,
}

impl Claim {
    /// The upload succeeded: the server is done.
    pub fn succeed(mut self, written: Written) {
        self.shared.finish(written);
        self.released = true;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.released {
            self.shared.set_phase(Phase::Idle);
        }
    }
}

/// A running import fed by a request: push bytes into `sender`, then await `result`.
#[derive(Debug)]
pub struct Transfer {
    pub sender: PushSender,
    pub result: oneshot::Receiver<Result<Written, Failure>>,
    /// The digest of the whole upload when it is sent only with its last bytes (a tus
    /// PATCH's `X-CDI-Checksum`); checked before the commit like `expected`.
    pub pending: PendingChecksum,
    /// The algorithms the import hashes with, so the only ones `pending` may use.
    pub hashed: Vec<Algorithm>,
}

impl Shared {
    pub fn new(
        target: TargetSpec,
        content_type: ContentType,
        client_name: String,
        owner_uid: String,
        spill_dir: std::path::PathBuf,
        body_idle: std::time::Duration,
    ) -> (Arc<Shared>, watch::Receiver<Option<Finished>>) {
        let (finished, rx) = watch::channel(None);
        let shared = Shared {
            target,
            content_type,
            client_name,
            owner_uid,
            spill_dir,
            body_idle,
            progress: Progress::new(),
            extra: Arc::new(Extra::default()),
            phase: Mutex::new(Phase::Idle),
            completed: Mutex::new(None),
            finished,
        };
        (Arc::new(shared), rx)
    }

    pub fn phase(&self) -> MutexGuard<'_, Phase> {
        // A handler that panicked while holding the lock left a valid phase behind.
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_phase(&self, phase: Phase) {
        *self.phase() = phase;
    }

    /// Refuses a new upload unless the server is idle.
    pub fn check_idle(phase: &Phase) -> Result<(), Refusal> {
        match phase {
            Phase::Idle => Ok(()),
            Phase::Receiving => Err(Refusal::Busy("an upload is already in progress".into())),
            Phase::Tus(t) => Err(Refusal::Busy(format!(
                "a resumable upload is in progress ({} of {} bytes received); resume it at {} or terminate it with DELETE",
                t.offset(),
                t.length()
                    .map_or("an unknown number of".into(), |l| l.to_string()),
                t.path()
            ))),
            Phase::Done => Err(Refusal::Done),
        }
    }

    /// Starts a one-request upload.
    pub fn begin(self: &Arc<Self>) -> Result<Claim, Refusal> {
        let mut phase = self.phase();
        Self::check_idle(&phase)?;
        *phase = Phase::Receiving;
        Ok(Claim {
            shared: Arc::clone(self),
            released: false,
        })
    }

    /// Records success: later requests get 409 and `main` ends the server.
    pub fn finish(&self, written: Written) {
        self.set_phase(Phase::Done);
        self.finished
            .send_replace(Some(Finished::Uploaded(written)));
    }

    /// Records a completed resumable upload, then success.
    pub fn complete_tus(&self, id: &str, length: u64, written: Written) {
        *self.completed.lock().unwrap_or_else(|p| p.into_inner()) = Some((id.to_owned(), length));
        self.finish(written);
    }

    /// The id of the resumable upload that completed, if one did.
    pub fn completed_tus(&self) -> Option<String> {
        self.completed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(id, _)| id.clone())
    }

    /// Its length.
    pub fn completed_tus_length(&self) -> Option<u64> {
        self.completed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, l)| *l)
    }

    /// Ends the server for its deadline, if it is idle; false when an upload is running.
    pub fn expire(&self) -> bool {
        let mut phase = self.phase();
        if !matches!(*phase, Phase::Idle) {
            return false;
        }
        *phase = Phase::Done;
        self.finished.send_replace(Some(Finished::DeadlinePassed));
        true
    }

    /// Starts the data path for an upload of `total_len` bytes (when known), verifying
    /// `expected` and computing a digest to return (sha256 unless `expected` names another).
    pub fn start(
        &self,
        total_len: Option<u64>,
        expected: Option<Checksum>,
        content: ContentType,
    ) -> Transfer {
        let (sender, source) = push_channel("the upload", total_len);
        let (tx, result) = oneshot::channel();
        let pending = PendingChecksum::new();
        let spec = match content {
            // The stream carries its own digest, checked by the decoder before the commit.
            ContentType::Clone => ImportSpec {
                checksum: expected,
                format: FormatChoice::CloneStream,
                pending_checksum: Some(pending.clone()),
                spill_dir: self.spill_dir.clone(),
                ..ImportSpec::default()
            },
            ContentType::Kubevirt | ContentType::Archive => ImportSpec {
                checksum: expected,
                digest: Some(Algorithm::Sha256),
                pending_checksum: Some(pending.clone()),
                spill_dir: self.spill_dir.clone(),
                ..ImportSpec::default()
            },
        };
        let hashed = [
            Algorithm::Md5,
            Algorithm::Sha1,
            Algorithm::Sha256,
            Algorithm::Sha512,
        ]
        .into_iter()
        .filter(|a| spec.hashes(*a))
        .collect();
        let target = self.target.clone();
        let progress = Arc::clone(&self.progress);
        let spawned = std::thread::Builder::new()
            .name("upload-import".into())
            .spawn(move || {
                let source = Box::new(source);
                let written = match content {
                    ContentType::Kubevirt => target.write_image(source, &spec, &progress),
                    ContentType::Archive => target.write_archive(source, &spec, &progress),
                    ContentType::Clone => target.write_clone(source, &spec, &progress),
                };
                let _ = tx.send(written);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "Could not start the import thread.");
        }
        Transfer {
            sender,
            result,
            pending,
            hashed,
        }
    }
}
