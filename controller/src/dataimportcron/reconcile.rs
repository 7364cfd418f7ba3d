//! Applies the DataImportCron controller's decisions: polls the registry when the schedule
//! says so (the digest and poll time go into the cron's annotations, as upstream's poller
//! writes them), observes the import in progress, creates and deletes DataVolumes, keeps the
//! managed DataSource on the newest import (or, where the StorageProfile keeps imports as
//! snapshots, snapshots each import and drops its claim), collects old imports and writes the
//! status.
//! A finalizer lets `retentionPolicy: None` delete what the cron made.

use std::sync::Arc;
use std::time::Duration;

use cdi_crds::annotations::{import, labels};
use cdi_crds::{
    ConditionStatus, DataImportCron, DataImportCronSourceFormat, DataSource, DataVolume,
    DataVolumeConditionType, DataVolumeSourcePvc,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::imports::{self, Import};
use super::poll::{PollError, Poller, RegistryAccess};
use super::schedule::Schedule;
use super::status::{self, ImportState, PollFailure};
use crate::clone::flow::{SnapshotFacts, snapshot_resource};
use crate::context::{EventSpec, object_key};
use crate::datavolume::plan::StorageView;
use crate::metrics::{CronLabels, CronOutdatedLabels};
use crate::{Context, Error, objects};

const CONTROLLER: &str = "dataimportcron";
/// Holds a cron until what `retentionPolicy: None` deletes is gone.
pub const FINALIZER: &str = "cdi.kubevirt.io/dataImportCronFinalizer";
/// A requeue never comes sooner than this.
const MIN_REQUEUE: Duration = Duration::from_secs(1);

/// The controller's state: the shared context and the registry poller (clients, tokens).
#[derive(Debug)]
pub struct State {
    pub ctx: Context,
    pub poller: Poller,
}

/// Runs the DataImportCron controller until `shutdown` resolves.
pub async fn run(
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    Controller::new(
        Api::<DataImportCron>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<DataVolume>::all(client),
        watcher::Config::default().labels(labels::DATA_IMPORT_CRON),
        |dv| {
            let cron = dv.labels().get(labels::DATA_IMPORT_CRON)?;
            Some(ObjectRef::new(cron).within(&dv.namespace()?))
        },
    )
    .graceful_shutdown_on(shutdown)
    .run(
        reconcile,
        error_policy,
        Arc::new(State {
            poller: Poller::new(ctx.metrics.dataimportcron_registry_requests.clone()),
            ctx,
        }),
    )
    .for_each(|_| futures::future::ready(()))
    .await;
}

async fn reconcile(cron: Arc<DataImportCron>, state: Arc<State>) -> Result<Action, Error> {
    state
        .ctx
        .reconciled(
            CONTROLLER,
            &object_key(cron.as_ref()),
            reconcile_cron(&cron, &state, Timestamp::now()),
        )
        .await
}

fn error_policy(cron: Arc<DataImportCron>, error: &Error, state: Arc<State>) -> Action {
    state
        .ctx
        .retry_after(CONTROLLER, &object_key(cron.as_ref()), error)
}

/// One pass over `cron` at time `now`.
#[tracing::instrument(skip_all, fields(cron = %cron.name_any(), ns = cron.namespace().unwrap_or_default()))]
pub async fn reconcile_cron(
    cron: &DataImportCron,
    state: &State,
    now: Timestamp,
) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let ns = cron
        .namespace()
        .ok_or(Error::MissingObjectKey(".metadata.namespace"))?;
    let crons: Api<DataImportCron> = Api::namespaced(ctx.client.clone(), &ns);
    if cron.metadata.deletion_timestamp.is_some() {
        return finalize(cron, ctx, &ns, &crons).await;
    }
    if !cron.finalizers().iter().any(|f| f == FINALIZER) {
        let mut finalizers = cron.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        patch_metadata(&crons, &cron.name_any(), json!({"finalizers": finalizers})).await?;
    }
    let now_second = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let mut cron = cron.clone();

    // Poll when the schedule says so.
    let (failure, next_poll, poll_error) =
        poll_if_due(&mut cron, state, &crons, now_second).await?;

    // The import in progress.
    let storage = StorageFacts::of(ctx, &cron);
    let import_state = observe_import(ctx, &ns, &cron).await?;
    let time = Time(now_second);
    let decision = status::decide(
        &cron,
        &import_state,
        &storage.format,
        failure.as_ref(),
        &time,
    )
    .map_err(|e| Error::SourcePoll {
        cron: object_key(&cron),
        message: e.to_string(),
    })?;
    let dvs: Api<DataVolume> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(name) = &decision.delete_failed {
        tracing::info!(dv = %name, "Deleting the failed import before importing the new digest.");
        objects::delete_if_present(&dvs, name).await?;
    }
    if let Some((name, digest)) = &decision.create {
        let pinned = registry_url(&cron)
            .and_then(|url| cdi_imageref::parse(&url).ok())
            .map(|r| cdi_imageref::pinned(&r, digest));
        let dv = imports::render_data_volume(&cron, name, digest, pinned, &now_second.to_string());
        match dvs.create(&PostParams::default(), &dv).await {
            Ok(_) => {
                tracing::info!(dv = %name, digest, "Importing the new digest.");
                ctx.publish(
                    &cron.object_ref(&()),
                    &EventSpec::normal(
                        "ImportScheduled",
                        format!("Importing {digest} into DataVolume {name}"),
                    ),
                )
                .await;
            }
            // Another pass, replica or restart created it already.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let old_last = cron
        .status
        .as_ref()
        .and_then(|s| s.last_imported_pvc.clone());
    if decision.succeeded
        && let Some(last) = &decision.status.last_imported_pvc
    {
        if old_last.as_ref() != Some(last) {
            record_import_duration(ctx, &dvs, &last.name, now_second).await?;
            touch(&dvs, &last.name, &now_second.to_string()).await?;
        }
        collect_garbage(ctx, &cron, &dvs, &decision.status).await?;
    }
    if let Some(name) = &decision.snapshot {
        keep_as_snapshot(ctx, &cron, &dvs, name, &import_state, &storage, now_second).await?;
    }
    update_data_source(
        ctx,
        &cron,
        decision.status.last_imported_pvc.as_ref(),
        &storage.format,
    )
    .await?;
    if cron.status.as_ref() != Some(&decision.status) {
        let apply = json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1",
            "kind": "DataImportCron",
            "status": decision.status,
        });
        // DataImportCrons have no status subresource (as upstream): the status is applied on
        // the object.
        crons
            .patch(
                &cron.name_any(),
                &PatchParams::apply(crate::FIELD_MANAGER).force(),
                &Patch::Apply(&apply),
            )
            .await?;
    }
    // Pending: waiting for a default storage class (upstream's alert leaves those out).
    let outdated = decision.outdated();
    set_outdated(ctx, &cron, outdated, outdated && !storage.class_known);
    if let Some(e) = poll_error {
        return Err(Error::SourcePoll {
            cron: object_key(&cron),
            message: e.to_string(),
        });
    }
    Ok(match next_poll {
        Some(at) => Action::requeue(
            Duration::try_from(at.duration_since(now))
                .unwrap_or(MIN_REQUEUE)
                .max(MIN_REQUEUE),
        ),
        None => Action::await_change(),
    })
}

