//! CDI's Kubernetes API types (`cdi.kubevirt.io/v1beta1`, plus `upload.cdi.kubevirt.io/v1beta1`
//! UploadTokenRequest) and the generator for their CRD YAML.
//!
//! The types are wire-compatible with upstream CDI's manifests: camelCase fields, Go-style structs
//! of `Option`s (so `upload: {}` and `accessModes: []` are written back as given), core types from
//! k8s-openapi where upstream uses core types, and string enums that keep values they do not know
//! (see [`DataVolumePhase`]). Upstream's webhook checks on DataVolumes are CEL rules in the CRDs
//! (see [`cel`]), so the API server refuses a bad DataVolume at admission.
//!
//! ```text
//!  types (datavolume, source, storage, ...) ──#[derive(CustomResource)]──► crd()
//!        │                                                                  │
//!        └── serde: the objects the controller and workers read        generate::crds()
//!                                                                           │
//!                               crdgen (src/bin) ──────────────► deploy/crds/*.yaml
//! ```
//!
//! Unknown fields are ignored when reading, as the API server prunes them with these structural
//! schemas anyway.
#![forbid(unsafe_code)]

pub mod annotations;
pub mod cdi;
pub mod cel;
pub mod common;
pub mod config;
pub mod dataimportcron;
pub mod datasource;
pub mod datavolume;
pub mod generate;
pub mod naming;
pub mod populators;
/// Quantities and CDI's size arithmetic (re-exported so API users find them beside the types).
pub use cdi_quantity as quantity;
pub mod source;
pub mod storage;
pub mod storageprofile;
mod string_enum;
pub mod upload;
pub mod validate;

/// The API group of every CRD here.
pub const GROUP: &str = "cdi.kubevirt.io";
/// The served and stored version of every CRD here.
pub const VERSION: &str = "v1beta1";

pub use cdi::{Cdi, CdiSpec, CdiStatus};
pub use common::{
    CloneStrategy, Condition, ConditionStatus, ContentType, DataImportCronSourceFormat,
    DataVolumeCheckpoint, VolumeMode,
};
pub use config::{CdiConfig, CdiConfigSpec, CdiConfigStatus, FilesystemOverhead, Percent};
pub use dataimportcron::{DataImportCron, DataImportCronSpec, DataImportCronStatus};
pub use datasource::{DataSource, DataSourceSource, DataSourceSpec, DataSourceStatus};
pub use datavolume::{
    DataVolume, DataVolumeCondition, DataVolumeConditionType, DataVolumePhase, DataVolumeSourceRef,
    DataVolumeSpec, DataVolumeStatus, DataVolumeTemplate,
};
pub use populators::{
    VolumeCloneSource, VolumeCloneSourceSpec, VolumeImportSource, VolumeImportSourceSpec,
    VolumeUploadSource, VolumeUploadSourceSpec,
};
pub use source::{
    DataVolumeBlankImage, DataVolumeSource, DataVolumeSourceGcs, DataVolumeSourceHttp,
    DataVolumeSourceImageIo, DataVolumeSourcePvc, DataVolumeSourceRegistry, DataVolumeSourceS3,
    DataVolumeSourceSnapshot, DataVolumeSourceUpload, DataVolumeSourceVddk, ImportSourceType,
};
pub use storage::StorageSpec;
pub use storageprofile::{
    ClaimPropertySet, StorageProfile, StorageProfileSpec, StorageProfileStatus,
};
pub use upload::{UploadTokenRequest, UploadTokenRequestSpec, UploadTokenRequestStatus};
