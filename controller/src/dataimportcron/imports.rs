//! What a cron creates: the DataVolume of a digest (named from the digest, so every poll,
//! restart or replica that sees the same digest names the same object), its VolumeSnapshot
//! when the storage keeps imports as snapshots, the managed DataSource, and which old imports
//! garbage collection deletes. Pure.

use std::collections::BTreeMap;

use cdi_crds::annotations::{import, labels, switches};
use cdi_crds::{
    DataImportCron, DataImportCronSourceFormat, DataSource, DataVolume, DataVolumeSourcePvc,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::DynamicObject;

/// Label on what a cron with `retentionPolicy: None` created: deleted with the cron.
pub const CLEANUP_LABEL: &str = "cdi.kubevirt.io/dataImportCron.cleanup";
/// Hex digits of the digest in a DataVolume's name.
const DIGEST_CHARS_IN_NAME: usize = 12;
/// Imports kept when `importsToKeep` is unset.
pub const DEFAULT_IMPORTS_TO_KEEP: usize = 3;

/// A digest that cannot name an import.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "digest {0:?} cannot name an import: it must be sha256:<64 hex> (or uid:<uid> for a PVC \
     source)"
)]
pub struct BadDigest(pub String);

/// `<managedDataSource>-<first 12 characters of the digest>`, as upstream names imports.
pub fn data_volume_name(managed_data_source: &str, digest: &str) -> Result<String, BadDigest> {
    let rest = digest
        .strip_prefix("sha256:")
        .or_else(|| digest.strip_prefix("uid:"))
        .ok_or_else(|| BadDigest(digest.to_owned()))?;
    let part = rest
        .get(..DIGEST_CHARS_IN_NAME)
        .filter(|p| p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .ok_or_else(|| BadDigest(digest.to_owned()))?;
    Ok(cdi_crds::naming::cron_import(
        managed_data_source,
        &part.to_ascii_lowercase(),
    ))
}

/// Labels of everything a cron creates: its name, and the cleanup mark under
/// `retentionPolicy: None`.
pub fn owned_labels(cron: &DataImportCron) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([(labels::DATA_IMPORT_CRON.to_owned(), cron.name_any())]);
    if retains_nothing(cron) {
        l.insert(CLEANUP_LABEL.to_owned(), "true".to_owned());
    }
    l
}

/// `retentionPolicy: None`: the cron's DataVolumes and DataSource go with it.
pub fn retains_nothing(cron: &DataImportCron) -> bool {
    cron.spec
        .retention_policy
        .as_ref()
        .is_some_and(|p| p.as_str() == "None")
}

/// The DataVolume importing `digest` (named `name`): the template, its registry URL pinned to
/// the digest, immediate binding (no consumer will come), and the time it was last used.
pub fn render_data_volume(
    cron: &DataImportCron,
    name: &str,
    digest: &str,
    pinned_url: Option<String>,
    now: &str,
) -> DataVolume {
    let template = &cron.spec.template;
    let mut metadata = template.metadata.clone().unwrap_or_default();
    let mut spec = template.spec.clone();
    if let (Some(url), Some(registry)) = (
        pinned_url,
        spec.source.as_mut().and_then(|s| s.registry.as_mut()),
    ) {
        registry.url = Some(url);
    }
    metadata.name = Some(name.to_owned());
    metadata.namespace = cron.namespace();
    metadata.generate_name = None;
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(owned_labels(cron));
    let annotations = metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(switches::IMMEDIATE_BINDING.to_owned(), "true".to_owned());
    annotations.insert(import::LAST_USE_TIME.to_owned(), now.to_owned());
    annotations.insert(import::SOURCE_DESIRED_DIGEST.to_owned(), digest.to_owned());
    DataVolume {
        metadata: ObjectMeta {
            resource_version: None,
            uid: None,
            ..metadata
        },
        spec,
        status: None,
    }
}

/// The VolumeSnapshot of import `name` (its claim, of the same name), in `class` if given,
/// labelled as the cron's and noting the claim's volume mode for restores.
pub fn render_snapshot(
    cron: &DataImportCron,
    name: &str,
    class: Option<&str>,
    volume_mode: Option<&str>,
    now: &str,
) -> DynamicObject {
    let mut object = DynamicObject::new(name, &crate::clone::flow::snapshot_resource())
        .within(&cron.namespace().unwrap_or_default());
    object.metadata.labels = Some(owned_labels(cron));
    let mut annotations = BTreeMap::from([(import::LAST_USE_TIME.to_owned(), now.to_owned())]);
    if let Some(mode) = volume_mode {
        annotations.insert(import::SOURCE_VOLUME_MODE.to_owned(), mode.to_owned());
    }
    object.metadata.annotations = Some(annotations);
    let mut spec = serde_json::json!({"source": {"persistentVolumeClaimName": name}});
    if let Some(class) = class {
        spec["volumeSnapshotClassName"] = class.into();
    }
    object.data = serde_json::json!({ "spec": spec });
    object
}