/// Polls the source if the cron is due (never polled, or its schedule's next time after the
/// last poll has come), records the digest and time in the cron's annotations (and in
/// `cron`), and returns the failure to show, the next poll time, and a poll error to retry.
async fn poll_if_due(
    cron: &mut DataImportCron,
    state: &State,
    crons: &Api<DataImportCron>,
    now: Timestamp,
) -> Result<(Option<PollFailure>, Option<Timestamp>, Option<PollError>), Error> {
    let ctx = &state.ctx;
    if cron.spec.schedule.trim().is_empty() {
        // No polling: imports follow the digest annotation set from outside.
        return Ok((None, None, None));
    }
    let schedule = match Schedule::parse(&cron.spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            let failure = PollFailure {
                reason: "InvalidSchedule".into(),
                message: e.to_string(),
            };
            return Ok((Some(failure), None, None));
        }
    };
    let Some(url) = registry_url(cron) else {
        let failure = PollFailure {
            reason: "UnsupportedSource".into(),
            message: "only template.spec.source.registry.url is polled; imageStream and pvc \
                      sources are not supported by this controller: set a docker:// url"
                .into(),
        };
        return Ok((Some(failure), None, None));
    };
    let reference = match cdi_imageref::parse(&url) {
        Ok(r) => r,
        Err(e) => {
            let failure = PollFailure {
                reason: "InvalidURL".into(),
                message: e.to_string(),
            };
            return Ok((Some(failure), None, None));
        }
    };
    let interval = ctx.settings.dataimportcron_poll_interval;
    let next_after = |t: Timestamp| match interval {
        Some(i) => t.checked_add(i).ok(),
        None => schedule.next_after(t),
    };
    let last = cron
        .annotations()
        .get(import::LAST_CRON_TIME)
        .and_then(|t| t.parse::<Timestamp>().ok());
    let due = match last {
        None => Some(now),
        Some(t) => next_after(t),
    };
    if due.is_none_or(|d| d > now) {
        return Ok((None, due, None));
    }
    let access = registry_access(ctx, cron, &url).await?;
    let result = state.poller.digest(&reference, &access).await;
    ctx.metrics.dataimportcron_polls.inc();
    ctx.metrics
        .dataimportcron_last_poll
        .get_or_create(&CronLabels {
            namespace: cron.namespace().unwrap_or_default(),
            cron_name: cron.name_any(),
        })
        .set(now.as_millisecond() as f64 / 1000.0);
    match result {
        Ok(digest) => {
            let mut changes = serde_json::Map::new();
            changes.insert(import::LAST_CRON_TIME.into(), now.to_string().into());
            if cron.annotations().get(import::SOURCE_DESIRED_DIGEST) != Some(&digest) {
                tracing::info!(digest, "The source has a new digest.");
                changes.insert(import::SOURCE_DESIRED_DIGEST.into(), digest.clone().into());
            }
            patch_metadata(crons, &cron.name_any(), json!({"annotations": changes})).await?;
            let annotations = cron.annotations_mut();
            annotations.insert(import::LAST_CRON_TIME.into(), now.to_string());
            annotations.insert(import::SOURCE_DESIRED_DIGEST.into(), digest);
            Ok((None, next_after(now), None))
        }
        Err(e) => {
            tracing::warn!(error = %e, "Polling the source failed.");
            ctx.publish(
                &cron.object_ref(&()),
                &EventSpec::warning(e.reason(), e.to_string()),
            )
            .await;
            let failure = PollFailure {
                reason: e.reason().into(),
                message: e.to_string(),
            };
            Ok((Some(failure), None, Some(e)))
        }
    }
}

