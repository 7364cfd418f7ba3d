//! Keeps one StorageProfile per StorageClass.
//!
//! ```text
//!  StorageClass ────────┐                           ┌─► create the profile if missing
//!  StorageProfile ──────┼─► reconcile_class ────────┼─► merge-patch labels and annotations
//!  VolumeSnapshotClass ─┘   (pure: status, snapshot, ├─► apply the status when it changed
//!                            metadata)               └─► set storageprofile_info
//!  StorageProfile ─┐
//!  StorageClass ───┴─► collect_orphan ──► delete the profile of a deleted class
//! ```
//!
//! Two controllers, because kube's controller only reconciles objects it still has: the class
//! controller never hears of a deleted class, so a profile controller removes profiles whose
//! class is gone (also those of classes deleted while cdi-controller was down).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdi_crds::storageprofile::{StorageProfile, StorageProfileSpec};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::snapshot::{self, SnapshotClass};
use super::{metadata, status};
use crate::metrics::StorageProfileLabels;
use crate::{Context, Error, FIELD_MANAGER};

const CONTROLLER: &str = "storageprofile";

/// The ConfigMap whose controlling owner (the CDI resource) upstream makes the owner of every
/// StorageProfile it creates, so that removing CDI removes them.
const CDI_CONFIG_MAP: &str = "cdi-config";

/// Reconcile every class this often even without a change: catches VolumeSnapshotClasses when
/// their API appeared after start (they are watched only if it was there).
const RESYNC: Duration = Duration::from_secs(600);

/// Runs the StorageProfile controllers until `shutdown` resolves.
pub async fn run(
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    let client = ctx.client.clone();
    let state = Arc::new(State::new(ctx));
    let classes: Api<StorageClass> = Api::all(client.clone());
    let profiles: Api<StorageProfile> = Api::all(client.clone());

    let mut class_controller = Controller::new(classes.clone(), watcher::Config::default())
        .trigger_backoff(crate::backoff::watch_backoff())
        // Spec edits (and deletions) of a profile re-reconcile its class.
        .watches(profiles.clone(), watcher::Config::default(), |p| {
            Some(ObjectRef::<StorageClass>::new(&p.name_any()))
        });
    if snapshot_classes_served(&client).await {
        let store = class_controller.store();
        let resource = snapshot_class_resource();
        class_controller = class_controller.watches_with(
            Api::all_with(client.clone(), &resource),
            resource,
            watcher::Config::default(),
            move |vsc: DynamicObject| {
                let driver = vsc
                    .data
                    .get("driver")
                    .and_then(|d| d.as_str())
                    .map(str::to_owned);
                store
                    .state()
                    .into_iter()
                    .filter(|sc| Some(&sc.provisioner) == driver.as_ref())
                    .map(|sc| ObjectRef::from_obj(&*sc))
                    .collect::<Vec<_>>()
            },
        );
    } else {
        tracing::info!(
            "The VolumeSnapshotClass API is not served; StorageProfiles assume no snapshot \
             classes and are rechecked every {} s.",
            RESYNC.as_secs()
        );
    }
    let classes_done = class_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, state.clone())
        .for_each(|_| futures::future::ready(()));

    let orphans_done = Controller::new(profiles, watcher::Config::default())
        .trigger_backoff(crate::backoff::watch_backoff())
        .watches(classes, watcher::Config::default(), |sc| {
            Some(ObjectRef::<StorageProfile>::new(&sc.name_any()))
        })
        .graceful_shutdown_on(shutdown)
        .run(collect_orphan, orphan_error_policy, state)
        .for_each(|_| futures::future::ready(()));

    futures::join!(classes_done, orphans_done);
}

/// What the reconciles share besides the context: the info series set per class (to remove
/// them when the labels change or the class goes).
struct State {
    ctx: Context,
    series: Mutex<HashMap<String, StorageProfileLabels>>,
}

impl State {
    fn new(ctx: Context) -> State {
        State {
            ctx,
            series: Mutex::default(),
        }
    }