/// The managed DataSource as the cron wants it: its labels, and pointing at `last_import`
/// (its claim, or its snapshot in the snapshot format) once there is one (until then its
/// source stays empty: not Ready, `NoSource`).
pub fn render_data_source(
    cron: &DataImportCron,
    last_import: Option<&DataVolumeSourcePvc>,
    format: &DataImportCronSourceFormat,
) -> serde_json::Value {
    let mut object = serde_json::json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataSource",
        "metadata": {
            "name": cron.spec.managed_data_source,
            "namespace": cron.namespace(),
            "labels": owned_labels(cron),
        },
        "spec": { "source": {} },
    });
    if let Some(pvc) = last_import {
        let kind = match format {
            DataImportCronSourceFormat::Snapshot => "snapshot",
            _ => "pvc",
        };
        object["spec"]["source"] =
            serde_json::json!({kind: {"namespace": pvc.namespace, "name": pvc.name}});
    }
    object
}

/// Whether DataSource `ds` is this cron's to manage: made by it (its label), or not yet made.
pub fn manages(cron: &DataImportCron, ds: Option<&DataSource>) -> bool {
    ds.is_none_or(|d| d.labels().get(labels::DATA_IMPORT_CRON) == Some(&cron.name_any()))
}

/// An import garbage collection may delete, and when it was last used (RFC 3339, so the
/// strings sort as the times do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    pub name: String,
    pub last_use: String,
}

/// What a cron keeps: `importsToKeep` (default 3) when `garbageCollect` is `Outdated` (the
/// default), everything with `Never`.
pub fn imports_to_keep(cron: &DataImportCron) -> Option<usize> {
    let never = cron
        .spec
        .garbage_collect
        .as_ref()
        .is_some_and(|g| g.as_str() != "Outdated");
    if never {
        return None;
    }
    Some(
        cron.spec
            .imports_to_keep
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_IMPORTS_TO_KEEP),
    )
}

