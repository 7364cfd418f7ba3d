//! The termination message and exit code, in CDI's format: JSON on success (exit 0), plain text
//! `Unable to process data: ...` on failure (exit 1), and the checksum-mismatch special case
//! (exit 0, JSON, no retry). We add a `reason` and whether the failure is `terminal`, so a
//! controller can fail the DataVolume instead of restarting the pod forever: on success and
//! checksum mismatch as JSON keys, on other failures as a second line of JSON.

use std::path::Path;
use std::process::ExitCode;

use cdi_datapath::ErrorKind;
use serde::Serialize;

use crate::target::Failure;

/// Kubernetes keeps at most 4096 bytes of a termination message.
const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Json {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deadline_passed: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    scratch_space_required: bool,
    preallocation_applied: bool,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    terminal: Option<bool>,
}

/// How the importer ended.
#[derive(Debug)]
pub enum Outcome {
    Success {
        preallocation_applied: bool,
        message: String,
    },
    /// Exit 0 with JSON (upstream's checksum behaviour).
    FailedNoRetry {
        message: String,
        reason: &'static str,
    },
    Failure {
        text: String,
        reason: &'static str,
        terminal: bool,
    },
    /// An upload server whose certificates are due for replacement ended unused (exit 0): the
    /// controller recreates its pod with fresh ones.
    DeadlinePassed,
}

/// The termination reason for a failure of `kind`, and whether retrying cannot help.
pub fn reason(kind: ErrorKind) -> (&'static str, bool) {
    match kind {
        ErrorKind::InvalidImage => ("InvalidImage", true),
        ErrorKind::Unsupported => ("UnsupportedImage", true),
        ErrorKind::TooLarge => ("ImageTooLarge", true),
        ErrorKind::NotFound => ("NotFound", true),
        ErrorKind::Auth => ("Unauthorized", true),
        ErrorKind::Config => ("InvalidConfiguration", true),
        ErrorKind::NoSpace => ("NoSpace", true),
        ErrorKind::ChecksumMismatch => ("ChecksumMismatch", true),
        ErrorKind::Network => ("TransferFailed", false),
        ErrorKind::Io => ("IOError", false),
    }
}

impl Outcome {
    /// A failed worker's outcome: `prefix: error`, with the error's reason. A checksum
    /// mismatch ends without a restart (exit 0), as upstream.
    pub fn from_failure(failure: &Failure, prefix: &str) -> Outcome {
        let e = &failure.error;
        tracing::error!(error = %e, target = %failure.target_state, "{prefix}.");
        let kind = e.kind();
        let (reason, terminal) = reason(kind);
        if kind == ErrorKind::ChecksumMismatch {
            return Outcome::FailedNoRetry {
                message: format!("{prefix}: {e}"),
                reason,
            };
        }
        Outcome::failure_text(format!("{prefix}: {e}"), reason, terminal)
    }

    pub fn failure_text(text: String, reason: &'static str, terminal: bool) -> Outcome {
        Outcome::Failure {
            text,
            reason,
            terminal,
        }
    }

    /// The termination message, as written.
    pub fn message(&self) -> String {
        let json = |j: &Json| serde_json::to_string(j).unwrap_or_else(|_| "{}".into());
        let mut m = match self {
            Outcome::Success {
                preallocation_applied,
                message,
            } => json(&Json {
                deadline_passed: false,
                scratch_space_required: false,
                preallocation_applied: *preallocation_applied,
                message: message.clone(),
                reason: None,
                terminal: None,
            }),
            Outcome::DeadlinePassed => json(&Json {
                deadline_passed: true,
                scratch_space_required: false,
                preallocation_applied: false,
                message: "Deadline Passed".into(),
                reason: None,
                terminal: None,
            }),
            Outcome::FailedNoRetry { message, reason } => json(&Json {
                deadline_passed: false,
                scratch_space_required: false,
                preallocation_applied: false,
                message: message.clone(),
                reason: Some(reason),
                terminal: Some(true),
            }),
            Outcome::Failure {
                text,
                reason,
                terminal,
            } => {
                let first = text.lines().collect::<Vec<_>>().join(" ");
                format!("{first}\n{{\"reason\":\"{reason}\",\"terminal\":{terminal}}}")
            }
        };
        if m.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
        }
        m
    }

    /// Writes the termination message and returns the exit code.
    pub fn finish(&self, log: &Path) -> ExitCode {
        let message = self.message();
        match self {
            Outcome::Failure { .. } => tracing::error!(message = %message, "Worker failed."),
            _ => tracing::info!(message = %message, "Worker finished."),
        }
        if let Err(e) = std::fs::write(log, &message) {
            tracing::warn!(path = %log.display(), error = %e, "Could not write the termination message.");
        }
        match self {
            Outcome::Failure { .. } => ExitCode::from(1),
            _ => ExitCode::SUCCESS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_message_is_upstreams_json() {
        let o = Outcome::Success {
            preallocation_applied: false,
            message: "Import Complete".into(),
        };
        assert_eq!(
            o.message(),
            r#"{"preallocationApplied":false,"message":"Import Complete"}"#
        );
    }

    #[test]
    fn deadline_message_is_upstreams_json() {
        assert_eq!(
            Outcome::DeadlinePassed.message(),
            r#"{"deadlinePassed":true,"preallocationApplied":false,"message":"Deadline Passed"}"#
        );
    }

    #[test]
    fn failure_is_plain_text_then_a_reason_line() {
        let o = Outcome::failure_text(
            "Unable to process data: boom\nmore".into(),
            "NotFound",
            true,
        );
        assert_eq!(
            o.message(),
            "Unable to process data: boom more\n{\"reason\":\"NotFound\",\"terminal\":true}"
        );
    }

    #[test]
    fn long_messages_are_cut_at_4096_bytes() {
        let o = Outcome::failure_text("é".repeat(5000), "IOError", false);
        assert!(o.message().len() <= 4096);
    }
}