    /// Makes `labels` the one info series of `class`.
    fn set_info(&self, class: &str, labels: StorageProfileLabels) {
        let family = &self.ctx.metrics.storageprofile_info;
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = series.get(class)
            && *old != labels
        {
            family.remove(old);
        }
        family.get_or_create(&labels).set(1);
        series.insert(class.to_owned(), labels);
    }

    /// Removes the info series of `class`.
    fn remove_info(&self, class: &str) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = series.remove(class) {
            self.ctx.metrics.storageprofile_info.remove(&old);
        }
    }
}

async fn reconcile(sc: Arc<StorageClass>, state: Arc<State>) -> Result<Action, Error> {
    let key = format!("class/{}", sc.name_any());
    state
        .ctx
        .reconciled(CONTROLLER, &key, reconcile_class(&sc, &state))
        .await
}

fn error_policy(sc: Arc<StorageClass>, error: &Error, state: Arc<State>) -> Action {
    let key = format!("class/{}", sc.name_any());
    state.ctx.retry_after(CONTROLLER, &key, error)
}

#[tracing::instrument(skip_all, fields(class = %sc.name_any()))]
async fn reconcile_class(sc: &StorageClass, state: &State) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let name = sc
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingObjectKey(".metadata.name"))?;
    let profiles: Api<StorageProfile> = Api::all(ctx.client.clone());
    if sc.metadata.deletion_timestamp.is_some() {
        delete_profile(&profiles, name, state).await?;
        return Ok(Action::await_change());
    }

    let profile = match profiles.get_opt(name).await? {
        Some(p) => p,
        None => create_profile(&profiles, name, ctx).await?,
    };
    let snapshot_classes = list_snapshot_classes(&ctx.client).await?;

    if let Some(patch) = metadata_patch(&profile, sc, &snapshot_classes) {
        profiles
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tracing::info!(patch = %patch, "StorageProfile labels or annotations updated.");
    }

    if let Some(problem) = status::spec_problem(&profile.spec) {
        // Upstream fails the reconcile over and over; the admin's edit will trigger us again.
        tracing::warn!(%problem, "StorageProfile spec is not valid; its status is left as it is.");
        return Ok(Action::await_change());
    }

    let selected = snapshot::select_snapshot_class(sc, &profile.spec, &snapshot_classes);
    let mut new_status = status::profile_status(sc, &profile.spec, selected.is_some());
    new_status.snapshot_class = selected;
    status::stamp_conditions(
        &mut new_status,
        profile.status.as_ref(),
        &Time(Timestamp::now()),
    );
    if profile.status.as_ref() != Some(&new_status) {
        let patch = serde_json::json!({
            "apiVersion": StorageProfile::api_version(&()),
            "kind": StorageProfile::kind(&()),
            "status": new_status,
        });
        profiles
            .patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        tracing::info!(
            clone_strategy = ?new_status.clone_strategy,
            claim_property_sets = new_status.claim_property_sets.as_ref().map_or(0, Vec::len),
            "StorageProfile status updated."
        );
    }

    state.set_info(
        name,
        status::info_labels(sc, &new_status, &snapshot_classes),
    );
    Ok(Action::requeue(RESYNC))
}

