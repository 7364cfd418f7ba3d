//! Volume populator sources: objects a PVC names in `spec.dataSourceRef`
//! (`apiGroup: cdi.kubevirt.io`) to have CDI fill it. DataVolumes on CSI storage use them
//! internally; users can also create them directly with a plain PVC.
//!
//! Upstream gives these kinds an empty status and no status subresource.

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ContentType, DataVolumeCheckpoint};
use crate::source::ImportSourceType;

/// Import into the claim that names this object.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "cdi.kubevirt.io",
    version = "v1beta1",
    kind = "VolumeImportSource",
    plural = "volumeimportsources",
    namespaced,
    status = "VolumeImportSourceStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Populates the PersistentVolumeClaims that name it in dataSourceRef by importing from \
           http, s3, gcs, a registry, imageio or vddk, or by creating a blank disk."
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeImportSourceSpec {
    /// Where the data comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ImportSourceType>,
    /// Allocate the whole volume up front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preallocation: Option<bool>,
    /// `kubevirt` (a disk image; the default) or `archive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<ContentType>,
    /// For multi-stage imports: the one claim this source populates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_claim: Option<String>,
    /// Stages of a multi-stage (warm) import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<Vec<DataVolumeCheckpoint>>,
    /// True when the last entry of `checkpoints` is the final stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_checkpoint: Option<bool>,
}

/// Always empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeImportSourceStatus {}

/// Fill the claim that names this object from an upload.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "cdi.kubevirt.io",
    version = "v1beta1",
    kind = "VolumeUploadSource",
    plural = "volumeuploadsources",
    namespaced,
    status = "VolumeUploadSourceStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Populates the PersistentVolumeClaims that name it in dataSourceRef from an upload \
           through the upload proxy."
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeUploadSourceSpec {
    /// `kubevirt` (a disk image; the default) or `archive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<ContentType>,
    /// Allocate the whole volume up front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preallocation: Option<bool>,
}

/// Always empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeUploadSourceStatus {}

/// Fill the claim that names this object with a copy of a PVC or VolumeSnapshot.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cdi.kubevirt.io",
    version = "v1beta1",
    kind = "VolumeCloneSource",
    plural = "volumeclonesources",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    doc = "Populates the PersistentVolumeClaims that name it in dataSourceRef with a copy of a \
           PVC or VolumeSnapshot in the same namespace, of any StorageClass or volume mode."
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeCloneSourceSpec {
    /// The PVC (`kind: PersistentVolumeClaim`) or snapshot (`apiGroup:
    /// snapshot.storage.k8s.io`, `kind: VolumeSnapshot`) to copy.
    pub source: TypedLocalObjectReference,
    /// Allocate the whole volume up front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preallocation: Option<bool>,
    /// PriorityClass for the clone pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}
