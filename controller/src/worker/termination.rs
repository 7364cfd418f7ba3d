//! Reads a finished worker container: its exit code and termination message (CDI's format, plus
//! our `reason`/`terminal` additions) become success, a terminal failure that fails the
//! DataVolume, or a transient one the kubelet retries.

use serde::Deserialize;

/// How a worker container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Termination {
    /// The data is in place.
    Succeeded {
        message: String,
        preallocation_applied: bool,
        /// The upload server's deadline passed without an upload: recreate the pod.
        deadline_passed: bool,
        labels: std::collections::BTreeMap<String, String>,
    },
    /// Retrying cannot help (checksum mismatch, not found, unauthorised, invalid image, too
    /// large): the DataVolume fails.
    Terminal { reason: String, message: String },
    /// The kubelet restarts the pod and the worker resumes.
    Transient { reason: String, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Json {
    message: String,
    preallocation_applied: bool,
    deadline_passed: bool,
    labels: std::collections::BTreeMap<String, String>,
    reason: Option<String>,
    terminal: Option<bool>,
}

/// Upstream's phrase for a checksum mismatch (in an exit-0 JSON message).
const CHECKSUM_MISMATCH: &str = "checksum mismatch";

/// Classifies a container that exited with `exit_code`, `message` being its termination message
/// and `kube_reason` the kubelet's reason (`OOMKilled`, `Error`, `Completed`).
pub fn classify(exit_code: i32, message: &str, kube_reason: Option<&str>) -> Termination {
    let message = message.trim();
    if exit_code == 0 {
        let first = message.lines().next().unwrap_or("");
        let json: Json = serde_json::from_str(first).unwrap_or_else(|_| Json {
            message: first.to_owned(),
            ..Json::default()
        });
        let checksum = json.message.to_lowercase().contains(CHECKSUM_MISMATCH);
        if json.terminal == Some(true) || checksum {
            return Termination::Terminal {
                reason: upstream_reason(json.reason.as_deref().unwrap_or("ChecksumMismatch")),
                message: json.message,
            };
        }
        return Termination::Succeeded {
            message: json.message,
            preallocation_applied: json.preallocation_applied,
            deadline_passed: json.deadline_passed,
            labels: json.labels,
        };
    }
    let mut lines = message.lines();
    let text = simplify(lines.next().unwrap_or("").trim());
    let extra: Option<Json> = lines.next().and_then(|l| serde_json::from_str(l).ok());
    let text = if text.is_empty() {
        format!(
            "the worker exited with code {exit_code}{}",
            kube_reason.map(|r| format!(" ({r})")).unwrap_or_default()
        )
    } else {
        text
    };
    match extra {
        Some(Json {
            reason: Some(reason),
            terminal: Some(true),
            ..
        }) => Termination::Terminal {
            reason: upstream_reason(&reason),
            message: text,
        },
        Some(Json {
            reason: Some(reason),
            ..
        }) => Termination::Transient {
            reason,
            message: text,
        },
        _ => Termination::Transient {
            reason: match kube_reason {
                Some("OOMKilled") => "OOMKilled".into(),
                _ => "Error".into(),
            },
            message: text,
        },
    }
}

/// Our reason names where upstream already has one for the same thing.
fn upstream_reason(reason: &str) -> String {
    match reason {
        "ChecksumMismatch" => "ChecksumError".into(),
        other => other.into(),
    }
}

/// Upstream rewrites out-of-space failures to one sentence users recognise.
fn simplify(text: &str) -> String {
    const TOO_SMALL: [&str; 4] = [
        "is larger than the reported available",
        "no space left on device",
        "disk quota exceeded",
        "file largest block is bigger than maxblock",
    ];
    let lower = text.to_lowercase();
    if TOO_SMALL.iter().any(|m| lower.contains(m)) {
        "DataVolume too small to contain image".into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_json_is_parsed() {
        let t = classify(
            0,
            r#"{"preallocationApplied":true,"message":"Import Complete"}"#,
            Some("Completed"),
        );
        assert_eq!(
            t,
            Termination::Succeeded {
                message: "Import Complete".into(),
                preallocation_applied: true,
                deadline_passed: false,
                labels: Default::default(),
            }
        );
    }

    #[test]
    fn checksum_mismatch_exit_zero_is_terminal() {
        let ours = classify(
            0,
            r#"{"preallocationApplied":false,"message":"checksum mismatch: expected sha256:aa, got sha256:bb","reason":"ChecksumMismatch","terminal":true}"#,
            None,
        );
        assert!(
            matches!(ours, Termination::Terminal { ref reason, .. } if reason == "ChecksumError")
        );
        // Upstream's importer writes no reason; the phrase is enough.
        let upstream = classify(0, r#"{"message":"Checksum mismatch for sha256"}"#, None);
        assert!(matches!(upstream, Termination::Terminal { .. }));
    }

    #[test]
    fn failure_with_terminal_reason_line_is_terminal() {
        let t = classify(
            1,
            "Unable to connect to http data source: 404 Not Found\n{\"reason\":\"NotFound\",\"terminal\":true}",
            Some("Error"),
        );
        assert_eq!(
            t,
            Termination::Terminal {
                reason: "NotFound".into(),
                message: "Unable to connect to http data source: 404 Not Found".into(),
            }
        );
    }

    #[test]
    fn failure_without_reason_line_is_transient() {
        let t = classify(1, "Unable to process data: connection reset", Some("Error"));
        assert_eq!(
            t,
            Termination::Transient {
                reason: "Error".into(),
                message: "Unable to process data: connection reset".into(),
            }
        );
        let oom = classify(137, "", Some("OOMKilled"));
        assert!(
            matches!(oom, Termination::Transient { ref reason, ref message }
            if reason == "OOMKilled" && message.contains("137"))
        );
    }

    #[test]
    fn transient_reason_line_keeps_its_reason() {
        let t = classify(
            1,
            "Unable to process data: timed out\n{\"reason\":\"TransferFailed\",\"terminal\":false}",
            None,
        );
        assert!(
            matches!(t, Termination::Transient { ref reason, .. } if reason == "TransferFailed")
        );
    }

    #[test]
    fn out_of_space_messages_are_simplified() {
        let t = classify(
            1,
            "Unable to process data: write: no space left on device\n{\"reason\":\"NoSpace\",\"terminal\":true}",
            None,
        );
        assert_eq!(
            t,
            Termination::Terminal {
                reason: "NoSpace".into(),
                message: "DataVolume too small to contain image".into(),
            }
        );
    }
}