async fn create_profile(
    profiles: &Api<StorageProfile>,
    name: &str,
    ctx: &Context,
) -> Result<StorageProfile, Error> {
    let mut profile = StorageProfile::new(name, StorageProfileSpec::default());
    profile.metadata.labels = Some(metadata::profile_labels());
    profile.metadata.owner_references = install_owner(ctx).await.map(|o| vec![o]);
    match profiles.create(&PostParams::default(), &profile).await {
        Ok(created) => {
            tracing::info!("StorageProfile created.");
            Ok(created)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(profiles.get(name).await?),
        Err(e) => Err(e.into()),
    }
}

/// The owner upstream gives new profiles: the controlling owner of the `cdi-config` ConfigMap
/// in CDI's namespace (the CDI resource), if there is one.
async fn install_owner(ctx: &Context) -> Option<OwnerReference> {
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    match maps.get_opt(CDI_CONFIG_MAP).await {
        Ok(map) => map?
            .metadata
            .owner_references?
            .into_iter()
            .find(|o| o.controller == Some(true)),
        Err(e) => {
            tracing::debug!(error = %e, "Could not read the cdi-config ConfigMap; the profile gets no owner.");
            None
        }
    }
}

/// The merge patch adding missing labels and changing annotations, if any are needed.
fn metadata_patch(
    profile: &StorageProfile,
    sc: &StorageClass,
    snapshot_classes: &[SnapshotClass],
) -> Option<serde_json::Value> {
    let labels: BTreeMap<String, String> = metadata::profile_labels()
        .into_iter()
        .filter(|(k, _)| !profile.labels().contains_key(k))
        .collect();
    let annotations = metadata::annotation_changes(sc, profile.annotations(), snapshot_classes);
    if labels.is_empty() && annotations.is_empty() {
        return None;
    }
    let mut metadata = serde_json::Map::new();
    if !labels.is_empty() {
        metadata.insert("labels".into(), serde_json::json!(labels));
    }
    if !annotations.is_empty() {
        // A null value removes the annotation.
        metadata.insert("annotations".into(), serde_json::json!(annotations));
    }
    Some(serde_json::json!({ "metadata": metadata }))
}

fn snapshot_class_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshotClass");
    ApiResource::from_gvk_with_plural(&gvk, "volumesnapshotclasses")
}

/// Whether the cluster serves VolumeSnapshotClasses (the external-snapshotter CRDs are
/// optional).
async fn snapshot_classes_served(client: &kube::Client) -> bool {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &snapshot_class_resource());
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "VolumeSnapshotClasses cannot be listed.");
            false
        }
    }
}

/// Every VolumeSnapshotClass; none when their API is not installed (404).
async fn list_snapshot_classes(client: &kube::Client) -> Result<Vec<SnapshotClass>, Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &snapshot_class_resource());
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list
            .items
            .iter()
            .filter_map(SnapshotClass::from_object)
            .collect()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the profile of the class `name` and its info series.
