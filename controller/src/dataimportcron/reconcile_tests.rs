//! The DataImportCron reconciler against the mock API server: what it creates, patches and
//! deletes in each situation, and when it looks again.

use std::collections::BTreeMap;
use std::time::Duration;

use cdi_crds::DataImportCron;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::poll::Poller;
use super::reconcile::{FINALIZER, State, reconcile_cron};
use crate::fixtures::mock_context;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const N1: &str = "fedora-111111111111";
const DVS: &str = "/apis/cdi.kubevirt.io/v1beta1/namespaces/golden/datavolumes";
const DSS: &str = "/apis/cdi.kubevirt.io/v1beta1/namespaces/golden/datasources";
const CRON: &str = "/apis/cdi.kubevirt.io/v1beta1/namespaces/golden/dataimportcrons/fedora-cron";

fn cron(spec: Value, annotations: Value, status: Value) -> DataImportCron {
    let mut s = json!({
        "template": {"spec": {
            "source": {"registry": {"url": "docker://127.0.0.1:1/disks/fedora:42"}},
            "storage": {"resources": {"requests": {"storage": "1Gi"}}}}},
        "schedule": "",
        "managedDataSource": "fedora",
    });
    for (k, v) in spec.as_object().into_iter().flatten() {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataImportCron",
        "metadata": {"name": "fedora-cron", "namespace": "golden", "uid": "cron-uid",
                     "finalizers": [FINALIZER], "annotations": annotations},
        "spec": s,
        "status": status,
    }))
    .expect("a DataImportCron")
}

fn dv(name: &str, phase: &str, last_use: &str) -> Value {
    json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
        "metadata": {"name": name, "namespace": "golden",
                     "creationTimestamp": "2026-12-01T00:00:00Z",
                     "labels": {"cdi.kubevirt.io/dataImportCron": "fedora-cron"},
                     "annotations": {"cdi.kubevirt.io/storage.import.lastUseTime": last_use}},
        "spec": {"source": {"registry": {"url": "docker://x/y@sha256:1"}}},
        "status": {"phase": phase},
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"},
           "items": items})
}

fn now() -> Timestamp {
    "2026-12-07T15:02:30Z".parse().expect("time")
}

/// A mock API server holding `objects` and `cron` (whose patches it answers with the cron).
fn mock(
    cron: &DataImportCron,
    mut objects: BTreeMap<String, Value>,
) -> (crate::Context, crate::fixtures::MockApi) {
    objects.insert(
        CRON.to_owned(),
        serde_json::to_value(cron).expect("cron serialises"),
    );
    mock_context(objects)
}

/// The status the pass applied (on the object: there is no status subresource).
fn status_patch(api: &crate::fixtures::MockApi) -> Value {
    api.requests()
        .into_iter()
        .find(|s| s.method == "PATCH" && s.path == CRON && s.body.get("status").is_some())
        .map(|s| s.body)
        .expect("the status applied")
}

