//! The termination message and exit code, in CDI's format: JSON on success (exit 0), plain text
//! `Unable to process data: ...` on failure (exit 1), and the checksum-mismatch special case
//! (exit 0, JSON, no retry). We add a `reason` and whether the failure is `terminal`, so a
//! controller can fail the DataVolume instead of restarting the pod forever: on success and
//! checksum mismatch as JSON keys, on other failures as a second line of JSON.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

/// Kubernetes keeps at most 4096 bytes of a termination message.
const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Json {
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
}

impl Outcome {
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
                scratch_space_required: false,
                preallocation_applied: *preallocation_applied,
                message: message.clone(),
                reason: None,
                terminal: None,
            }),
            Outcome::FailedNoRetry { message, reason } => json(&Json {
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
            Outcome::Failure { .. } => tracing::error!(message = %message, "Import failed."),
            _ => tracing::info!(message = %message, "Import finished."),
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
