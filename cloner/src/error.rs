//! Why a clone stopped, with the kind that picks its termination reason.

use cdi_datapath::ErrorKind;
use cdi_tusclient::Refusal;

/// A failed clone.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// Reading the source failed, or it changed or shrank under the clone.
    #[error(transparent)]
    Source(#[from] cdi_datapath::Error),
    #[error("setting up mTLS to the upload server: {0}")]
    Tls(String),
    #[error("the upload server refused the clone: {0}")]
    Refused(Refusal),
    #[error(
        "the upload server could not be reached or kept failing ({failures} attempts in a row \
         without progress); last: {last}"
    )]
    Unreachable { failures: u32, last: String },
}

impl CloneError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CloneError::Source(e) => e.kind(),
            CloneError::Tls(_) => ErrorKind::Config,
            CloneError::Refused(r) => match r.status {
                401 | 403 => ErrorKind::Auth,
                400 if r
                    .message
                    .contains("larger than the reported available storage") =>
                {
                    ErrorKind::TooLarge
                }
                400 if r.message.contains("digest does not match") => ErrorKind::ChecksumMismatch,
                507 => ErrorKind::NoSpace,
                400 | 404 | 405 | 409 | 412 | 413 | 415 => ErrorKind::InvalidImage,
                _ => ErrorKind::Network,
            },
            CloneError::Unreachable { .. } => ErrorKind::Network,
        }
    }
}