/// Condition `t` of an applied status.
fn condition(status: &Value, t: &str) -> Value {
    status["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == t))
        .cloned()
        .unwrap_or_else(|| panic!("no {t} condition in {status}"))
}

fn state(ctx: crate::Context) -> State {
    State {
        ctx,
        poller: Poller::default(),
    }
}

#[tokio::test]
async fn a_new_digest_is_imported_once_pinned_and_labelled() {
    let c = cron(
        json!({}),
        json!({"cdi.kubevirt.io/storage.import.sourceDesiredDigest": D1}),
        json!({}),
    );
    let (ctx, api) = mock(&c, BTreeMap::new());
    let action = reconcile_cron(&c, &state(ctx), now())
        .await
        .expect("reconciles");
    assert_eq!(
        action,
        Action::await_change(),
        "no schedule: nothing to poll"
    );
    let created = api.body("POST", "/datavolumes").expect("an import");
    assert_eq!(created["metadata"]["name"], N1);
    assert_eq!(
        created["spec"]["source"]["registry"]["url"],
        format!("docker://127.0.0.1:1/disks/fedora@{D1}")
    );
    assert_eq!(
        created["metadata"]["labels"]["cdi.kubevirt.io/dataImportCron"],
        "fedora-cron"
    );
    let ds = api.body("POST", "/datasources").expect("the DataSource");
    assert_eq!(ds["metadata"]["name"], "fedora");
    assert_eq!(ds["spec"]["source"], json!({}));
    let status = status_patch(&api);
    assert_eq!(
        status["status"]["currentImports"],
        json!([{"DataVolumeName": N1, "Digest": D1}])
    );
    let up_to_date = condition(&status, "UpToDate");
    assert_eq!(up_to_date["reason"], "Outdated");
    // No registry was asked: the digest came from the annotation.
    assert!(
        !api.calls().iter().any(|c| c.contains("/secrets/")),
        "{:?}",
        api.calls()
    );
}

#[tokio::test]
async fn an_existing_import_is_not_created_again() {
    // The import exists already (another replica, or a restart after its creation): the 409
    // is the expected answer, and the pass goes on.
    let c = cron(
        json!({}),
        json!({"cdi.kubevirt.io/storage.import.sourceDesiredDigest": D1}),
        json!({"currentImports": [{"DataVolumeName": N1, "Digest": D1}]}),
    );
    let (ctx, api) = mock(
        &c,
        BTreeMap::from([(
            format!("{DVS}/{N1}"),
            dv(N1, "ImportInProgress", "2026-12-07T15:00:00Z"),
        )]),
    );
    reconcile_cron(&c, &state(ctx), now())
        .await
        .expect("reconciles");
    assert!(
        !api.calls()
            .iter()
            .any(|c| c.starts_with("POST") && c.ends_with("/datavolumes")),
        "{:?}",
        api.calls()
    );
    let status = status_patch(&api);
    let progressing = condition(&status, "Progressing");
    assert_eq!(progressing["reason"], "ImportProgressing");
    assert_eq!(progressing["status"], "True");
}

#[tokio::test]
async fn a_succeeded_import_moves_the_data_source_and_old_imports_are_collected() {
    let ds = json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
        "metadata": {"name": "fedora", "namespace": "golden",
                     "labels": {"cdi.kubevirt.io/dataImportCron": "fedora-cron"}},
        "spec": {"source": {"pvc": {"namespace": "golden", "name": "fedora-000000000004"}}},
    });
    let imports = vec![
        dv("fedora-000000000001", "Succeeded", "2026-12-01T00:00:00Z"),
        dv("fedora-000000000002", "Succeeded", "2026-12-02T00:00:00Z"),
        dv("fedora-000000000003", "Succeeded", "2026-12-03T00:00:00Z"),
        dv("fedora-000000000004", "Succeeded", "2026-12-04T00:00:00Z"),
        dv(N1, "Succeeded", "2026-12-07T15:02:30Z"),
    ];
    let c = cron(
        json!({"importsToKeep": 2}),
        json!({"cdi.kubevirt.io/storage.import.sourceDesiredDigest": D1}),
        json!({"currentImports": [{"DataVolumeName": N1, "Digest": D1}],
               "lastImportedPVC": {"namespace": "golden", "name": "fedora-000000000004"}}),
    );
    let (ctx, api) = mock(
        &c,
        BTreeMap::from([
            (
                format!("{DVS}/{N1}"),
                dv(N1, "Succeeded", "2026-12-07T15:00:00Z"),
            ),
            (DVS.to_owned(), list(imports)),
            (format!("{DSS}/fedora"), ds),
        ]),
    );
    reconcile_cron(&c, &state(ctx.clone()), now())
        .await
        .expect("reconciles");
    let calls = api.calls();
    let deleted: Vec<&String> = calls.iter().filter(|c| c.starts_with("DELETE")).collect();
    assert_eq!(
        deleted,
        [
            &format!("DELETE {DVS}/fedora-000000000003"),
            &format!("DELETE {DVS}/fedora-000000000002"),
            &format!("DELETE {DVS}/fedora-000000000001"),
        ],
        "keeps the two most recently used: {calls:?}"
    );
    let repointed = api.body("PATCH", "/datasources/fedora").expect("repointed");
    assert_eq!(
        repointed["spec"]["source"]["pvc"],
        json!({"namespace": "golden", "name": N1})
    );
    let status = status_patch(&api);
    assert_eq!(status["status"]["lastImportedPVC"]["name"], N1);
    assert_eq!(
        status["status"]["lastImportTimestamp"],
        "2026-12-07T15:02:30Z"
    );
    assert_eq!(status["status"]["sourceFormat"], "pvc");
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(
            "kubevirt_cdi_dataimportcron_outdated{namespace=\"golden\",cron_name=\"fedora-cron\",pending=\"false\"} 0"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("kubevirt_cdi_dataimportcron_import_duration_seconds_count 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_data_source_of_another_cron_is_left_alone() {
    let foreign = json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
        "metadata": {"name": "fedora", "namespace": "golden",
                     "labels": {"cdi.kubevirt.io/dataImportCron": "another-cron"}},
        "spec": {"source": {}},
    });
    let c = cron(
        json!({}),
        json!({"cdi.kubevirt.io/storage.import.sourceDesiredDigest": D1}),
        json!({"currentImports": [{"DataVolumeName": N1, "Digest": D1}]}),
    );
    let (ctx, api) = mock(
        &c,
        BTreeMap::from([
            (format!("{DVS}/{N1}"), dv(N1, "Succeeded", "t")),
            (DVS.to_owned(), list(vec![])),
            (format!("{DSS}/fedora"), foreign),
        ]),
    );
    reconcile_cron(&c, &state(ctx), now())
        .await
        .expect("reconciles");
    assert!(api.body("PATCH", "/datasources/fedora").is_none());
    let event = api
        .requests()
        .into_iter()
        .find(|s| s.method == "POST" && s.path.ends_with("/events"))
        .expect("an event");
    assert_eq!(event.body["reason"], "ErrDataSourceAlreadyManaged");
}

