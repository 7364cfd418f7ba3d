//! The labels and annotations of a StorageProfile's metadata.

use std::collections::BTreeMap;

use cdi_crds::annotations::{labels, storage_class as ann};
use k8s_openapi::api::storage::v1::StorageClass;

use super::capabilities;
use super::snapshot::{SnapshotClass, data_import_cron_snapshot_class};

/// The labels every StorageProfile carries, as upstream's.
pub fn profile_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::APP.into(), labels::APP_VALUE.into()),
        (labels::COMPONENT.into(), String::new()),
        (
            "app.kubernetes.io/managed-by".into(),
            crate::FIELD_MANAGER.into(),
        ),
        ("app.kubernetes.io/component".into(), "storage".into()),
    ])
}

/// The annotation changes the profile of `sc` needs, given its `current` annotations: `Some`
/// to set, `None` to remove. The minimum size and the RWO hint are added when missing (an
/// admin's value is kept); the DataImportCron snapshot class follows the cluster.
pub fn annotation_changes(
    sc: &StorageClass,
    current: &BTreeMap<String, String>,
    classes: &[SnapshotClass],
) -> BTreeMap<String, Option<String>> {
    let mut changes = BTreeMap::new();
    let table = capabilities::lookup(sc).entry();
    let mut add_missing = |key: &str, value: Option<&str>| {
        if let Some(value) = value
            && !current.contains_key(key)
        {
            changes.insert(key.to_owned(), Some(value.to_owned()));
        }
    };
    add_missing(
        ann::MINIMUM_SUPPORTED_PVC_SIZE,
        table.and_then(|t| t.minimum_pvc_size),
    );
    add_missing(
        ann::USE_READ_WRITE_ONCE_FOR_DATA_IMPORT_CRON,
        table
            .filter(|t| t.read_write_once_for_data_import_cron)
            .map(|_| "true"),
    );
    let dic_class = data_import_cron_snapshot_class(sc, classes);
    if current.get(ann::SNAPSHOT_CLASS_FOR_DATA_IMPORT_CRON) != dic_class.as_ref() {
        changes.insert(
            ann::SNAPSHOT_CLASS_FOR_DATA_IMPORT_CRON.to_owned(),
            dic_class,
        );
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storageprofile::fixtures::{class, snapshot_class};

    const RBD: &str = "rook-ceph.rbd.csi.ceph.com";

    mod annotations {
        use super::*;

        #[test]
        fn table_minimum_size_is_added_unless_already_set() {
            let mut sc = class("io2", "ebs.csi.aws.com", &[]);
            sc.parameters = Some(BTreeMap::from([("type".to_string(), "io2".to_string())]));
            assert_eq!(
                annotation_changes(&sc, &BTreeMap::new(), &[]),
                BTreeMap::from([(
                    ann::MINIMUM_SUPPORTED_PVC_SIZE.to_string(),
                    Some("4Gi".to_string())
                )])
            );
            let admin = BTreeMap::from([(
                ann::MINIMUM_SUPPORTED_PVC_SIZE.to_string(),
                "8Gi".to_string(),
            )]);
            assert_eq!(annotation_changes(&sc, &admin, &[]), BTreeMap::new());
        }

        #[test]
        fn gke_gets_rwo_hint_and_its_image_snapshot_class() {
            let sc = class("gke", "pd.csi.storage.gke.io", &[]);
            let mut images = snapshot_class("images", "pd.csi.storage.gke.io", false);
            images
                .parameters
                .insert("snapshot-type".into(), "images".into());
            let classes = [
                snapshot_class("plain", "pd.csi.storage.gke.io", true),
                images,
            ];
            assert_eq!(
                annotation_changes(&sc, &BTreeMap::new(), &classes),
                BTreeMap::from([
                    (
                        ann::USE_READ_WRITE_ONCE_FOR_DATA_IMPORT_CRON.to_string(),
                        Some("true".to_string())
                    ),
                    (
                        ann::SNAPSHOT_CLASS_FOR_DATA_IMPORT_CRON.to_string(),
                        Some("images".to_string())
                    ),
                ])
            );
        }

        #[test]
        fn stale_data_import_cron_snapshot_class_is_removed() {
            let sc = class("ceph", RBD, &[]);
            let current = BTreeMap::from([(
                ann::SNAPSHOT_CLASS_FOR_DATA_IMPORT_CRON.to_string(),
                "gone".to_string(),
            )]);
            assert_eq!(
                annotation_changes(&sc, &current, &[]),
                BTreeMap::from([(ann::SNAPSHOT_CLASS_FOR_DATA_IMPORT_CRON.to_string(), None)])
            );
        }
    }
}