async fn delete_profile(
    profiles: &Api<StorageProfile>,
    name: &str,
    state: &State,
) -> Result<(), Error> {
    match profiles.delete(name, &DeleteParams::default()).await {
        Ok(_) => tracing::info!(
            class = name,
            "StorageProfile of a deleted StorageClass removed."
        ),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    state.remove_info(name);
    Ok(())
}

async fn collect_orphan(profile: Arc<StorageProfile>, state: Arc<State>) -> Result<Action, Error> {
    let key = format!("profile/{}", profile.name_any());
    state
        .ctx
        .reconciled(CONTROLLER, &key, collect_orphan_profile(&profile, &state))
        .await
}

fn orphan_error_policy(profile: Arc<StorageProfile>, error: &Error, state: Arc<State>) -> Action {
    let key = format!("profile/{}", profile.name_any());
    state.ctx.retry_after(CONTROLLER, &key, error)
}

/// Deletes `profile` if its StorageClass is gone or going. Asks the API server rather than a
/// cache, so that a class deleted a moment ago is not taken for present.
#[tracing::instrument(skip_all, fields(profile = %profile.name_any()))]
async fn collect_orphan_profile(profile: &StorageProfile, state: &State) -> Result<Action, Error> {
    let name = profile
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingObjectKey(".metadata.name"))?;
    if profile.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let classes: Api<StorageClass> = Api::all(state.ctx.client.clone());
    match classes.get_opt(name).await? {
        Some(sc) if sc.metadata.deletion_timestamp.is_none() => {}
        _ => {
            let profiles: Api<StorageProfile> = Api::all(state.ctx.client.clone());
            delete_profile(&profiles, name, state).await?;
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::mock_context;
    use cdi_crds::annotations::storage_class as ann;

    const PROFILE: &str = "/apis/cdi.kubevirt.io/v1beta1/storageprofiles/local";
    const CLASS: &str = "/apis/storage.k8s.io/v1/storageclasses/local";
    const SNAPSHOT_CLASSES: &str = "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses";

    fn local_class() -> StorageClass {
        let mut sc = StorageClass {
            provisioner: "kubernetes.io/no-provisioner".into(),
            ..Default::default()
        };
        sc.metadata.name = Some("local".into());
        sc
    }

    fn state_with(
        objects: BTreeMap<String, serde_json::Value>,
    ) -> (State, crate::fixtures::MockApi) {
        let (ctx, api) = mock_context(objects);
        (State::new(ctx), api)
    }

    /// A state whose API server remembers what it is told, so a reconcile can run twice.
    fn stateful_server() -> (State, crate::fixtures::MockApi) {
        let (ctx, api) = crate::fixtures::stateful_mock_context();
        (State::new(ctx), api)
    }

    #[tokio::test]
    async fn missing_profile_is_created_and_its_status_applied() {
        let (state, api) = stateful_server();

        let action = reconcile_class(&local_class(), &state)
            .await
            .expect("reconciled");

        assert_eq!(action, Action::requeue(RESYNC));
        assert_eq!(
            api.calls(),
            [
                format!("GET {PROFILE}"),
                "GET /api/v1/namespaces/cdi/configmaps/cdi-config".to_string(),
                "POST /apis/cdi.kubevirt.io/v1beta1/storageprofiles".to_string(),
                format!("GET {SNAPSHOT_CLASSES}"),
                format!("PATCH {PROFILE}/status"),
            ]
        );
        let profiles: Api<StorageProfile> = Api::all(state.ctx.client.clone());
        let created = profiles.get("local").await.expect("created");
        assert_eq!(
            created
                .labels()
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("cdi-controller")
        );
        assert_eq!(
            created.labels().get("app").map(String::as_str),
            Some("containerized-data-importer")
        );
        assert_eq!(created.spec, StorageProfileSpec::default());
        let status = created.status.expect("a status");
        assert_eq!(status.storage_class.as_deref(), Some("local"));
        assert_eq!(
            serde_json::to_value(&status.claim_property_sets).expect("json"),
            serde_json::json!([{"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}])
        );
        assert_eq!(status.clone_strategy, Some(cdi_crds::CloneStrategy::Copy));
        let info = state.ctx.metrics.encode();
        assert!(
            info.contains(
                "kubevirt_cdi_storageprofile_info{storageclass=\"local\",provisioner=\"kubernetes.io/no-provisioner\",complete=\"true\""
            ),
            "{info}"
        );
    }

    #[tokio::test]
    async fn second_reconcile_writes_nothing() {
        let (state, api) = stateful_server();
        reconcile_class(&local_class(), &state)
            .await
            .expect("first reconcile");
        api.seen.lock().expect("lock").clear();

        reconcile_class(&local_class(), &state)
            .await
            .expect("second reconcile");

        assert_eq!(
            api.calls(),
            [format!("GET {PROFILE}"), format!("GET {SNAPSHOT_CLASSES}")]
        );
    }

    #[tokio::test]
    async fn up_to_date_profile_is_left_alone() {
        let sc = local_class();
        let mut current = StorageProfile::new("local", Default::default());
        current.metadata.labels = Some(metadata::profile_labels());
        let mut up_to_date = status::profile_status(&sc, &Default::default(), false);
        status::stamp_conditions(&mut up_to_date, None, &Time(Timestamp::UNIX_EPOCH));
        current.status = Some(up_to_date);
        let (state, api) = state_with(BTreeMap::from([(
            PROFILE.to_string(),
            serde_json::to_value(&current).expect("json"),
        )]));

        reconcile_class(&sc, &state).await.expect("reconciled");

        assert_eq!(
            api.calls(),
            [format!("GET {PROFILE}"), format!("GET {SNAPSHOT_CLASSES}")]
        );
    }

    #[tokio::test]
    async fn spec_edit_is_reflected_in_the_status() {
        let sc = local_class();
        let mut current = StorageProfile::new(
            "local",
            serde_json::from_value(serde_json::json!({
                "claimPropertySets": [{"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"}],
                "cloneStrategy": "csi-clone"
            }))
            .expect("a spec"),
        );
        current.metadata.labels = Some(metadata::profile_labels());
        let (state, api) = state_with(BTreeMap::from([(
            PROFILE.to_string(),
            serde_json::to_value(&current).expect("json"),
        )]));

        reconcile_class(&sc, &state).await.expect("reconciled");

        let applied = api.body("PATCH", "/local/status").expect("a status");
        assert_eq!(
            applied["status"]["claimPropertySets"],
            serde_json::json!([{"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"}])
        );
        assert_eq!(applied["status"]["cloneStrategy"], "csi-clone");
    }

    #[tokio::test]
    async fn snapshot_class_of_the_driver_is_selected_and_table_annotations_added() {
        let mut sc = local_class();
        sc.provisioner = "pd.csi.storage.gke.io".into();
        let mut current = StorageProfile::new("local", Default::default());
        current.metadata.labels = Some(metadata::profile_labels());
        let snapshot_classes = serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotClassList",
            "metadata": {},
            "items": [{
                "apiVersion": "snapshot.storage.k8s.io/v1",
                "kind": "VolumeSnapshotClass",
                "metadata": {"name": "pd-images"},
                "driver": "pd.csi.storage.gke.io",
                "deletionPolicy": "Delete",
                "parameters": {"snapshot-type": "images"}
            }]
        });
        let (state, api) = state_with(BTreeMap::from([
            (
                PROFILE.to_string(),
                serde_json::to_value(&current).expect("json"),
            ),
            (SNAPSHOT_CLASSES.to_string(), snapshot_classes),
        ]));

        reconcile_class(&sc, &state).await.expect("reconciled");

        let merged = api
            .requests()
            .into_iter()
            .find(|s| s.method == "PATCH" && s.path == PROFILE)
            .expect("a metadata patch")
            .body;
        assert_eq!(
            merged["metadata"]["annotations"][ann::SNAPSHOT_CLASS_FOR_DATA_IMPORT_CRON],
            "pd-images"
        );
        assert_eq!(
            merged["metadata"]["annotations"][ann::USE_READ_WRITE_ONCE_FOR_DATA_IMPORT_CRON],
            "true"
        );
        let applied = api.body("PATCH", "/local/status").expect("a status");
        assert_eq!(applied["status"]["snapshotClass"], "pd-images");
        assert_eq!(applied["status"]["cloneStrategy"], "snapshot");
        assert_eq!(applied["status"]["dataImportCronSourceFormat"], "snapshot");
    }

    #[tokio::test]
    async fn deleting_class_deletes_the_profile_and_its_series() {
        let (state, api) = state_with(BTreeMap::new());
        state.set_info(
            "local",
            status::info_labels(
                &local_class(),
                &status::profile_status(&local_class(), &Default::default(), false),
                &[],
            ),
        );
        let mut sc = local_class();
        sc.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));

        let action = reconcile_class(&sc, &state).await.expect("reconciled");

        assert_eq!(action, Action::await_change());
        assert_eq!(api.calls(), [format!("DELETE {PROFILE}")]);
        assert!(
            !state
                .ctx
                .metrics
                .encode()
                .contains("storageclass=\"local\""),
            "the series is removed"
        );
    }

    #[tokio::test]
    async fn profile_of_a_missing_class_is_deleted() {
        let (state, api) = state_with(BTreeMap::new());
        let profile = StorageProfile::new("local", Default::default());

        collect_orphan_profile(&profile, &state)
            .await
            .expect("reconciled");

        assert_eq!(
            api.calls(),
            [format!("GET {CLASS}"), format!("DELETE {PROFILE}")]
        );
    }

    #[tokio::test]
    async fn profile_of_an_existing_class_is_kept() {
        let class = serde_json::to_value(local_class()).expect("json");
        let (state, api) = state_with(BTreeMap::from([(CLASS.to_string(), class)]));
        let profile = StorageProfile::new("local", Default::default());

        collect_orphan_profile(&profile, &state)
            .await
            .expect("reconciled");

        assert_eq!(api.calls(), [format!("GET {CLASS}")]);
    }
}
