//! Whether a claim can take an upload now, decided from its annotations (a pure function), and
//! the wait for it: polled until the upload pod is ready, as upstream (10 s, every 1 s).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use tracing::warn;

use crate::error::AppError;
use crate::targets::UploadTargets;

/// The claim annotations the decision reads (the controller writes them).
pub mod annotations {
    pub use cdi_crds::annotations::clone::UPLOAD_TARGET;
    pub use cdi_crds::annotations::content::CONTENT_TYPE;
    pub use cdi_crds::annotations::pod::{PHASE as POD_PHASE, READY as POD_READY};
}

/// What the upload server will make of the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    /// A disk image (`kubevirt`, the default).
    Kubevirt,
    /// A tar archive to extract (`archive`).
    Archive,
}

/// The decision for one look at a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Forward now.
    Ready(ContentType),
    /// An upload target whose pod is not ready yet: look again.
    Waiting,
    /// Never going to work: answer 503 with this message.
    Refused(String),
}

/// How long and how often to look at a claim that is not ready yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadinessPolicy {
    /// Give up after this long (upstream: 10 s).
    pub timeout: Duration,
    /// Look again after this long (upstream: 1 s).
    pub interval: Duration,
}

impl Default for ReadinessPolicy {
    fn default() -> Self {
        ReadinessPolicy {
            timeout: Duration::from_secs(10),
            interval: Duration::from_secs(1),
        }
    }
}

/// The decision for claim `name` as found (`None`: it does not exist). Upstream's order and
/// messages: existence, upload target, finished, ready, then the content type.
pub fn readiness(name: &str, claim: Option<&PersistentVolumeClaim>) -> Readiness {
    let Some(claim) = claim else {
        return Readiness::Refused(format!(
            "rejecting Upload Request for PVC {name} that doesn't exist"
        ));
    };
    let empty = BTreeMap::new();
    let annotations = claim.metadata.annotations.as_ref().unwrap_or(&empty);
    if !annotations.contains_key(annotations::UPLOAD_TARGET) {
        return Readiness::Refused(format!("PVC {name} is not an upload target"));
    }
    if annotations.get(annotations::POD_PHASE).map(String::as_str) == Some("Succeeded") {
        return Readiness::Refused(format!(
            "rejecting Upload Request for PVC {name} that already finished uploading"
        ));
    }
    let ready = annotations
        .get(annotations::POD_READY)
        .is_some_and(|v| go_parse_bool_true(v));
    if !ready {
        return Readiness::Waiting;
    }
    match annotations
        .get(annotations::CONTENT_TYPE)
        .map(String::as_str)
    {
        None | Some("" | "kubevirt") => Readiness::Ready(ContentType::Kubevirt),
        Some("archive") => Readiness::Ready(ContentType::Archive),
        Some(other) => Readiness::Refused(format!(
            "rejecting upload request for PVC {name} - upload content-type {other} is invalid"
        )),
    }
}

