//! Upstream-style manifests survive parse → serialise unchanged: no field lost, renamed or added.
//!
//! Each fixture in `tests/fixtures/` is read as YAML, parsed into our type for its `kind`,
//! serialised again and compared with the original as `serde_json::Value`.

mod common;

use cdi_crds::{
    Cdi, CdiConfig, DataImportCron, DataSource, DataVolume, DataVolumePhase, StorageProfile,
    VolumeCloneSource, VolumeImportSource, VolumeUploadSource,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Parses `original` as `K` and returns it serialised again.
fn reserialise<K: DeserializeOwned + Serialize>(name: &str, original: &Value) -> Value {
    let typed: K = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{name} does not parse as its kind: {e}"));
    serde_json::to_value(&typed).unwrap_or_else(|e| panic!("{name} does not serialise: {e}"))
}

fn assert_round_trips(name: &str) {
    let original = common::fixture_json(name);
    let kind = original["kind"].as_str().unwrap_or_default().to_owned();
    let again = match kind.as_str() {
        "DataVolume" => reserialise::<DataVolume>(name, &original),
        "DataSource" => reserialise::<DataSource>(name, &original),
        "DataImportCron" => reserialise::<DataImportCron>(name, &original),
        "StorageProfile" => reserialise::<StorageProfile>(name, &original),
        "CDIConfig" => reserialise::<CdiConfig>(name, &original),
        "CDI" => reserialise::<Cdi>(name, &original),
        "VolumeImportSource" => reserialise::<VolumeImportSource>(name, &original),
        "VolumeUploadSource" => reserialise::<VolumeUploadSource>(name, &original),
        "VolumeCloneSource" => reserialise::<VolumeCloneSource>(name, &original),
        other => panic!("{name}: no type for kind {other:?}"),
    };
    if let Some(difference) = common::first_difference(&original, &again, "") {
        panic!("{name} changed in a round trip: {difference}");
    }
}

#[test]
fn http_import_with_storage_round_trips() {
    assert_round_trips("dv-http-storage.yaml");
}

#[test]
fn http_import_with_pvc_api_round_trips() {
    assert_round_trips("dv-http-pvc.yaml");
}

#[test]
fn registry_import_round_trips() {
    assert_round_trips("dv-registry.yaml");
}

#[test]
fn s3_import_round_trips() {
    assert_round_trips("dv-s3.yaml");
}

#[test]
fn upload_with_empty_lists_round_trips() {
    assert_round_trips("dv-upload.yaml");
}

#[test]
fn blank_disk_round_trips() {
    assert_round_trips("dv-blank.yaml");
}

#[test]
fn pvc_clone_round_trips() {
    assert_round_trips("dv-clone-pvc.yaml");
}

#[test]
fn source_ref_to_data_source_round_trips() {
    assert_round_trips("dv-sourceref.yaml");
}

#[test]
fn warm_vddk_import_with_checkpoints_round_trips() {
    assert_round_trips("dv-vddk-warm.yaml");
}

#[test]
fn data_import_cron_round_trips() {
    assert_round_trips("dataimportcron.yaml");
}

#[test]
fn storage_profile_with_claim_property_sets_round_trips() {
    assert_round_trips("storageprofile.yaml");
}

#[test]
fn cdi_config_with_filesystem_overhead_round_trips() {
    assert_round_trips("cdiconfig.yaml");
}

#[test]
fn cdi_operator_resource_round_trips() {
    assert_round_trips("cdi.yaml");
}

#[test]
fn data_source_round_trips() {
    assert_round_trips("datasource.yaml");
}

#[test]
fn populator_sources_round_trip() {
    for name in [
        "volumeimportsource.yaml",
        "volumeuploadsource.yaml",
        "volumeclonesource.yaml",
    ] {
        assert_round_trips(name);
    }
}

#[test]
fn every_fixture_round_trips() {
    // Catches a fixture added without a test of its own.
    for name in common::fixture_names() {
        assert_round_trips(&name);
    }
}

#[test]
fn yaml_parses_straight_into_the_types() {
    let dv: DataVolume = serde_saphyr::from_str(&common::fixture_text("dv-http-storage.yaml"))
        .expect("fixture parses as a DataVolume");
    let http = dv.spec.source.and_then(|s| s.http).expect("http source");
    assert_eq!(http.url, "https://images.example.com/fedora/disk.qcow2.xz");
    let status = dv.status.expect("status");
    assert_eq!(status.phase, Some(DataVolumePhase::Succeeded));
    assert_eq!(status.progress.as_deref(), Some("100.0%"));
    assert_eq!(status.conditions.map(|c| c.len()), Some(3));
}

#[test]
fn explicit_nulls_read_as_absent() {
    // Go writes a zero metav1.Time as null; such objects must still parse.
    let dv: DataVolume = serde_json::from_value(serde_json::json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": {"name": "n"},
        "spec": {"source": {"blank": {}}, "pvc": null},
        "status": {"conditions": [{"type": "Ready", "status": "False", "lastHeartbeatTime": null}]},
    }))
    .expect("nulls are accepted");
    assert!(dv.spec.pvc.is_none());
    let condition = &dv.status.and_then(|s| s.conditions).expect("conditions")[0];
    assert!(condition.last_heartbeat_time.is_none());
}

#[test]
fn unknown_fields_are_ignored_not_refused() {
    // A newer CDI may add fields; an older reader must still load the object.
    let dv: DataVolume = serde_json::from_value(serde_json::json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": {"name": "n"},
        "spec": {"source": {"http": {"url": "http://x/y", "futureOption": 1}}, "futureField": true},
    }))
    .expect("unknown fields are ignored");
    assert!(dv.spec.source.and_then(|s| s.http).is_some());
}
