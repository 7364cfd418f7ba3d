//! Keeps one StorageProfile per StorageClass: created when missing (owned by the class, so it
//! goes with it), its status applied when it changes, and its info metric set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cdi_crds::storageprofile::StorageProfile;
use futures::StreamExt;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::status::{info_labels, profile_annotations, profile_status};
use crate::datavolume::plan::cdi_labels;
use crate::{Context, Error, FIELD_MANAGER};

const CONTROLLER: &str = "storageprofile";

/// Runs the StorageProfile controller until `shutdown` resolves.
pub async fn run(
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let profiles: Api<StorageProfile> = Api::all(ctx.client.clone());
    Controller::new(classes, watcher::Config::default())
        .watches(profiles, watcher::Config::default(), |p| {
            Some(ObjectRef::<StorageClass>::new(&p.name_any()))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile(sc: Arc<StorageClass>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_class(&sc, &ctx).await;
    ctx.metrics.observe_reconcile(
        CONTROLLER,
        started.elapsed(),
        result.as_ref().err().map(Error::metric_label),
    );
    result
}

fn error_policy(sc: Arc<StorageClass>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(class = %sc.name_any(), %error, "StorageProfile reconcile failed; retrying.");
    Action::requeue(Duration::from_secs(5))
}

/// Whether a VolumeSnapshotClass serves `driver` (none when the snapshot API is not installed).
async fn snapshot_class_exists(client: &kube::Client, driver: &str) -> bool {
    let gvk = GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshotClass");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .any(|c| c.data.get("driver").and_then(|d| d.as_str()) == Some(driver)),
        Err(_) => false,
    }
}

#[tracing::instrument(skip_all, fields(class = %sc.name_any()))]
async fn reconcile_class(sc: &StorageClass, ctx: &Context) -> Result<Action, Error> {
    let name = sc
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingObjectKey(".metadata.name"))?;
    if sc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<StorageProfile> = Api::all(ctx.client.clone());
    let profile = match api.get_opt(&name).await? {
        Some(p) => p,
        None => {
            let mut p = StorageProfile::new(&name, Default::default());
            let mut labels = cdi_labels();
            labels.insert(
                "app.kubernetes.io/managed-by".into(),
                crate::FIELD_MANAGER.into(),
            );
            p.metadata.labels = Some(labels);
            p.metadata.owner_references = sc.controller_owner_ref(&()).map(|o| vec![o]);
            match api.create(&PostParams::default(), &p).await {
                Ok(created) => {
                    tracing::info!("StorageProfile created.");
                    created
                }
                Err(kube::Error::Api(s)) if s.code == 409 => api.get(&name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };

    let missing_annotations: Vec<(String, String)> = profile_annotations(sc)
        .into_iter()
        .filter(|(k, v)| profile.annotations().get(k) != Some(v))
        .collect();
    if !missing_annotations.is_empty() {
        let annotations: serde_json::Map<String, serde_json::Value> = missing_annotations
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "metadata": { "annotations": annotations } })),
        )
        .await?;
    }

    let snapshot = snapshot_class_exists(&ctx.client, &sc.provisioner).await;
    let status = profile_status(
        sc,
        &profile.spec,
        snapshot,
        profile.status.as_ref(),
        Time(Timestamp::now()),
    );
    ctx.metrics
        .storageprofile_info
        .get_or_create(&info_labels(sc, &status))
        .set(1);
    if profile.status.as_ref() != Some(&status) {
        let patch = serde_json::json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1",
            "kind": "StorageProfile",
            "status": status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        tracing::info!("StorageProfile status updated.");
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}
