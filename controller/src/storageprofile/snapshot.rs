//! Which VolumeSnapshotClass a StorageProfile names: for smart clones (`status.snapshotClass`)
//! and for DataImportCron snapshots (an annotation), chosen as upstream chooses.

use std::collections::BTreeMap;

use cdi_crds::annotations::storage_class as ann;
use cdi_crds::storageprofile::StorageProfileSpec;
use k8s_openapi::api::storage::v1::StorageClass;

use super::capabilities;

/// A VolumeSnapshotClass, as far as StorageProfiles care.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotClass {
    pub name: String,
    /// The CSI driver that takes its snapshots.
    pub driver: String,
    /// Annotated as its driver's default snapshot class.
    pub is_default: bool,
    pub parameters: BTreeMap<String, String>,
}

impl SnapshotClass {
    /// Reads a VolumeSnapshotClass object (`driver` and `parameters` are top-level fields).
    pub fn from_object(object: &kube::api::DynamicObject) -> Option<SnapshotClass> {
        let name = object.metadata.name.clone()?;
        let driver = object.data.get("driver")?.as_str()?.to_owned();
        let is_default = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ann::IS_DEFAULT_SNAPSHOT_CLASS))
            .is_some_and(|v| v == "true");
        let parameters = object
            .data
            .get("parameters")
            .and_then(|p| p.as_object())
            .map(|p| {
                p.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Some(SnapshotClass {
            name,
            driver,
            is_default,
            parameters,
        })
    }
}

/// The default-annotated class among `candidates`, else the first by name.
fn preferred<'a>(candidates: impl Iterator<Item = &'a SnapshotClass>) -> Option<String> {
    let mut candidates: Vec<&SnapshotClass> = candidates.collect();
    candidates.sort_by(|a, b| a.name.cmp(&b.name));
    candidates
        .iter()
        .find(|c| c.is_default)
        .or(candidates.first())
        .map(|c| c.name.clone())
}

/// The snapshot class for smart clones of `sc`: the spec's if it exists and serves the class's
/// driver, else (with none named) the driver's default class, else its first by name.
pub fn select_snapshot_class(
    sc: &StorageClass,
    spec: &StorageProfileSpec,
    classes: &[SnapshotClass],
) -> Option<String> {
    let for_driver = classes.iter().filter(|c| c.driver == sc.provisioner);
    match &spec.snapshot_class {
        Some(wanted) => for_driver
            .into_iter()
            .find(|c| &c.name == wanted)
            .map(|c| c.name.clone()),
        None => preferred(for_driver),
    }
}

/// The snapshot class for DataImportCron snapshots of `sc`, for storage where the table says
/// which classes suit them (GKE: `snapshot-type: images`).
pub fn data_import_cron_snapshot_class(
    sc: &StorageClass,
    classes: &[SnapshotClass],
) -> Option<String> {
    let (key, value) = capabilities::lookup(sc)
        .entry()?
        .data_import_cron_snapshot_parameter?;
    preferred(classes.iter().filter(|c| {
        c.driver == sc.provisioner && c.parameters.get(key).is_some_and(|v| v == value)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storageprofile::fixtures::{class, snapshot_class};

    const RBD: &str = "rook-ceph.rbd.csi.ceph.com";

    mod snapshot_classes {
        use super::*;

        #[test]
        fn default_class_of_the_driver_is_preferred_else_first_by_name() {
            let sc = class("ceph", RBD, &[]);
            let classes = [
                snapshot_class("b", RBD, false),
                snapshot_class("a", RBD, false),
                snapshot_class("other", "example.com/x", true),
            ];
            assert_eq!(
                select_snapshot_class(&sc, &Default::default(), &classes).as_deref(),
                Some("a")
            );
            let mut with_default = classes.to_vec();
            with_default.push(snapshot_class("z", RBD, true));
            assert_eq!(
                select_snapshot_class(&sc, &Default::default(), &with_default).as_deref(),
                Some("z")
            );
        }

        #[test]
        fn spec_class_is_used_only_if_it_serves_the_driver() {
            let sc = class("ceph", RBD, &[]);
            let classes = [
                snapshot_class("mine", RBD, false),
                snapshot_class("foreign", "example.com/x", false),
            ];
            let named = |n: &str| StorageProfileSpec {
                snapshot_class: Some(n.into()),
                ..Default::default()
            };
            assert_eq!(
                select_snapshot_class(&sc, &named("mine"), &classes).as_deref(),
                Some("mine")
            );
            assert_eq!(
                select_snapshot_class(&sc, &named("foreign"), &classes),
                None
            );
            assert_eq!(
                select_snapshot_class(&sc, &named("missing"), &classes),
                None
            );
        }

        #[test]
        fn snapshot_class_is_read_from_the_object() {
            let object: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "snapshot.storage.k8s.io/v1",
                "kind": "VolumeSnapshotClass",
                "metadata": {
                    "name": "csi-rbd",
                    "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}
                },
                "driver": RBD,
                "deletionPolicy": "Delete",
                "parameters": {"clusterID": "c1"}
            }))
            .expect("an object");
            assert_eq!(
                SnapshotClass::from_object(&object),
                Some(SnapshotClass {
                    name: "csi-rbd".into(),
                    driver: RBD.into(),
                    is_default: true,
                    parameters: BTreeMap::from([("clusterID".into(), "c1".into())]),
                })
            );
        }
    }
}