#[tokio::test]
async fn a_scheduled_cron_waits_for_its_next_minute_without_polling() {
    let c = cron(
        json!({"schedule": "*/5 * * * *"}),
        json!({"cdi.kubevirt.io/storage.import.lastCronTime": "2026-12-07T15:00:00Z"}),
        json!({}),
    );
    let (ctx, api) = mock(&c, BTreeMap::new());
    let action = reconcile_cron(&c, &state(ctx), now())
        .await
        .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(150)));
    let moved = api.requests().into_iter().any(|s| {
        s.method == "PATCH" && s.path == CRON && s.body["metadata"].get("annotations").is_some()
    });
    assert!(!moved, "the poll time is not moved: {:?}", api.calls());
}

#[tokio::test]
async fn an_unreachable_registry_is_retried_and_shown_in_the_condition() {
    // Nothing listens on port 1.
    let c = cron(json!({"schedule": "* * * * *"}), json!({}), json!({}));
    let (ctx, api) = mock(&c, BTreeMap::new());
    let err = reconcile_cron(&c, &state(ctx), now())
        .await
        .expect_err("the poll fails");
    assert!(matches!(err, crate::Error::SourcePoll { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    let status = status_patch(&api);
    let up_to_date = condition(&status, "UpToDate");
    assert_eq!(up_to_date["reason"], "RegistryUnreachable");
    let event = api
        .requests()
        .into_iter()
        .find(|s| s.method == "POST" && s.path.ends_with("/events"))
        .expect("an event");
    assert_eq!(event.body["reason"], "RegistryUnreachable");
    assert!(api.body("POST", "/datavolumes").is_none());
}

#[tokio::test]
async fn deleting_with_retention_none_deletes_the_imports_and_the_data_source() {
    let ours = json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
        "metadata": {"name": "fedora", "namespace": "golden"}, "spec": {"source": {}},
    });
    let mut c = cron(json!({"retentionPolicy": "None"}), json!({}), json!({}));
    let (ctx, api) = mock(
        &c,
        BTreeMap::from([
            (DVS.to_owned(), list(vec![dv(N1, "Succeeded", "t")])),
            (DSS.to_owned(), list(vec![ours])),
        ]),
    );
    c.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    reconcile_cron(&c, &state(ctx), now())
        .await
        .expect("finalizes");
    let calls = api.calls();
    assert!(calls.contains(&format!("DELETE {DVS}/{N1}")), "{calls:?}");
    assert!(calls.contains(&format!("DELETE {DSS}/fedora")), "{calls:?}");
    let unfinalized = api
        .requests()
        .into_iter()
        .rfind(|s| s.method == "PATCH" && s.path == CRON)
        .expect("finalizer removed");
    assert_eq!(unfinalized.body["metadata"]["finalizers"], json!([]));
}

#[tokio::test]
async fn deleting_with_retention_all_keeps_everything() {
    let mut c = cron(json!({}), json!({}), json!({}));
    let (ctx, api) = mock(&c, BTreeMap::new());
    c.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    reconcile_cron(&c, &state(ctx), now())
        .await
        .expect("finalizes");
    let calls = api.calls();
    assert!(!calls.iter().any(|c| c.starts_with("DELETE")), "{calls:?}");
    assert_eq!(calls, [format!("PATCH {CRON}")]);
}

/// Storage whose default class keeps DataImportCron imports as snapshots of class `snapclass`.
fn snapshot_storage() -> crate::datavolume::plan::StorageView {
    let mut view = crate::fixtures::storage();
    let mut profile = crate::fixtures::profile("local", cdi_crds::VolumeMode::Filesystem);
    if let Some(status) = profile.status.as_mut() {
        status.data_import_cron_source_format =
            Some(cdi_crds::DataImportCronSourceFormat::Snapshot);
        status.snapshot_class = Some("snapclass".into());
    }
    view.profiles = vec![std::sync::Arc::new(profile)];
    view
}

const SNAPS: &str = "/apis/snapshot.storage.k8s.io/v1/namespaces/golden/volumesnapshots";

#[tokio::test]
async fn on_snapshot_storage_a_finished_import_is_snapshotted_then_its_data_volume_dropped() {
    let c = cron(
        json!({}),
        json!({"cdi.kubevirt.io/storage.import.sourceDesiredDigest": D1}),
        json!({"currentImports": [{"DataVolumeName": N1, "Digest": D1}]}),
    );
    // The import just succeeded: its snapshot is made, in the profile's snapshot class.
    let mut objects = BTreeMap::from([
        (format!("{DVS}/{N1}"), dv(N1, "Succeeded", "t")),
        (DVS.to_owned(), list(vec![])),
        (CRON.to_owned(), serde_json::to_value(&c).expect("cron")),
    ]);
    let (ctx, api) =
        crate::fixtures::mock_context_with_storage(objects.clone(), snapshot_storage());
    reconcile_cron(&c, &state(ctx), now())
        .await
        .expect("reconciles");
    let snapshot = api.body("POST", "/volumesnapshots").expect("a snapshot");
    assert_eq!(snapshot["metadata"]["name"], N1);
    assert_eq!(
        snapshot["spec"],
        json!({"source": {"persistentVolumeClaimName": N1},
               "volumeSnapshotClassName": "snapclass"})
    );
    assert!(!api.calls().contains(&format!("DELETE {DVS}/{N1}")));
    let waiting = status_patch(&api);
    assert_eq!(
        condition(&waiting, "UpToDate")["reason"],
        "ImportProgressing"
    );
    assert_eq!(waiting["status"]["sourceFormat"], "snapshot");
    let ds = api.body("POST", "/datasources").expect("the DataSource");
    assert_eq!(
        ds["spec"]["source"],
        json!({"snapshot": {"namespace": "golden", "name": N1}})
    );

    // Once the snapshot is ready, the DataVolume goes and the cron is up to date.
    objects.insert(
        format!("{SNAPS}/{N1}"),
        json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
               "metadata": {"name": N1, "namespace": "golden"},
               "spec": {}, "status": {"readyToUse": true}}),
    );
    let (ctx, api) = crate::fixtures::mock_context_with_storage(objects, snapshot_storage());
    reconcile_cron(&c, &state(ctx), now())
        .await
        .expect("reconciles");
    assert!(
        api.calls().contains(&format!("DELETE {DVS}/{N1}")),
        "{:?}",
        api.calls()
    );
    assert!(api.body("POST", "/volumesnapshots").is_none());
    assert_eq!(
        condition(&status_patch(&api), "UpToDate")["reason"],
        "UpToDate"
    );
}