/// Go's `strconv.ParseBool` returning true.
fn go_parse_bool_true(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

/// The path on the upload server for a request to `path` (one of the upstream upload paths):
/// archives go to `upload-archive` of the same API version, as upstream.
pub fn upload_server_path(path: &str, content: ContentType) -> &str {
    match content {
        ContentType::Kubevirt => path,
        ContentType::Archive if path.starts_with("/v1alpha1/") => "/v1alpha1/upload-archive",
        ContentType::Archive => "/v1beta1/upload-archive",
    }
}

/// Looks at claim `namespace/name` until it is ready (its content type returned), refused, or
/// `policy.timeout` has passed.
pub async fn wait_until_ready(
    targets: &dyn UploadTargets,
    namespace: &str,
    name: &str,
    policy: ReadinessPolicy,
) -> Result<ContentType, AppError> {
    let deadline = tokio::time::Instant::now() + policy.timeout;
    loop {
        let claim = targets.claim(namespace, name).await.map_err(|e| {
            warn!(error = %e, "Claim lookup failed.");
            AppError::NotReady(format!(
                "rejecting Upload Request for PVC {name}: the claim could not be read"
            ))
        })?;
        match readiness(name, claim.as_ref()) {
            Readiness::Ready(content) => return Ok(content),
            Readiness::Refused(message) => return Err(AppError::NotReady(message)),
            Readiness::Waiting => {}
        }
        if tokio::time::Instant::now() + policy.interval > deadline {
            return Err(AppError::NotReady(format!(
                "rejecting Upload Request for PVC {name}: its upload server did not become \
                 ready within {}s",
                policy.timeout.as_secs_f64()
            )));
        }
        tokio::time::sleep(policy.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn claim(annotations: &[(&str, &str)]) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("disk".into()),
                namespace: Some("vms".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const TARGET: (&str, &str) = (annotations::UPLOAD_TARGET, "");
    const READY: (&str, &str) = (annotations::POD_READY, "true");

    #[test]
    fn readiness_follows_upstreams_rules() {
        let refused = |m: &str| Readiness::Refused(m.to_owned());
        let cases: Vec<(&str, Option<PersistentVolumeClaim>, Readiness)> = vec![
            (
                "missing claim",
                None,
                refused("rejecting Upload Request for PVC disk that doesn't exist"),
            ),
            (
                "not an upload target",
                Some(claim(&[READY])),
                refused("PVC disk is not an upload target"),
            ),
            (
                "finished",
                Some(claim(&[
                    TARGET,
                    READY,
                    (annotations::POD_PHASE, "Succeeded"),
                ])),
                refused("rejecting Upload Request for PVC disk that already finished uploading"),
            ),
            ("pod not ready", Some(claim(&[TARGET])), Readiness::Waiting),
            (
                "pod ready false",
                Some(claim(&[TARGET, (annotations::POD_READY, "false")])),
                Readiness::Waiting,
            ),
            (
                "pod ready garbage",
                Some(claim(&[TARGET, (annotations::POD_READY, "yes")])),
                Readiness::Waiting,
            ),
            (
                "running and ready",
                Some(claim(&[TARGET, READY, (annotations::POD_PHASE, "Running")])),
                Readiness::Ready(ContentType::Kubevirt),
            ),
            (
                "ready as Go spells it",
                Some(claim(&[TARGET, (annotations::POD_READY, "True")])),
                Readiness::Ready(ContentType::Kubevirt),
            ),
            (
                "kubevirt content",
                Some(claim(&[
                    TARGET,
                    READY,
                    (annotations::CONTENT_TYPE, "kubevirt"),
                ])),
                Readiness::Ready(ContentType::Kubevirt),
            ),
            (
                "archive content",
                Some(claim(&[
                    TARGET,
                    READY,
                    (annotations::CONTENT_TYPE, "archive"),
                ])),
                Readiness::Ready(ContentType::Archive),
            ),
            (
                "unknown content",
                Some(claim(&[TARGET, READY, (annotations::CONTENT_TYPE, "iso")])),
                refused(
                    "rejecting upload request for PVC disk - upload content-type iso is invalid",
                ),
            ),
        ];
        for (what, claim, expected) in cases {
            assert_eq!(readiness("disk", claim.as_ref()), expected, "{what}");
        }
    }

    #[test]
    fn archive_uploads_are_sent_to_upload_archive_of_the_same_version() {
        for (path, content, expected) in [
            ("/v1beta1/upload", ContentType::Kubevirt, "/v1beta1/upload"),
            (
                "/v1alpha1/upload-async",
                ContentType::Kubevirt,
                "/v1alpha1/upload-async",
            ),
            (
                "/v1beta1/upload",
                ContentType::Archive,
                "/v1beta1/upload-archive",
            ),
            (
                "/v1beta1/upload-form-async",
                ContentType::Archive,
                "/v1beta1/upload-archive",
            ),
            (
                "/v1alpha1/upload-form",
                ContentType::Archive,
                "/v1alpha1/upload-archive",
            ),
        ] {
            assert_eq!(upload_server_path(path, content), expected, "{path}");
        }
    }
}