/// The template's `registry.url`, when that is the source.
fn registry_url(cron: &DataImportCron) -> Option<String> {
    let registry = cron.spec.template.spec.source.as_ref()?.registry.as_ref()?;
    registry.url.clone().filter(|u| !u.is_empty())
}

/// The cron's credentials (`secretRef`), CAs (`certConfigMap`) and whether CDIConfig lists
/// the registry as insecure, read as the importer would be given them.
async fn registry_access(
    ctx: &Context,
    cron: &DataImportCron,
    url: &str,
) -> Result<RegistryAccess, Error> {
    let ns = cron.namespace().unwrap_or_default();
    let registry = cron
        .spec
        .template
        .spec
        .source
        .as_ref()
        .and_then(|s| s.registry.as_ref());
    let mut access = RegistryAccess {
        insecure: ctx.stores.effective_config().is_insecure_registry(url),
        ..RegistryAccess::default()
    };
    if let Some(name) = registry.and_then(|r| r.secret_ref.as_deref()) {
        let secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
            .get_opt(name)
            .await?;
        let field = |key: &str| {
            secret
                .as_ref()
                .and_then(|s| s.data.as_ref())
                .and_then(|d| d.get(key))
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        };
        if let (Some(user), Some(password)) = (field("accessKeyId"), field("secretKey")) {
            access.credentials = Some((user, password));
        }
    }
    if let Some(name) = registry.and_then(|r| r.cert_config_map.as_deref()) {
        let map = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
            .get_opt(name)
            .await?;
        for pem in map.iter().flat_map(|m| m.data.iter().flatten()) {
            access.ca_pem.extend_from_slice(pem.1.as_bytes());
            access.ca_pem.push(b'\n');
        }
    }
    Ok(access)
}

