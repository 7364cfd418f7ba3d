//! Objects for unit tests, built field by field so each test shows what it depends on.

use std::collections::BTreeMap;
use std::sync::Arc;

use cdi_crds::storageprofile::{ClaimPropertySet, StorageProfile, StorageProfileStatus};
use cdi_crds::{DataVolume, DataVolumeSpec, StorageSpec, VolumeMode};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodStatus, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::datavolume::plan::StorageView;

pub const NAMESPACE: &str = "ns";
pub const DV_UID: &str = "11111111-2222-3333-4444-555555555555";

/// A DataVolume `name` in [`NAMESPACE`] with UID [`DV_UID`] and the given source (JSON).
pub fn dv(name: &str, source: serde_json::Value) -> DataVolume {
    let mut dv = DataVolume::new(
        name,
        DataVolumeSpec {
            source: Some(serde_json::from_value(source).expect("a valid source")),
            storage: Some(StorageSpec {
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    dv.metadata.namespace = Some(NAMESPACE.into());
    dv.metadata.uid = Some(DV_UID.into());
    dv
}

/// A StorageClass with `provisioner` and binding mode; `default` marks it the cluster default.
pub fn storage_class(name: &str, binding: &str, default: bool) -> StorageClass {
    let mut annotations = BTreeMap::new();
    if default {
        annotations.insert(
            "storageclass.kubernetes.io/is-default-class".to_string(),
            "true".to_string(),
        );
    }
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(annotations),
            ..Default::default()
        },
        provisioner: "kubernetes.io/no-provisioner".into(),
        volume_binding_mode: Some(binding.into()),
        ..Default::default()
    }
}

/// A StorageProfile for `class` whose status offers RWO with `mode`.
pub fn profile(class: &str, mode: VolumeMode) -> StorageProfile {
    let mut p = StorageProfile::new(class, Default::default());
    p.status = Some(StorageProfileStatus {
        storage_class: Some(class.into()),
        claim_property_sets: Some(vec![ClaimPropertySet {
            access_modes: vec!["ReadWriteOnce".into()],
            volume_mode: mode,
        }]),
        ..Default::default()
    });
    p
}

/// Storage with one default Immediate class `local` (Filesystem) and a WFFC class `wffc`.
pub fn storage() -> StorageView {
    StorageView {
        classes: vec![
            Arc::new(storage_class("local", "Immediate", true)),
            Arc::new(storage_class("wffc", "WaitForFirstConsumer", false)),
        ],
        profiles: vec![
            Arc::new(profile("local", VolumeMode::Filesystem)),
            Arc::new(profile("wffc", VolumeMode::Filesystem)),
        ],
    }
}

fn pod_with(
    state: ContainerState,
    last: Option<ContainerState>,
    restarts: i32,
    phase: &str,
) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("importer-disk".into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "importer".into(),
                restart_count: restarts,
                state: Some(state),
                last_state: last,
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// A pod whose container runs.
pub fn pod_running(restarts: i32) -> Pod {
    pod_with(
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        },
        None,
        restarts,
        "Running",
    )
}

fn terminated(exit_code: i32, message: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code,
        message: Some(message.into()),
        reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
        ..Default::default()
    }
}

/// A pod whose container exited with `exit_code` and termination `message`.
pub fn pod_terminated(exit_code: i32, message: &str, restarts: i32) -> Pod {
    pod_with(
        ContainerState {
            terminated: Some(terminated(exit_code, message)),
            ..Default::default()
        },
        None,
        restarts,
        if exit_code == 0 {
            "Succeeded"
        } else {
            "Running"
        },
    )
}

/// A pod whose container waits with `reason`, after an earlier run that ended as `last`.
pub fn pod_waiting(reason: &str, last: Option<(i32, &str)>, restarts: i32) -> Pod {
    pod_with(
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: None,
            }),
            ..Default::default()
        },
        last.map(|(code, message)| ContainerState {
            terminated: Some(terminated(code, message)),
            ..Default::default()
        }),
        restarts,
        if last.is_some() { "Running" } else { "Pending" },
    )
}
