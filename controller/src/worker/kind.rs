//! The kinds of worker that fill a claim, and everything that differs between them outside the
//! pod itself: names, the claim annotations they are tracked by, the objects beside the pod,
//! metrics labels, events, and the DataVolume phases and events their progress maps to. A new
//! worker kind is one more variant here, not one more branch in every reconciler.

use std::collections::BTreeMap;

use cdi_crds::annotations::{clone, import, pod as pod_ann};
use cdi_crds::datavolume::DataVolumePhase;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::context::EventSpec;
use crate::naming;

/// The kind of worker a claim asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerKind {
    /// An importer pod (http, s3, gcs, registry, imageio, vddk, blank).
    Importer,
    /// An upload server pod, with its Service and TLS Secret.
    UploadServer,
    /// The target of a host-assisted clone: an upload server pod (Service, TLS Secret) taking
    /// only the clone stream, fed by a cloner pod on the source claim (`k8s.io/CloneRequest`).
    CloneTarget,
}

/// Objects other than the pod that a worker kind keeps for a claim (deleted with it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Companions {
    /// The pod's TLS Secret.
    pub secret: Option<String>,
    /// The Service in front of the pod; kept when only the pod is renewed.
    pub service: Option<String>,
}

impl WorkerKind {
    /// The worker a claim's annotations ask for, if any.
    pub fn of_claim(claim: &PersistentVolumeClaim) -> Option<WorkerKind> {
        let a = claim.metadata.annotations.as_ref()?;
        if a.contains_key(import::ENDPOINT) || a.contains_key(import::SOURCE) {
            Some(WorkerKind::Importer)
        } else if a.contains_key(clone::CLONE_REQUEST) {
            Some(WorkerKind::CloneTarget)
        } else if a.contains_key(clone::UPLOAD_TARGET) {
            Some(WorkerKind::UploadServer)
        } else {
            None
        }
    }

    /// The worker pod's name for claim `claim`.
    pub fn pod_name(self, claim: &str) -> String {
        match self {
            WorkerKind::Importer => naming::importer_pod(claim),
            WorkerKind::UploadServer | WorkerKind::CloneTarget => naming::upload_pod(claim),
        }
    }