/// The DataVolume and claim of the import `status.currentImports` names.
async fn observe_import(
    ctx: &Context,
    ns: &str,
    cron: &DataImportCron,
) -> Result<ImportState, Error> {
    let Some(current) = cron
        .status
        .as_ref()
        .and_then(|s| s.current_imports.as_ref())
        .and_then(|i| i.first())
    else {
        return Ok(ImportState::default());
    };
    let name = &current.data_volume_name;
    let dv = Api::<DataVolume>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await?;
    let claim = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await?;
    let status = dv.as_ref().and_then(|d| d.status.as_ref());
    // Failed for good (our importer fails a DataVolume on terminal errors), or failing in a
    // way upstream deletes the import for when a new digest comes.
    let terminal = status
        .and_then(|s| s.phase.as_ref())
        .is_some_and(|p| p.as_str() == "Failed");
    let failed = terminal
        || status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.type_ == DataVolumeConditionType::Running)
            })
            .is_some_and(|c| {
                c.status == ConditionStatus::False
                    && matches!(c.reason.as_deref(), Some("Error" | "ImagePullFailed"))
            });
    // Without the snapshot API there is no snapshot.
    let snapshot =
        Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &snapshot_resource())
            .get_opt(name)
            .await
            .unwrap_or(None);
    Ok(ImportState {
        snapshot_ready: snapshot.map(|s| SnapshotFacts::of(&s).ready),
        data_volume_phase: dv.as_ref().map(|_| {
            status
                .and_then(|s| s.phase.as_ref())
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default()
        }),
        failed,
        claim_bound: claim
            .and_then(|c| c.status)
            .and_then(|s| s.phase)
            .is_some_and(|p| p == "Bound"),
    })
}

/// Where the cron's imports go: their StorageClass's profile says whether they are kept as
/// claims or snapshots (`dataImportCronSourceFormat`), and with which snapshot class.
struct StorageFacts {
    /// The template names a class, or there is a default one.
    class_known: bool,
    format: DataImportCronSourceFormat,
    snapshot_class: Option<String>,
    volume_mode: Option<String>,
}

impl StorageFacts {
    fn of(ctx: &Context, cron: &DataImportCron) -> StorageFacts {
        let spec = &cron.spec.template.spec;
        let named = spec
            .storage
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
            .or_else(|| spec.pvc.as_ref().and_then(|p| p.storage_class_name.clone()));
        let class = named.or_else(|| {
            let view = StorageView {
                classes: ctx.stores.all_storage_classes(),
                profiles: Vec::new(),
            };
            view.default_class().and_then(|c| c.metadata.name.clone())
        });
        let class_known = class.is_some();
        let status = class
            .and_then(|c| ctx.stores.storage_profile(&c))
            .and_then(|p| p.status.clone())
            .unwrap_or_default();
        StorageFacts {
            class_known,
            format: status
                .data_import_cron_source_format
                .unwrap_or(DataImportCronSourceFormat::Pvc),
            snapshot_class: status.snapshot_class,
            volume_mode: spec
                .storage
                .as_ref()
                .and_then(|s| s.volume_mode.as_ref())
                .map(|m| m.as_str().to_owned())
                .or_else(|| spec.pvc.as_ref().and_then(|p| p.volume_mode.clone())),
        }
    }
}

