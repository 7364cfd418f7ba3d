//! The pure half of `image-upload`: the DataVolume it creates, and what each observed phase
//! means for the two waits (until the upload can start, and until the image is processed).

use std::collections::BTreeMap;

use cdi_crds::annotations::switches::IMMEDIATE_BINDING;
use cdi_crds::{
    ContentType, DataVolume, DataVolumePhase, DataVolumeSource, DataVolumeSourceUpload,
    DataVolumeSpec, DataVolumeStatus, StorageSpec, VolumeMode,
};
use k8s_openapi::api::core::v1::VolumeResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The DataVolume to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DvOptions {
    pub name: String,
    /// A quantity (`10Gi`); `None` only with `--no-create`.
    pub size: Option<String>,
    pub storage_class: Option<String>,
    pub access_mode: Option<String>,
    pub volume_mode: Option<VolumeMode>,
    /// A tar archive unpacked onto the volume, not a disk image.
    pub archive: bool,
    /// Bind at once, ignoring WaitForFirstConsumer.
    pub force_bind: bool,
}

/// A DataVolume waiting for an upload: `source.upload: {}` and a `storage` spec CDI completes.
pub fn render_dv(o: &DvOptions, namespace: &str) -> DataVolume {
    let annotations = o
        .force_bind
        .then(|| BTreeMap::from([(IMMEDIATE_BINDING.to_string(), "true".to_string())]));
    let storage = StorageSpec {
        access_modes: o.access_mode.clone().map(|m| vec![m]),
        resources: o.size.clone().map(|s| VolumeResourceRequirements {
            requests: Some(BTreeMap::from([("storage".to_string(), Quantity(s))])),
            ..VolumeResourceRequirements::default()
        }),
        storage_class_name: o.storage_class.clone(),
        volume_mode: o.volume_mode.clone(),
        ..StorageSpec::default()
    };
    let spec = DataVolumeSpec {
        source: Some(DataVolumeSource {
            upload: Some(DataVolumeSourceUpload {}),
            ..DataVolumeSource::default()
        }),
        storage: Some(storage),
        content_type: o.archive.then_some(ContentType::Archive),
        ..DataVolumeSpec::default()
    };
    let mut dv = DataVolume::new(&o.name, spec);
    dv.metadata = ObjectMeta {
        name: Some(o.name.clone()),
        namespace: Some(namespace.to_string()),
        annotations,
        ..ObjectMeta::default()
    };
    dv
}

/// What the phase means while waiting for the upload to be possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The upload server is ready.
    Ready,
    /// Keep polling.
    Wait,
    /// Waiting cannot help; the message says why and what to do.
    Fail(String),
}

/// Reads a DataVolume's status while waiting for `UploadReady`.
pub fn readiness(status: Option<&DataVolumeStatus>, force_bind: bool) -> Readiness {
    let phase = phase_of(status);
    match phase {
        DataVolumePhase::UploadReady => Readiness::Ready,
        DataVolumePhase::WaitForFirstConsumer | DataVolumePhase::PendingPopulation
            if !force_bind =>
        {
            Readiness::Fail(format!(
                "the DataVolume is {phase}: its StorageClass binds a volume only for a pod that uses it, so the upload would never start; pass --force-bind to bind it now"
            ))
        }
        DataVolumePhase::Succeeded => Readiness::Fail(
            "the DataVolume already succeeded: it holds its data and takes no upload".into(),
        ),
        DataVolumePhase::Failed => {
            Readiness::Fail(format!("the DataVolume failed{}", reason_of(status)))
        }
        _ => Readiness::Wait,
    }
}

/// What the phase means after the upload, while the server processes the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processing {
    Done,
    Wait,
    Failed(String),
}

pub fn processing(status: Option<&DataVolumeStatus>) -> Processing {
    match phase_of(status) {
        DataVolumePhase::Succeeded => Processing::Done,
        DataVolumePhase::Failed => {
            Processing::Failed(format!("the DataVolume failed{}", reason_of(status)))
        }
        _ => Processing::Wait,
    }
}

pub fn phase_of(status: Option<&DataVolumeStatus>) -> DataVolumePhase {
    status
        .and_then(|s| s.phase.clone())
        .unwrap_or(DataVolumePhase::Unset)
}

