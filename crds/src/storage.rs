//! `StorageSpec`: the "smart" claim spec of a DataVolume's `storage` field.
//!
//! Unlike `pvc` (a core PersistentVolumeClaimSpec used as written), anything left out here is
//! filled in by CDI: access and volume modes from the StorageProfile, the storage class from the
//! default (virt) class, and the size grown by the filesystem overhead.

use k8s_openapi::api::core::v1::{
    TypedLocalObjectReference, TypedObjectReference, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::VolumeMode;

/// The claim a DataVolume wants, with CDI filling in what is left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Access modes (`ReadWriteOnce`, `ReadWriteMany`, ...); from the StorageProfile if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_modes: Option<Vec<String>>,
    /// A label query over PersistentVolumes to bind to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The size wanted (`requests.storage`). CDI adds the filesystem overhead for Filesystem
    /// volumes. May be left out only for clones, where the source's size is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<VolumeResourceRequirements>,
    /// Bind to this PersistentVolume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
    /// StorageClass to use; the default virt class, then the default class, if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// `Filesystem`, `Block`, or `FromStorageProfile`; from the StorageProfile if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<VolumeMode>,
    /// Passed to the claim's `dataSource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source: Option<TypedLocalObjectReference>,
    /// Passed to the claim's `dataSourceRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source_ref: Option<TypedObjectReference>,
}