/// The snapshot format: snapshots import `name`'s claim (once), and when the snapshot is ready
/// deletes the DataVolume (its claim goes with it), as upstream keeps only the snapshot.
async fn keep_as_snapshot(
    ctx: &Context,
    cron: &DataImportCron,
    dvs: &Api<DataVolume>,
    name: &str,
    state: &ImportState,
    storage: &StorageFacts,
    now: Timestamp,
) -> Result<(), Error> {
    let ns = cron.namespace().unwrap_or_default();
    match state.snapshot_ready {
        None => {
            let snapshot = imports::render_snapshot(
                cron,
                name,
                storage.snapshot_class.as_deref(),
                storage.volume_mode.as_deref(),
                &now.to_string(),
            );
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), &ns, &snapshot_resource());
            objects::create_or_keep(&api, &snapshot).await?;
            tracing::info!(snapshot = %name, "Snapshotting the import.");
        }
        Some(true) if state.data_volume_phase.is_some() || state.claim_bound => {
            tracing::info!(dv = %name, "The snapshot is ready; deleting the import's DataVolume.");
            objects::delete_if_present(dvs, name).await?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// Records how long the import `name` took, from its DataVolume's creation to `now`.
async fn record_import_duration(
    ctx: &Context,
    dvs: &Api<DataVolume>,
    name: &str,
    now: Timestamp,
) -> Result<(), Error> {
    if let Some(created) = dvs
        .get_opt(name)
        .await?
        .and_then(|d| d.metadata.creation_timestamp)
    {
        let took = now.duration_since(created.0).as_secs_f64().max(0.0);
        ctx.metrics.dataimportcron_import_seconds.observe(took);
    }
    Ok(())
}

/// Marks import `name` as used now (garbage collection keeps the most recently used).
async fn touch(dvs: &Api<DataVolume>, name: &str, now: &str) -> Result<(), Error> {
    let annotations = json!({"annotations": {import::LAST_USE_TIME: now}});
    ignore_not_found(patch_metadata(dvs, name, annotations).await)
}

/// Deletes the cron's imports beyond `importsToKeep`, never the last import or the one in
/// progress.
async fn collect_garbage(
    ctx: &Context,
    cron: &DataImportCron,
    dvs: &Api<DataVolume>,
    status: &cdi_crds::dataimportcron::DataImportCronStatus,
) -> Result<(), Error> {
    let Some(keep) = imports::imports_to_keep(cron) else {
        return Ok(());
    };
    let selector = format!("{}={}", labels::DATA_IMPORT_CRON, cron.name_any());
    let list = dvs.list(&ListParams::default().labels(&selector)).await?;
    let candidates = list
        .items
        .iter()
        .map(|d| Import {
            name: d.name_any(),
            last_use: d
                .annotations()
                .get(import::LAST_USE_TIME)
                .cloned()
                .or_else(|| {
                    d.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                })
                .unwrap_or_default(),
        })
        .collect();
    let mut protected: Vec<&str> = Vec::new();
    if let Some(last) = &status.last_imported_pvc {
        protected.push(&last.name);
    }
    for i in status.current_imports.iter().flatten() {
        protected.push(&i.data_volume_name);
    }
    let snapshots: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &cron.namespace().unwrap_or_default(),
        &snapshot_resource(),
    );
    // Without the snapshot API there are no snapshots to collect.
    let snapshot_list = snapshots
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let snapshot_candidates = snapshot_list
        .iter()
        .map(|s| Import {
            name: s.name_any(),
            last_use: s
                .annotations()
                .get(import::LAST_USE_TIME)
                .cloned()
                .unwrap_or_default(),
        })
        .collect();
    for name in imports::to_collect(snapshot_candidates, keep, &protected) {
        tracing::info!(snapshot = %name, keep, "Deleting an outdated snapshot import.");
        objects::delete_if_present(&snapshots, &name).await?;
    }
    for name in imports::to_collect(candidates, keep, &protected) {
        tracing::info!(dv = %name, keep, "Deleting an outdated import.");
        objects::delete_if_present(dvs, &name).await?;
        ctx.publish(
            &cron.object_ref(&()),
            &EventSpec::normal(
                "OutdatedImportDeleted",
                format!("Deleted DataVolume {name}: more than {keep} imports"),
            ),
        )
        .await;
    }
    Ok(())
}

