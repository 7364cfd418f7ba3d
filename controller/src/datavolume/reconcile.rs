//! Applies the DataVolume controller's decisions: creates the claim [`plan`](super::plan)
//! renders, writes the status [`status`](super::status) computes (only when it changed),
//! publishes the events of the change, and reads progress from the importer while it runs.

use std::sync::Arc;
use std::time::Duration;

use cdi_crds::annotations::{import, pod as pod_ann, switches};
use cdi_crds::{DataVolume, DataVolumePhase};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::plan::{self, PlanError, StorageView};
use super::status::{self, Observed};
use crate::context::object_key;
use crate::metrics::PhaseLabels;
use crate::worker::WorkerKind;
use crate::{Context, Error, clone, progress};

const CONTROLLER: &str = "datavolume";
/// How often progress is read while an import runs (upstream: every 2 s).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// How often a DataVolume whose claim cannot be rendered is looked at again.
const PLAN_RETRY: Duration = Duration::from_secs(10);

/// Runs the DataVolume controller until `shutdown` resolves.
pub async fn run(
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let dvs: Api<DataVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let controller = Controller::new(dvs, watcher::Config::default())
        .trigger_backoff(crate::backoff::watch_backoff());
    let store = controller.store();
    controller
        .owns(claims, watcher::Config::default())
        // A new StorageProfile or StorageClass may let a Pending DataVolume's claim render.
        .watches(
            Api::<cdi_crds::StorageProfile>::all(client.clone()),
            watcher::Config::default(),
            move |_| {
                store
                    .state()
                    .iter()
                    .filter(|dv| {
                        dv.status
                            .as_ref()
                            .and_then(|s| s.claim_name.as_ref())
                            .is_none()
                    })
                    .map(|dv| ObjectRef::from_obj(dv.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile(dv: Arc<DataVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.reconciled(
        CONTROLLER,
        &object_key(dv.as_ref()),
        reconcile_dv(&dv, &ctx),
    )
    .await
}

fn error_policy(dv: Arc<DataVolume>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry_after(CONTROLLER, &object_key(dv.as_ref()), error)
}

#[tracing::instrument(skip_all, fields(dv = %dv.name_any(), ns = dv.namespace().unwrap_or_default()))]
async fn reconcile_dv(dv: &DataVolume, ctx: &Context) -> Result<Action, Error> {
    if dv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = dv
        .namespace()
        .ok_or(Error::MissingObjectKey(".metadata.namespace"))?;
    let name = dv
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingObjectKey(".metadata.name"))?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let config = ctx.stores.effective_config();
    let view = StorageView {
        classes: ctx.stores.all_storage_classes(),
        profiles: ctx.stores.storage_profiles.state(),
    };
    let transfer = plan::transfer_of(dv).ok();

    let existing = claims.get_opt(&name).await?;
    let mut plan_error: Option<PlanError> = None;
    let mut foreign = false;
    let mut clone_phase = None;
    let mut extra_events = Vec::new();
    let mut requeue = None;
    let claim = match existing {
        Some(c) if plan::claim_belongs_to(&c, dv) && transfer != Some(WorkerKind::CloneTarget) => {
            Some(c)
        }
        Some(c) if !plan::claim_belongs_to(&c, dv) => {
            foreign = true;
            None
        }
        existing if transfer == Some(WorkerKind::CloneTarget) => {
            let step = clone::flow::reconcile(dv, ctx, existing).await?;
            plan_error = step.waiting;
            clone_phase = step.phase;
            extra_events = step.events;
            requeue = step.requeue;
            step.claim
        }
        Some(_) => None,
        None => match plan::render_claim(dv, &config, &view) {
            Ok(rendered) => match claims.create(&PostParams::default(), &rendered).await {
                Ok(created) => {
                    tracing::info!(claim = %name, "Claim created.");
                    Some(created)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => None,
                Err(e) => return Err(e.into()),
            },
            Err(e) => {
                tracing::info!(reason = e.reason, message = %e.message, "Claim not rendered yet.");
                plan_error = Some(e);
                None
            }
        },
    };

    let class = claim
        .as_ref()
        .and_then(|c| c.spec.as_ref())
        .and_then(|s| s.storage_class_name.clone());
    let immediate = [
        dv.metadata.annotations.as_ref(),
        claim.as_ref().and_then(|c| c.metadata.annotations.as_ref()),
    ]
    .into_iter()
    .flatten()
    .any(|a| {
        a.get(switches::IMMEDIATE_BINDING)
            .is_some_and(|v| v == "true")
    });
    let wait_for_first_consumer = view.is_wait_for_first_consumer(class.as_deref())
        && config.honor_wait_for_first_consumer
        && !immediate;

    let observed = Observed {
        dv,
        claim: claim.as_ref(),
        foreign_claim: foreign,
        plan_error: plan_error.as_ref(),
        transfer,
        wait_for_first_consumer,
        clone_phase,
        now: Time(Timestamp::now()),
    };
    let mut outcome = status::compute(&observed);

    let phase = outcome.status.phase.clone();
    // Progress is polled only while a worker is up to answer; other changes arrive by watch.
    let mut poll_progress = false;
    if matches!(
        phase,
        Some(
            DataVolumePhase::ImportInProgress
                | DataVolumePhase::UploadReady
                | DataVolumePhase::CloneInProgress
        )
    ) && let Some(claim) = &claim
    {
        let (percent, reachable) = read_progress(ctx, &ns, claim).await;
        poll_progress = reachable;
        if let Some(p) = percent {
            outcome.status.progress = Some(progress::format_progress(p));
        }
    }

    if dv.status.as_ref() != Some(&outcome.status) {
        let api: Api<DataVolume> = Api::namespaced(ctx.client.clone(), &ns);
        // The whole status, by server-side apply: what this controller does not set any more
        // is removed, rather than left behind as a merge patch would leave it.
        let apply = serde_json::json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1",
            "kind": "DataVolume",
            "status": outcome.status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(crate::FIELD_MANAGER).force(),
            &Patch::Apply(&apply),
        )
        .await?;
        if dv.status.as_ref().and_then(|s| s.phase.as_ref()) != phase.as_ref()
            && let Some(p) = &phase
        {
            tracing::info!(phase = p.as_str(), "DataVolume phase changed.");
            ctx.metrics
                .datavolume_phase_transitions
                .get_or_create(&PhaseLabels {
                    phase: p.as_str().to_owned(),
                })
                .inc();
        }
    }
    let dv_ref = dv.object_ref(&());
    for event in extra_events.iter().chain(&outcome.events) {
        ctx.publish(&dv_ref, event).await;
    }

    Ok(if poll_progress {
        Action::requeue(PROGRESS_INTERVAL)
    } else if let Some(after) = requeue {
        Action::requeue(after)
    } else if plan_error.as_ref().is_some_and(|e| !e.terminal) {
        Action::requeue(PLAN_RETRY)
    } else if transfer == Some(WorkerKind::CloneTarget)
        && claim.is_some()
        && phase != Some(DataVolumePhase::Succeeded)
        && phase != Some(DataVolumePhase::Failed)
    {
        // A clone's temporary objects go once its claim is filled; the claim's changes are
        // watched, but a restored claim's binding is not.
        Action::requeue(PLAN_RETRY)
    } else {
        Action::await_change()
    })
}

/// The worker's (importer's or upload server's) progress if its metrics can be read now, and
/// whether its pod is running (so worth asking again).
async fn read_progress(
    ctx: &Context,
    ns: &str,
    claim: &PersistentVolumeClaim,
) -> (Option<f64>, bool) {
    let Some(pod_name) = claim.metadata.annotations.as_ref().and_then(|a| {
        a.get(import::IMPORT_POD_NAME)
            .or_else(|| a.get(pod_ann::UPLOAD_POD_NAME))
    }) else {
        return (None, false);
    };
    let Ok(Some(pod)) = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .get_opt(pod_name)
        .await
    else {
        return (None, false);
    };
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && progress::metrics_url(&pod).is_some();
    if !running {
        return (None, false);
    }
    let owner_uid = crate::worker::pod::owner_uid(claim);
    (progress::scrape(&ctx.scraper, &pod, &owner_uid).await, true)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fixtures::{NAMESPACE, dv, mock_context};
    use serde_json::json;

    const CLAIM_PATH: &str = "/api/v1/namespaces/ns/persistentvolumeclaims/dv-http";

    fn http_dv() -> DataVolume {
        dv(
            "dv-http",
            json!({"http": {"url": "http://server/disk.qcow2"}}),
        )
    }

    #[tokio::test]
    async fn new_dv_creates_its_claim_and_reports_pending() {
        let (ctx, api) = mock_context(BTreeMap::new());
        let action = reconcile_dv(&http_dv(), &ctx).await.expect("reconciles");
        assert_eq!(action, Action::await_change());

        let calls = api.calls();
        assert_eq!(calls[0], format!("GET {CLAIM_PATH}"));
        assert_eq!(
            calls[1],
            format!("POST /api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims")
        );
        let claim = api
            .body("POST", "/persistentvolumeclaims")
            .expect("claim posted");
        assert_eq!(
            claim["spec"]["resources"]["requests"]["storage"],
            "1138166334"
        );
        assert_eq!(
            claim["metadata"]["annotations"]["cdi.kubevirt.io/storage.import.source"],
            "http"
        );
        let status = api
            .body("PATCH", "/datavolumes/dv-http/status")
            .expect("status patched");
        assert_eq!(status["status"]["phase"], "Pending");
        assert_eq!(status["status"]["claimName"], "dv-http");
        assert_eq!(status["status"]["progress"], "N/A");
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("POST /apis/events.k8s.io/v1/namespaces/ns/events")),
            "a Pending event: {calls:?}"
        );
    }

    #[tokio::test]
    async fn bound_claim_with_running_importer_is_in_progress() {
        let mut d = http_dv();
        let claim = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "dv-http", "namespace": "ns", "uid": "pvc-uid",
                "ownerReferences": [{"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                    "name": "dv-http", "uid": crate::fixtures::DV_UID, "controller": true}],
                "annotations": {"cdi.kubevirt.io/storage.pod.phase": "Running",
                                "cdi.kubevirt.io/storage.condition.running": "true",
                                "cdi.kubevirt.io/storage.import.importPodName": "importer-dv-http"}},
            "spec": {}, "status": {"phase": "Bound"}
        });
        let (ctx, api) = mock_context(BTreeMap::from([(CLAIM_PATH.to_string(), claim)]));
        d.status = None;
        let action = reconcile_dv(&d, &ctx).await.expect("reconciles");
        // The mock has no importer pod to poll, so nothing is requeued for progress.
        assert_eq!(action, Action::await_change());
        let status = api
            .body("PATCH", "/datavolumes/dv-http/status")
            .expect("status patched");
        assert_eq!(status["status"]["phase"], "ImportInProgress");
        // No claim is created for a DataVolume that has one.
        assert!(
            !api.calls().iter().any(|c| c.starts_with("POST /api/v1")),
            "{:?}",
            api.calls()
        );
    }

    #[tokio::test]
    async fn claim_of_someone_else_is_not_adopted() {
        let claim = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "dv-http", "namespace": "ns", "uid": "other"},
            "spec": {}, "status": {"phase": "Bound"}
        });
        let (ctx, api) = mock_context(BTreeMap::from([(CLAIM_PATH.to_string(), claim)]));
        reconcile_dv(&http_dv(), &ctx).await.expect("reconciles");
        let status = api
            .body("PATCH", "/datavolumes/dv-http/status")
            .expect("status patched");
        assert_eq!(status["status"]["phase"], "Pending");
        let bound = &status["status"]["conditions"][0];
        assert_eq!(bound["reason"], "ErrResourceExists");
    }

    #[tokio::test]
    async fn unchanged_status_is_not_written_again() {
        let (ctx, api) = mock_context(BTreeMap::new());
        let mut d = http_dv();
        reconcile_dv(&d, &ctx).await.expect("first pass");
        let written = api
            .body("PATCH", "/datavolumes/dv-http/status")
            .expect("status");
        d.status = serde_json::from_value(written["status"].clone()).expect("status parses");
        let before = api.requests().len();
        // The claim now exists (the mock answers the GET with the rendered claim).
        let claim = api.body("POST", "/persistentvolumeclaims").expect("claim");
        let (ctx2, api2) = mock_context(BTreeMap::from([(CLAIM_PATH.to_string(), claim)]));
        reconcile_dv(&d, &ctx2).await.expect("second pass");
        assert!(
            !api2.calls().iter().any(|c| c.contains("/status")),
            "{:?}",
            api2.calls()
        );
        assert!(before > 0);
    }

    mod clones {
        use super::*;
        use crate::datavolume::plan::StorageView;
        use crate::fixtures::{DV_UID, mock_context_with_storage, profile, storage_class};
        use cdi_crds::{CloneStrategy, VolumeMode};

        const SOURCE_PATH: &str = "/api/v1/namespaces/ns/persistentvolumeclaims/golden";
        const TARGET_PATH: &str = "/api/v1/namespaces/ns/persistentvolumeclaims/vm-disk";
        const SNAPSHOTS: &str = "/apis/snapshot.storage.k8s.io/v1/namespaces/ns/volumesnapshots";

        fn clone_dv(source_ns: &str) -> DataVolume {
            dv(
                "vm-disk",
                json!({"pvc": {"namespace": source_ns, "name": "golden"}}),
            )
        }

        fn source_claim(annotations: serde_json::Value) -> serde_json::Value {
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "golden", "namespace": "ns", "uid": "src-uid",
                             "annotations": annotations},
                "spec": {"storageClassName": "csi", "volumeMode": "Filesystem",
                         "accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}},
                "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}
            })
        }

        /// A CSI class `csi` (provisioner `csi.a`) whose profile asks for `strategy`.
        fn csi_storage(strategy: Option<CloneStrategy>, snapshot_class: bool) -> StorageView {
            let mut class = storage_class("csi", "Immediate", true);
            class.provisioner = "csi.a".into();
            class.allow_volume_expansion = Some(true);
            let mut p = profile("csi", VolumeMode::Filesystem);
            if let Some(status) = p.status.as_mut() {
                status.clone_strategy = strategy;
                status.snapshot_class = snapshot_class.then(|| "snapclass".into());
            }
            StorageView {
                classes: vec![std::sync::Arc::new(class)],
                profiles: vec![std::sync::Arc::new(p)],
            }
        }

        fn status_of(api: &crate::fixtures::MockApi) -> serde_json::Value {
            api.body("PATCH", "/datavolumes/vm-disk/status")
                .expect("status patched")["status"]
                .clone()
        }

        fn events(api: &crate::fixtures::MockApi) -> Vec<String> {
            api.requests()
                .into_iter()
                .filter(|s| s.method == "POST" && s.path.contains("/events"))
                .map(|s| s.body["reason"].as_str().unwrap_or_default().to_owned())
                .collect()
        }

        #[tokio::test]
        async fn without_a_snapshot_class_a_clone_copies_host_assisted() {
            let (ctx, api) = mock_context_with_storage(
                BTreeMap::from([(SOURCE_PATH.to_string(), source_claim(json!({})))]),
                csi_storage(None, false),
            );
            reconcile_dv(&clone_dv("ns"), &ctx)
                .await
                .expect("reconciles");
            let claim = api
                .body("POST", "/persistentvolumeclaims")
                .expect("target claim created");
            let a = &claim["metadata"]["annotations"];
            assert_eq!(a["k8s.io/CloneRequest"], "ns/golden");
            assert_eq!(a["cdi.kubevirt.io/cloneType"], "copy");
            assert!(
                a["cdi.kubevirt.io/cloneFallbackReason"]
                    .as_str()
                    .is_some_and(|r| r.contains("no VolumeSnapshotClass")),
                "{a}"
            );
            assert!(claim["spec"].get("dataSource").is_none());
            assert!(events(&api).contains(&"NoVolumeSnapshotClass".to_owned()));
        }

        #[tokio::test]
        async fn a_csi_clone_claim_names_its_source() {
            let (ctx, api) = mock_context_with_storage(
                BTreeMap::from([(SOURCE_PATH.to_string(), source_claim(json!({})))]),
                csi_storage(Some(CloneStrategy::CsiClone), false),
            );
            reconcile_dv(&clone_dv("ns"), &ctx)
                .await
                .expect("reconciles");
            let claim = api.body("POST", "/persistentvolumeclaims").expect("claim");
            assert_eq!(
                claim["spec"]["dataSource"],
                json!({"kind": "PersistentVolumeClaim", "name": "golden"})
            );
            assert_eq!(
                claim["metadata"]["annotations"]["cdi.kubevirt.io/cloneType"],
                "csi-clone"
            );
            assert!(
                claim["metadata"]["annotations"]
                    .get("k8s.io/CloneRequest")
                    .is_none()
            );
        }

        #[tokio::test]
        async fn a_smart_clone_snapshots_first_and_restores_once_ready() {
            let view = csi_storage(Some(CloneStrategy::Snapshot), true);
            let (ctx, api) = mock_context_with_storage(
                BTreeMap::from([(SOURCE_PATH.to_string(), source_claim(json!({})))]),
                view.clone(),
            );
            let action = reconcile_dv(&clone_dv("ns"), &ctx)
                .await
                .expect("reconciles");
            assert_eq!(action, Action::requeue(Duration::from_secs(2)));
            let snapshot = api
                .body("POST", "/volumesnapshots")
                .expect("snapshot taken");
            assert_eq!(
                snapshot["metadata"]["name"],
                format!("tmp-snapshot-{DV_UID}")
            );
            assert_eq!(
                snapshot["spec"],
                json!({"source": {"persistentVolumeClaimName": "golden"},
                       "volumeSnapshotClassName": "snapclass"})
            );
            assert!(api.body("POST", "/persistentvolumeclaims").is_none());
            assert_eq!(status_of(&api)["phase"], "SnapshotForSmartCloneInProgress");

            let ready = json!({
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                "metadata": {"name": format!("tmp-snapshot-{DV_UID}"), "namespace": "ns"},
                "spec": {}, "status": {"readyToUse": true, "restoreSize": "1Gi"}
            });
            let (ctx, api) = mock_context_with_storage(
                BTreeMap::from([
                    (SOURCE_PATH.to_string(), source_claim(json!({}))),
                    (format!("{SNAPSHOTS}/tmp-snapshot-{DV_UID}"), ready),
                ]),
                view,
            );
            reconcile_dv(&clone_dv("ns"), &ctx)
                .await
                .expect("reconciles");
            let claim = api.body("POST", "/persistentvolumeclaims").expect("claim");
            assert_eq!(
                claim["spec"]["dataSource"],
                json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                       "name": format!("tmp-snapshot-{DV_UID}")})
            );
            assert_eq!(
                claim["metadata"]["annotations"]["cdi.kubevirt.io/cloneType"],
                "snapshot"
            );
        }

        #[tokio::test]
        async fn a_bound_smart_clone_drops_its_snapshot_and_succeeds() {
            let target = json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "vm-disk", "namespace": "ns", "uid": "t-uid",
                    "annotations": {"cdi.kubevirt.io/cloneType": "snapshot",
                                    "cdi.kubevirt.io/createdForDataVolume": DV_UID}},
                "spec": {"dataSource": {"kind": "VolumeSnapshot", "name": "x"}},
                "status": {"phase": "Bound"}
            });
            let (ctx, api) = mock_context_with_storage(
                BTreeMap::from([(TARGET_PATH.to_string(), target)]),
                csi_storage(Some(CloneStrategy::Snapshot), true),
            );
            reconcile_dv(&clone_dv("ns"), &ctx)
                .await
                .expect("reconciles");
            assert!(
                api.calls()
                    .contains(&format!("DELETE {SNAPSHOTS}/tmp-snapshot-{DV_UID}")),
                "{:?}",
                api.calls()
            );
            assert_eq!(status_of(&api)["phase"], "Succeeded");
            assert!(events(&api).contains(&"CloneSucceeded".to_owned()));
        }

        #[tokio::test]
        async fn a_missing_or_unfilled_source_is_waited_for() {
            let (ctx, api) = mock_context_with_storage(BTreeMap::new(), csi_storage(None, false));
            let action = reconcile_dv(&clone_dv("ns"), &ctx)
                .await
                .expect("reconciles");
            assert_eq!(action, Action::requeue(PLAN_RETRY));
            let status = status_of(&api);
            assert_eq!(status["phase"], "Pending");
            assert_eq!(status["conditions"][0]["reason"], "CloneWithoutSource");
            assert!(api.body("POST", "/persistentvolumeclaims").is_none());

            let importing = source_claim(json!({"cdi.kubevirt.io/storage.pod.phase": "Running"}));
            let (ctx, api) = mock_context_with_storage(
                BTreeMap::from([(SOURCE_PATH.to_string(), importing)]),
                csi_storage(None, false),
            );
            reconcile_dv(&clone_dv("ns"), &ctx)
                .await
                .expect("reconciles");
            let status = status_of(&api);
            assert_eq!(status["conditions"][0]["reason"], "CloneSourceNotPopulated");
            assert!(api.body("POST", "/persistentvolumeclaims").is_none());
        }

        #[tokio::test]
        async fn a_cross_namespace_clone_without_a_valid_token_fails() {
            let (ctx, api) = mock_context_with_storage(BTreeMap::new(), csi_storage(None, false));
            let action = reconcile_dv(&clone_dv("golden"), &ctx)
                .await
                .expect("reconciles");
            assert_eq!(action, Action::await_change());
            let status = status_of(&api);
            assert_eq!(status["phase"], "Failed");
            let message = status["conditions"][0]["message"]
                .as_str()
                .unwrap_or_default();
            assert!(message.contains("not authorized"), "{message}");
            assert!(events(&api).contains(&"ErrUnableToClone".to_owned()));
            assert!(
                !api.calls().iter().any(|c| c.starts_with("POST /api/v1")),
                "nothing is created: {:?}",
                api.calls()
            );
        }
    }
}