/// The imports to delete: all but the `keep` most recently used, never one in `protected`
/// (the import the DataSource points at, the one in progress).
pub fn to_collect(mut imports: Vec<Import>, keep: usize, protected: &[&str]) -> Vec<String> {
    imports.sort_by(|a, b| b.last_use.cmp(&a.last_use).then(a.name.cmp(&b.name)));
    imports
        .into_iter()
        .skip(keep)
        .filter(|i| !protected.contains(&i.name.as_str()))
        .map(|i| i.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn cron(spec: serde_json::Value) -> DataImportCron {
        let mut base = json!({
            "template": {"spec": {
                "source": {"registry": {"url": "docker://127.0.0.1:5000/disks/fedora:42"}},
                "storage": {"resources": {"requests": {"storage": "1Gi"}}}}},
            "schedule": "*/5 * * * *",
            "managedDataSource": "fedora",
        });
        for (k, v) in spec.as_object().into_iter().flatten() {
            base[k] = v.clone();
        }
        serde_json::from_value(json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1",
            "kind": "DataImportCron",
            "metadata": {"name": "fedora-cron", "namespace": "golden", "uid": "u1"},
            "spec": base,
        }))
        .expect("a DataImportCron")
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn imports_are_named_from_the_data_source_and_the_digest() {
        assert_eq!(
            data_volume_name("fedora", DIGEST).as_deref(),
            Ok("fedora-0123456789ab")
        );
        assert_eq!(
            data_volume_name("rhel", "uid:4f1c2a3b-9d8e-4f00-a1b2-c3d4e5f60718").as_deref(),
            Ok("rhel-4f1c2a3b-9d8")
        );
        for bad in [
            "md5:0123456789abcdef",
            "sha256:0123",
            "sha256:0123456789a/",
            "",
        ] {
            assert_eq!(
                data_volume_name("fedora", bad),
                Err(BadDigest(bad.into())),
                "{bad}"
            );
        }
        // A long DataSource name is cut and hashed as every CDI name is.
        let long = "x".repeat(260);
        let name = data_volume_name(&long, DIGEST).expect("named");
        assert!(name.len() <= 253, "{}", name.len());
    }

    #[test]
    fn the_import_pins_the_digest_and_carries_the_cron_labels() {
        let c = cron(json!({"retentionPolicy": "None",
            "template": {"metadata": {"labels": {"os": "fedora"}},
                         "spec": {"source": {"registry": {
                             "url": "docker://127.0.0.1:5000/disks/fedora:42",
                             "secretRef": "login"}}}}}));
        let pinned = format!("docker://127.0.0.1:5000/disks/fedora@{DIGEST}");
        let dv = render_data_volume(
            &c,
            "fedora-0123456789ab",
            DIGEST,
            Some(pinned.clone()),
            "2026-12-07T15:00:00Z",
        );
        assert_eq!(dv.name_any(), "fedora-0123456789ab");
        assert_eq!(dv.namespace().as_deref(), Some("golden"));
        let registry = dv.spec.source.as_ref().and_then(|s| s.registry.as_ref());
        assert_eq!(
            registry.and_then(|r| r.url.as_deref()),
            Some(pinned.as_str())
        );
        assert_eq!(
            registry.and_then(|r| r.secret_ref.as_deref()),
            Some("login")
        );
        let l = dv.labels();
        assert_eq!(l.get("os").map(String::as_str), Some("fedora"));
        assert_eq!(
            l.get(labels::DATA_IMPORT_CRON).map(String::as_str),
            Some("fedora-cron")
        );
        assert_eq!(l.get(CLEANUP_LABEL).map(String::as_str), Some("true"));
        let a = dv.annotations();
        assert_eq!(
            a.get(switches::IMMEDIATE_BINDING).map(String::as_str),
            Some("true")
        );
        assert_eq!(
            a.get(import::LAST_USE_TIME).map(String::as_str),
            Some("2026-12-07T15:00:00Z")
        );
        // Retained by default: no cleanup mark.
        let kept = render_data_volume(&cron(json!({})), "n", DIGEST, None, "t");
        assert!(!kept.labels().contains_key(CLEANUP_LABEL));
    }

    #[test]
    fn the_data_source_points_at_the_last_import_once_there_is_one() {
        let c = cron(json!({}));
        let empty = render_data_source(&c, None, &DataImportCronSourceFormat::Pvc);
        assert_eq!(empty["spec"]["source"], json!({}));
        assert_eq!(
            empty["metadata"]["labels"][labels::DATA_IMPORT_CRON],
            "fedora-cron"
        );
        let pvc = DataVolumeSourcePvc {
            namespace: "golden".into(),
            name: "fedora-0123456789ab".into(),
        };
        let ds = render_data_source(&c, Some(&pvc), &DataImportCronSourceFormat::Pvc);
        assert_eq!(
            ds["spec"]["source"],
            json!({"pvc": {"namespace": "golden", "name": "fedora-0123456789ab"}})
        );
        let snap = render_data_source(&c, Some(&pvc), &DataImportCronSourceFormat::Snapshot);
        assert_eq!(
            snap["spec"]["source"],
            json!({"snapshot": {"namespace": "golden", "name": "fedora-0123456789ab"}})
        );
        let foreign: DataSource = serde_json::from_value(json!({
            "metadata": {"name": "fedora", "namespace": "golden",
                         "labels": {labels::DATA_IMPORT_CRON: "another-cron"}},
            "spec": {"source": {}}}))
        .expect("ds");
        assert!(!manages(&c, Some(&foreign)));
        let ours: DataSource = serde_json::from_value(ds).expect("ds");
        assert!(manages(&c, Some(&ours)));
        assert!(manages(&c, None));
    }

    #[test]
    fn the_snapshot_of_an_import_is_named_and_labelled_as_the_import() {
        let c = cron(json!({"retentionPolicy": "None"}));
        let s = render_snapshot(
            &c,
            "fedora-0123456789ab",
            Some("csi-snapclass"),
            Some("Block"),
            "2026-12-07T15:00:00Z",
        );
        assert_eq!(s.name_any(), "fedora-0123456789ab");
        assert_eq!(s.namespace().as_deref(), Some("golden"));
        assert_eq!(
            s.data["spec"],
            json!({"source": {"persistentVolumeClaimName": "fedora-0123456789ab"},
                   "volumeSnapshotClassName": "csi-snapclass"})
        );
        assert_eq!(
            s.labels().get(CLEANUP_LABEL).map(String::as_str),
            Some("true")
        );
        assert_eq!(
            s.annotations()
                .get(import::SOURCE_VOLUME_MODE)
                .map(String::as_str),
            Some("Block")
        );
    }

    #[test]
    fn garbage_collection_keeps_the_newest_and_never_the_protected() {
        let imports = |names: &[(&str, &str)]| {
            names
                .iter()
                .map(|(n, t)| Import {
                    name: n.to_string(),
                    last_use: t.to_string(),
                })
                .collect::<Vec<_>>()
        };
        let five = imports(&[
            ("a", "2026-12-01T00:00:00Z"),
            ("e", "2026-12-05T00:00:00Z"),
            ("c", "2026-12-03T00:00:00Z"),
            ("b", "2026-12-02T00:00:00Z"),
            ("d", "2026-12-04T00:00:00Z"),
        ]);
        assert_eq!(to_collect(five.clone(), 3, &[]), ["b", "a"]);
        assert_eq!(to_collect(five.clone(), 3, &["a"]), ["b"]);
        assert_eq!(to_collect(five.clone(), 0, &["e"]), ["d", "c", "b", "a"]);
        assert!(to_collect(five, 5, &[]).is_empty());

        assert_eq!(imports_to_keep(&cron(json!({}))), Some(3));
        assert_eq!(imports_to_keep(&cron(json!({"importsToKeep": 1}))), Some(1));
        assert_eq!(
            imports_to_keep(&cron(
                json!({"garbageCollect": "Outdated", "importsToKeep": 0})
            )),
            Some(0)
        );
        assert_eq!(
            imports_to_keep(&cron(json!({"garbageCollect": "Never"}))),
            None
        );
    }
}