/// Creates the managed DataSource, or points it at the newest import; one another cron made
/// is left alone (event `ErrDataSourceAlreadyManaged`).
async fn update_data_source(
    ctx: &Context,
    cron: &DataImportCron,
    last: Option<&DataVolumeSourcePvc>,
    format: &DataImportCronSourceFormat,
) -> Result<(), Error> {
    let ns = cron.namespace().unwrap_or_default();
    let api: Api<DataSource> = Api::namespaced(ctx.client.clone(), &ns);
    let name = &cron.spec.managed_data_source;
    let existing = api.get_opt(name).await?;
    if !imports::manages(cron, existing.as_ref()) {
        ctx.publish(
            &cron.object_ref(&()),
            &EventSpec::warning(
                "ErrDataSourceAlreadyManaged",
                format!(
                    "DataSource {ns}/{name} is managed by another DataImportCron; this one \
                     leaves it alone"
                ),
            ),
        )
        .await;
        return Ok(());
    }
    let desired = imports::render_data_source(cron, last, format);
    let Some(existing) = existing else {
        let ds: DataSource =
            serde_json::from_value(desired).map_err(|source| Error::Serialize {
                what: "the managed DataSource",
                source,
            })?;
        return objects::create_or_keep(&api, &ds).await;
    };
    let Some(pvc) = last else {
        return Ok(());
    };
    let source = &desired["spec"]["source"];
    let points = serde_json::to_value(&existing.spec.source).ok().as_ref() == Some(source);
    let labelled = imports::owned_labels(cron)
        .iter()
        .all(|(k, v)| existing.labels().get(k) == Some(v));
    if points && labelled {
        return Ok(());
    }
    let mut replaced = json!({"pvc": null, "snapshot": null, "dataSource": null});
    for (k, v) in source.as_object().into_iter().flatten() {
        replaced[k] = v.clone();
    }
    let patch = json!({
        "metadata": {"labels": desired["metadata"]["labels"]},
        "spec": {"source": replaced},
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(ds = %name, pvc = %pvc.name, "The DataSource points at the newest import.");
    Ok(())
}

/// A cron being deleted: with `retentionPolicy: None` its DataVolumes (their claims go with
/// them) and its DataSource are deleted; then the finalizer is removed.
async fn finalize(
    cron: &DataImportCron,
    ctx: &Context,
    ns: &str,
    crons: &Api<DataImportCron>,
) -> Result<Action, Error> {
    clear_outdated(ctx, cron);
    if !cron.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    if imports::retains_nothing(cron) {
        let selector = format!(
            "{}={},{}=true",
            labels::DATA_IMPORT_CRON,
            cron.name_any(),
            imports::CLEANUP_LABEL
        );
        let dvs: Api<DataVolume> = Api::namespaced(ctx.client.clone(), ns);
        for dv in dvs.list(&ListParams::default().labels(&selector)).await? {
            objects::delete_if_present(&dvs, &dv.name_any()).await?;
        }
        let snapshots: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &snapshot_resource());
        // Without the snapshot API there are none.
        if let Ok(list) = snapshots
            .list(&ListParams::default().labels(&selector))
            .await
        {
            for snapshot in list.items {
                objects::delete_if_present(&snapshots, &snapshot.name_any()).await?;
            }
        }
        let sources: Api<DataSource> = Api::namespaced(ctx.client.clone(), ns);
        for ds in sources
            .list(&ListParams::default().labels(&selector))
            .await?
        {
            objects::delete_if_present(&sources, &ds.name_any()).await?;
        }
        tracing::info!("Deleted the cron's imports and DataSource (retentionPolicy None).");
    }
    let finalizers: Vec<&String> = cron
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    ignore_not_found(
        patch_metadata(crons, &cron.name_any(), json!({"finalizers": finalizers})).await,
    )?;
    Ok(Action::await_change())
}

/// Merges `metadata` into object `name`'s metadata (a JSON merge patch: lists are replaced).
async fn patch_metadata<K>(
    api: &Api<K>,
    name: &str,
    metadata: serde_json::Value,
) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({ "metadata": metadata });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// `kubevirt_cdi_dataimportcron_outdated` of `cron`: one series, labelled `pending` as upstream.
fn set_outdated(ctx: &Context, cron: &DataImportCron, outdated: bool, pending: bool) {
    let labels = |pending: bool| CronOutdatedLabels {
        namespace: cron.namespace().unwrap_or_default(),
        cron_name: cron.name_any(),
        pending: pending.to_string(),
    };
    let family = &ctx.metrics.dataimportcron_outdated;
    family.remove(&labels(!pending));
    family
        .get_or_create(&labels(pending))
        .set(i64::from(outdated));
}

/// Drops `cron`'s outdated series (a deleted cron no longer alerts).
fn clear_outdated(ctx: &Context, cron: &DataImportCron) {
    for pending in [false, true] {
        ctx.metrics
            .dataimportcron_outdated
            .remove(&CronOutdatedLabels {
                namespace: cron.namespace().unwrap_or_default(),
                cron_name: cron.name_any(),
                pending: pending.to_string(),
            });
    }
}

fn ignore_not_found(result: Result<(), kube::Error>) -> Result<(), Error> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map_err(Error::from),
    }
}