/// `: <reason>: <message>` of the first condition that has a message, for error text.
fn reason_of(status: Option<&DataVolumeStatus>) -> String {
    status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find_map(|c| {
            let message = c.message.as_deref().filter(|m| !m.is_empty())?;
            Some(match c.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(reason) => format!(": {reason}: {message}"),
                None => format!(": {message}"),
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DvOptions {
        DvOptions {
            name: "disk".into(),
            size: Some("10Gi".into()),
            storage_class: None,
            access_mode: None,
            volume_mode: None,
            archive: false,
            force_bind: false,
        }
    }

    fn status(phase: DataVolumePhase) -> DataVolumeStatus {
        DataVolumeStatus {
            phase: Some(phase),
            ..DataVolumeStatus::default()
        }
    }

    #[test]
    fn a_plain_upload_dv_has_an_upload_source_and_only_its_size() {
        let dv = serde_json::to_value(render_dv(&options(), "vms")).expect("json");
        assert_eq!(
            dv,
            serde_json::json!({
                "apiVersion": "cdi.kubevirt.io/v1beta1",
                "kind": "DataVolume",
                "metadata": {"name": "disk", "namespace": "vms"},
                "spec": {
                    "source": {"upload": {}},
                    "storage": {"resources": {"requests": {"storage": "10Gi"}}},
                },
            })
        );
    }

    #[test]
    fn every_option_lands_in_the_dv() {
        let o = DvOptions {
            storage_class: Some("fast".into()),
            access_mode: Some("ReadWriteMany".into()),
            volume_mode: Some(VolumeMode::Filesystem),
            archive: true,
            force_bind: true,
            ..options()
        };
        let dv = serde_json::to_value(render_dv(&o, "vms")).expect("json");
        assert_eq!(
            dv["metadata"]["annotations"],
            serde_json::json!({"cdi.kubevirt.io/storage.bind.immediate.requested": "true"})
        );
        assert_eq!(dv["spec"]["contentType"], "archive");
        assert_eq!(
            dv["spec"]["storage"],
            serde_json::json!({
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "10Gi"}},
                "storageClassName": "fast",
                "volumeMode": "Filesystem",
            })
        );
    }

    #[test]
    fn upload_ready_is_ready_and_earlier_phases_wait() {
        assert_eq!(
            readiness(Some(&status(DataVolumePhase::UploadReady)), false),
            Readiness::Ready
        );
        for p in [
            DataVolumePhase::Unset,
            DataVolumePhase::Pending,
            DataVolumePhase::PvcBound,
            DataVolumePhase::UploadScheduled,
        ] {
            assert_eq!(
                readiness(Some(&status(p.clone())), false),
                Readiness::Wait,
                "{p}"
            );
        }
        assert_eq!(readiness(None, false), Readiness::Wait);
    }

    #[test]
    fn wait_for_first_consumer_fails_fast_unless_force_bind() {
        for p in [
            DataVolumePhase::WaitForFirstConsumer,
            DataVolumePhase::PendingPopulation,
        ] {
            let Readiness::Fail(why) = readiness(Some(&status(p.clone())), false) else {
                panic!("{p} must fail without --force-bind");
            };
            assert!(why.contains("--force-bind"), "{why}");
            assert_eq!(readiness(Some(&status(p)), true), Readiness::Wait);
        }
    }

    #[test]
    fn a_failed_dv_fails_both_waits_with_its_condition_message() {
        let mut failed = status(DataVolumePhase::Failed);
        failed.conditions = Some(vec![cdi_crds::DataVolumeCondition {
            type_: cdi_crds::DataVolumeConditionType::Ready,
            status: cdi_crds::ConditionStatus::False,
            reason: Some("UploadFailed".into()),
            message: Some("the image is corrupt".into()),
            last_transition_time: None,
            last_heartbeat_time: None,
        }]);
        assert_eq!(
            readiness(Some(&failed), false),
            Readiness::Fail("the DataVolume failed: UploadFailed: the image is corrupt".into())
        );
        assert_eq!(
            processing(Some(&failed)),
            Processing::Failed("the DataVolume failed: UploadFailed: the image is corrupt".into())
        );
        assert_eq!(
            processing(Some(&status(DataVolumePhase::Succeeded))),
            Processing::Done
        );
        assert_eq!(
            processing(Some(&status(DataVolumePhase::UploadReady))),
            Processing::Wait
        );
        assert!(matches!(
            readiness(Some(&status(DataVolumePhase::Succeeded)), false),
            Readiness::Fail(_)
        ));
    }
}