    /// The name of the worker's own container in its pod (a node-pull importer pod also runs
    /// the image's).
    pub fn container_name(self) -> &'static str {
        match self {
            WorkerKind::Importer => "importer",
            WorkerKind::UploadServer | WorkerKind::CloneTarget => "cdi-upload-server",
        }
    }

    /// Whether the pod's readiness is copied onto the claim (an upload server is ready when it
    /// takes uploads).
    pub fn reports_readiness(self) -> bool {
        matches!(self, WorkerKind::UploadServer | WorkerKind::CloneTarget)
    }

    /// The Running condition's message once the worker finished.
    pub fn complete_message(self) -> &'static str {
        match self {
            WorkerKind::Importer => "Import Complete",
            WorkerKind::UploadServer => "Upload Complete",
            WorkerKind::CloneTarget => "Clone Complete",
        }
    }

    /// The objects kept beside the pod of claim `claim`.
    pub fn companions(self, claim: &str) -> Companions {
        match self {
            WorkerKind::Importer => Companions::default(),
            WorkerKind::UploadServer | WorkerKind::CloneTarget => Companions {
                // The Secret is named after the pod, as upstream's.
                secret: Some(naming::upload_pod(claim)),
                service: Some(naming::upload_service(claim)),
            },
        }
    }

    /// The claim annotations written when the pod is created: the phase, the pod's name under
    /// upstream's key for this kind, and (for an upload server) not ready yet.
    pub fn created_annotations(self, pod_name: &str) -> BTreeMap<String, String> {
        let mut a = BTreeMap::from([(pod_ann::PHASE.to_owned(), "Pending".to_owned())]);
        match self {
            WorkerKind::Importer => {
                a.insert(import::IMPORT_POD_NAME.into(), pod_name.into());
            }
            WorkerKind::UploadServer | WorkerKind::CloneTarget => {
                a.insert(pod_ann::UPLOAD_POD_NAME.into(), pod_name.into());
                a.insert(pod_ann::READY.into(), "false".into());
            }
        }
        a
    }

    /// The `controller` label of the pods-created metric.
    pub fn metrics_label(self) -> &'static str {
        match self {
            WorkerKind::Importer => "importer",
            WorkerKind::UploadServer => "upload",
            WorkerKind::CloneTarget => "clone",
        }
    }

    /// The claim's event when a pod of that name exists and is not the claim's.
    pub fn target_in_use(self, pod_name: &str, claim: &str) -> EventSpec {
        let reason = match self {
            WorkerKind::Importer => "ImportTargetInUse",
            WorkerKind::UploadServer => "UploadTargetInUse",
            WorkerKind::CloneTarget => "CloneTargetInUse",
        };
        EventSpec::warning(
            reason,
            format!("pod {pod_name} exists and does not belong to claim {claim}"),
        )
    }

    /// The claim's event when the worker finished.
    pub fn claim_succeeded(self) -> EventSpec {
        match self {
            WorkerKind::Importer => EventSpec::normal("ImportSucceeded", "Import Successful"),
            WorkerKind::UploadServer => EventSpec::normal("UploadSucceeded", "Upload Successful"),
            WorkerKind::CloneTarget => EventSpec::normal("CloneSucceeded", "Clone Successful"),
        }
    }

    /// The claim's event when the worker failed for good.
    pub fn claim_failed(self, message: &str) -> EventSpec {
        let reason = match self {
            WorkerKind::Importer => "ErrImportFailed",
            WorkerKind::UploadServer => "ErrUploadFailed",
            WorkerKind::CloneTarget => "CloneFailed",
        };
        EventSpec::warning(reason, message)
    }

    /// The DataVolume's phase while the pod is created but not yet at work.
    pub fn scheduled_phase(self) -> DataVolumePhase {
        match self {
            WorkerKind::Importer => DataVolumePhase::ImportScheduled,
            WorkerKind::UploadServer => DataVolumePhase::UploadScheduled,
            WorkerKind::CloneTarget => DataVolumePhase::CloneScheduled,
        }
    }

    /// The DataVolume's phase while the pod runs; `ready` is the pod's readiness annotation
    /// (an upload server takes uploads only once ready).
    pub fn running_phase(self, ready: bool) -> DataVolumePhase {
        match self {
            WorkerKind::Importer => DataVolumePhase::ImportInProgress,
            WorkerKind::UploadServer if ready => DataVolumePhase::UploadReady,
            WorkerKind::UploadServer => DataVolumePhase::UploadScheduled,
            // The cloner starts once the upload server is ready.
            WorkerKind::CloneTarget if ready => DataVolumePhase::CloneInProgress,
            WorkerKind::CloneTarget => DataVolumePhase::CloneScheduled,
        }
    }

    /// The DataVolume's event on success, into claim `name`.
    pub fn dv_succeeded(self, name: &str) -> EventSpec {
        match self {
            WorkerKind::Importer => EventSpec::normal(
                "ImportSucceeded",
                format!("Successfully imported into PVC {name}"),
            ),
            WorkerKind::UploadServer => EventSpec::normal(
                "UploadSucceeded",
                format!("Successfully uploaded into {name}"),
            ),
            WorkerKind::CloneTarget => {
                EventSpec::normal("CloneSucceeded", format!("Successfully cloned into {name}"))
            }
        }
    }

    /// The DataVolume's event on failure.
    pub fn dv_failed(self, message: String) -> EventSpec {
        match self {
            WorkerKind::Importer => EventSpec::warning("ImportFailed", message),
            WorkerKind::UploadServer => EventSpec::warning("UploadFailed", message),
            WorkerKind::CloneTarget => EventSpec::warning("CloneFailed", message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(annotations: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "disk", "annotations": annotations}}))
            .expect("claim")
    }

    #[test]
    fn the_claim_annotations_pick_the_kind() {
        let kind = |a| WorkerKind::of_claim(&claim(a));
        assert_eq!(
            kind(json!({"cdi.kubevirt.io/storage.import.endpoint": "http://x/y"})),
            Some(WorkerKind::Importer)
        );
        assert_eq!(
            kind(json!({"cdi.kubevirt.io/storage.import.source": "none"})),
            Some(WorkerKind::Importer)
        );
        assert_eq!(
            kind(json!({"cdi.kubevirt.io/storage.upload.target": ""})),
            Some(WorkerKind::UploadServer)
        );
        assert_eq!(kind(json!({"other": "x"})), None);
        assert_eq!(
            WorkerKind::of_claim(&PersistentVolumeClaim::default()),
            None
        );
    }

    #[test]
    fn names_and_companions_are_upstreams() {
        assert_eq!(WorkerKind::Importer.pod_name("disk"), "importer-disk");
        assert_eq!(WorkerKind::UploadServer.pod_name("disk"), "cdi-upload-disk");
        assert_eq!(
            WorkerKind::Importer.companions("disk"),
            Companions::default()
        );
        assert_eq!(
            WorkerKind::UploadServer.companions("disk"),
            Companions {
                secret: Some("cdi-upload-disk".into()),
                service: Some("cdi-upload-disk".into()),
            }
        );
        let created = WorkerKind::UploadServer.created_annotations("cdi-upload-disk");
        assert_eq!(created[pod_ann::UPLOAD_POD_NAME], "cdi-upload-disk");
        assert_eq!(created[pod_ann::READY], "false");
        let created = WorkerKind::Importer.created_annotations("importer-disk");
        assert_eq!(created[import::IMPORT_POD_NAME], "importer-disk");
        assert!(!created.contains_key(pod_ann::READY));
    }

    #[test]
    fn phases_follow_the_kind() {
        use DataVolumePhase as P;
        let table = [
            (
                WorkerKind::Importer,
                false,
                P::ImportScheduled,
                P::ImportInProgress,
            ),
            (
                WorkerKind::Importer,
                true,
                P::ImportScheduled,
                P::ImportInProgress,
            ),
            (
                WorkerKind::UploadServer,
                false,
                P::UploadScheduled,
                P::UploadScheduled,
            ),
            (
                WorkerKind::UploadServer,
                true,
                P::UploadScheduled,
                P::UploadReady,
            ),
        ];
        for (kind, ready, scheduled, running) in table {
            assert_eq!(kind.scheduled_phase(), scheduled, "{kind:?}");
            assert_eq!(kind.running_phase(ready), running, "{kind:?} ready={ready}");
        }
        assert_eq!(
            WorkerKind::UploadServer.dv_failed("x".into()).reason,
            "UploadFailed"
        );
        assert_eq!(
            WorkerKind::Importer.dv_succeeded("d").reason,
            "ImportSucceeded"
        );
    }
}
