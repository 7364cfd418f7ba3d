//! Why an upload stopped, in the words the user sees: what happened, and what to do about it.

use cdi_datapath::ErrorKind;

/// A failed upload. `kind` picks the exit code ([`crate::exit::for_kind`]), as for imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadError {
    pub kind: ErrorKind,
    /// What happened, one sentence.
    pub message: String,
    /// What to do about it, one sentence.
    pub advice: String,
}

impl UploadError {
    pub fn new(kind: ErrorKind, message: impl Into<String>, advice: impl Into<String>) -> Self {
        UploadError {
            kind,
            message: message.into(),
            advice: advice.into(),
        }
    }

    /// A local file could not be read.
    pub fn reading(path: &std::path::Path, e: &std::io::Error) -> Self {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::Io
        };
        UploadError::new(
            kind,
            format!("reading {}: {e}", path.display()),
            "check the file's path and permissions",
        )
    }
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UploadError {}
