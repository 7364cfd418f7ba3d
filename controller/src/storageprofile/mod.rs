//! StorageProfiles: one per StorageClass (same name), telling DataVolumes that use the `storage`
//! API which access and volume modes, clone strategy and DataImportCron source format suit the
//! class. Defaults come from a table of known provisioners ([`capabilities`]); an admin's spec
//! overrides them. The status ([`status`]), the snapshot class ([`snapshot`]) and the labels and
//! annotations ([`metadata`]) are pure functions of the class, the spec and the cluster's
//! VolumeSnapshotClasses; [`reconcile`] fetches those, applies the results and sets the
//! `kubevirt_cdi_storageprofile_info` metric.

pub mod capabilities;
pub mod metadata;
pub mod reconcile;
pub mod snapshot;
pub mod status;

pub use capabilities::{Lookup, Provisioner, lookup};
pub use metadata::{annotation_changes, profile_labels};
pub use reconcile::run;
pub use snapshot::{SnapshotClass, data_import_cron_snapshot_class, select_snapshot_class};
pub use status::{info_labels, profile_status, spec_problem, stamp_conditions};

/// Objects for the module's unit tests.
#[cfg(test)]
mod fixtures {
    use k8s_openapi::api::storage::v1::StorageClass;
    use std::collections::BTreeMap;

    use super::snapshot::SnapshotClass;

    /// A StorageClass `name` of `provisioner` with `annotations`.
    pub fn class(name: &str, provisioner: &str, annotations: &[(&str, &str)]) -> StorageClass {
        let mut sc = StorageClass {
            provisioner: provisioner.into(),
            ..Default::default()
        };
        sc.metadata.name = Some(name.into());
        sc.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        sc
    }

    /// A VolumeSnapshotClass `name` of `driver`; `default` marks it the driver's default.
    pub fn snapshot_class(name: &str, driver: &str, default: bool) -> SnapshotClass {
        SnapshotClass {
            name: name.into(),
            driver: driver.into(),
            is_default: default,
            parameters: BTreeMap::new(),
        }
    }
}
