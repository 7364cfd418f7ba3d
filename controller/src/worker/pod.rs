//! What every worker pod shares (importer, upload server, and the cloner next): the data
//! volume and where it is seen, the restricted security context, ownership by the claim, the
//! claim facts workers are told (size, mode, owner UID), and the pod skeleton around the
//! kind-specific container ([`WorkerPod`], [`worker_pod`]).

use std::collections::BTreeMap;

use cdi_crds::annotations::{pod as pod_ann, switches};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, PersistentVolumeClaim,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, SeccompProfile,
    SecretKeySelector, SecurityContext, Volume, VolumeDevice, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use super::WORKER_UID;
use crate::cdiconfig::EffectiveConfig;
use crate::settings::Settings;

/// Where the importer finds a Filesystem target.
pub const DATA_DIR: &str = "/data";

/// Where the importer finds a Block target.
pub const BLOCK_DEVICE: &str = "/dev/cdi-block-volume";

/// The data volume's name in the pod.
pub const DATA_VOLUME: &str = "cdi-data-vol";

/// The port the worker serves metrics on.
pub const METRICS_PORT: i32 = 8443;

/// The UID progress metrics are labelled with: the DataVolume's, else the claim's.
pub fn owner_uid(claim: &PersistentVolumeClaim) -> String {
    let annotations = claim.metadata.annotations.as_ref();
    annotations
        .and_then(|a| a.get(switches::CREATED_FOR_DATA_VOLUME))
        .cloned()
        .or_else(|| {
            claim
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "DataVolume" && o.controller == Some(true))
                .map(|o| o.uid.clone())
        })
        .or_else(|| claim.metadata.uid.clone())
        .unwrap_or_default()
}

/// Whether the claim is a raw block volume.
pub fn is_block(claim: &PersistentVolumeClaim) -> bool {
    claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block")
}

/// The claim's requested size, as written (`1138166334`, `1Gi`).
pub fn requested_size(claim: &PersistentVolumeClaim) -> String {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_default()
}

/// A controller owner reference to `claim`, as worker pods, Services and Secrets carry.
pub fn claim_owner(claim: &PersistentVolumeClaim) -> Option<Vec<OwnerReference>> {
    claim.controller_owner_ref(&()).map(|mut o| {
        o.block_owner_deletion = Some(true);
        vec![o]
    })
}

/// A plain `name=value` variable.
pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// `CDI_LOG_FORMAT` for a worker container, when the controller was given one.
pub fn log_format_env(settings: &Settings) -> Option<EnvVar> {
    settings
        .log_format
        .as_deref()
        .map(|f| env(cdi_logging::FORMAT_VAR, f))
}

/// A variable read from `key` of Secret `secret`.
pub fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: None,
            }),
            ..Default::default()
        }),
    }
}

/// The restricted security context of every worker container.
pub fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        run_as_non_root: Some(true),
        run_as_user: Some(WORKER_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// The data volume and how the container sees it (a mount at `/data` or a device).
pub fn data_volume(
    claim_name: &str,
    block: bool,
) -> (Volume, Option<VolumeMount>, Option<VolumeDevice>) {
    let volume = Volume {
        name: DATA_VOLUME.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim_name.into(),
            read_only: Some(false),
        }),
        ..Default::default()
    };
    if block {
        (
            volume,
            None,
            Some(VolumeDevice {
                name: DATA_VOLUME.into(),
                device_path: BLOCK_DEVICE.into(),
            }),
        )
    } else {
        (
            volume,
            Some(VolumeMount {
                name: DATA_VOLUME.into(),
                mount_path: DATA_DIR.into(),
                ..Default::default()
            }),
            None,
        )
    }
}

#[derive(Debug)]
pub struct WorkerPod {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub container: Container,
    pub volumes: Vec<Volume>,
    /// Run before `container` (a node pull's copy of the image server).
    pub init_containers: Vec<Container>,
    /// Run beside `container` (a node pull's image).
    pub sidecars: Vec<Container>,
    pub node_selector: BTreeMap<String, String>,
}

/// A worker pod for `claim`: owned by it, restarted on failure, no service links, the claim's
/// priority class and service account, CDIConfig's pull secrets, and group 107 on its volumes.
pub fn worker_pod(pod: WorkerPod, claim: &PersistentVolumeClaim, config: &EffectiveConfig) -> Pod {
    let a = claim.metadata.annotations.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(pod.name),
            namespace: claim.metadata.namespace.clone(),
            labels: Some(pod.labels),
            annotations: Some(pod.annotations),
            owner_references: claim_owner(claim),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: std::iter::once(pod.container).chain(pod.sidecars).collect(),
            init_containers: Some(pod.init_containers).filter(|c| !c.is_empty()),
            node_selector: Some(pod.node_selector).filter(|s| !s.is_empty()),
            restart_policy: Some("OnFailure".into()),
            enable_service_links: Some(false),
            priority_class_name: a.get(pod_ann::PRIORITY_CLASS_NAME).cloned(),
            service_account_name: a.get(pod_ann::SERVICE_ACCOUNT_NAME).cloned(),
            image_pull_secrets: Some(config.image_pull_secrets.clone()).filter(|s| !s.is_empty()),
            security_context: Some(PodSecurityContext {
                fs_group: Some(WORKER_UID),
                ..Default::default()
            }),
            volumes: Some(pod.volumes),
            ..Default::default()
        }),
        status: None,
    }
}
