//! Applies the DataSource controller's decisions: reads the claim (and its DataVolume) or the
//! snapshot a DataSource resolves to, and writes the status [`status`](super::status) computes
//! by server-side apply when it changed. DataSources are looked at again when a claim, a
//! DataVolume or a DataSource they depend on changes; snapshots are not watched, so a
//! DataSource waiting for one is polled.

use std::sync::Arc;
use std::time::Duration;

use cdi_crds::{DataSource, DataVolume};
use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::status::{self, Target, TargetState};
use crate::clone::flow::{SnapshotFacts, snapshot_resource};
use crate::context::object_key;
use crate::{Context, Error};

const CONTROLLER: &str = "datasource";
/// How often a DataSource waiting for a snapshot looks again.
const SNAPSHOT_POLL: Duration = Duration::from_secs(10);

/// Runs the DataSource controller until `shutdown` resolves.
pub async fn run(
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<DataSource>::all(client.clone()),
        watcher::Config::default(),
    )
    .trigger_backoff(crate::backoff::watch_backoff());
    let store = controller.store();
    let (by_claim, by_dv, by_ds) = (store.clone(), store.clone(), store.clone());
    controller
        .watches(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
            move |claim| {
                dependents(
                    &by_claim,
                    &claim.namespace().unwrap_or_default(),
                    &claim.name_any(),
                )
            },
        )
        .watches(
            Api::<DataVolume>::all(client.clone()),
            watcher::Config::default(),
            move |dv| dependents(&by_dv, &dv.namespace().unwrap_or_default(), &dv.name_any()),
        )
        .watches(
            Api::<DataSource>::all(client.clone()),
            watcher::Config::default(),
            move |ds| referrers(&by_ds, &ds.namespace().unwrap_or_default(), &ds.name_any()),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// DataSources naming claim (or DataVolume) `namespace/name` directly or through another.
fn dependents(
    store: &Store<DataSource>,
    namespace: &str,
    name: &str,
) -> Vec<ObjectRef<DataSource>> {
    let all = store.state();
    let lookup = |ns: &str, n: &str| {
        all.iter()
            .find(|d| d.namespace().as_deref() == Some(ns) && d.name_any() == n)
            .map(|d| (**d).clone())
    };
    all.iter()
        .filter(|ds| {
            matches!(status::resolve(ds, lookup),
                Ok((Target::Pvc { namespace: ns, name: n }, _)) if ns == namespace && n == name)
        })
        .map(|ds| ObjectRef::from_obj(ds.as_ref()))
        .collect()
}

/// DataSources that refer to DataSource `namespace/name`.
fn referrers(store: &Store<DataSource>, namespace: &str, name: &str) -> Vec<ObjectRef<DataSource>> {
    store
        .state()
        .iter()
        .filter(|ds| {
            ds.namespace().as_deref() == Some(namespace)
                && ds
                    .spec
                    .source
                    .data_source
                    .as_ref()
                    .is_some_and(|r| r.name == name)
        })
        .map(|ds| ObjectRef::from_obj(ds.as_ref()))
        .collect()
}

async fn reconcile(ds: Arc<DataSource>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.reconciled(
        CONTROLLER,
        &object_key(ds.as_ref()),
        reconcile_ds(&ds, &ctx),
    )
    .await
}

fn error_policy(ds: Arc<DataSource>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry_after(CONTROLLER, &object_key(ds.as_ref()), error)
}

#[tracing::instrument(skip_all, fields(ds = %ds.name_any(), ns = ds.namespace().unwrap_or_default()))]
async fn reconcile_ds(ds: &DataSource, ctx: &Context) -> Result<Action, Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds
        .namespace()
        .ok_or(Error::MissingObjectKey(".metadata.namespace"))?;
    let api: Api<DataSource> = Api::namespaced(ctx.client.clone(), &ns);
    let referenced = match &ds.spec.source.data_source {
        Some(r) if r.namespace.is_empty() || r.namespace == ns => api.get_opt(&r.name).await?,
        _ => None,
    };
    let resolved = status::resolve(ds, |_, name| {
        referenced.clone().filter(|r| r.name_any() == name)
    });
    let mut poll = false;
    let readiness = match &resolved {
        Ok((target, _)) => {
            let state = observe(ctx, target).await?;
            poll = matches!(target, Target::Snapshot { .. }) && !state.snapshot_ready;
            Some(status::readiness(target, &state))
        }
        Err(_) => None,
    };
    let now = Time(Timestamp::now());
    let new = match (&resolved, readiness) {
        (Ok((_, source)), Some(ready)) => status::compute(ds, Ok((source, ready)), &now),
        (Err(u), _) => status::compute(ds, Err(u), &now),
        (Ok(_), None) => return Ok(Action::await_change()),
    };
    if ds.status.as_ref() != Some(&new) {
        let apply = serde_json::json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1",
            "kind": "DataSource",
            "status": new,
        });
        // DataSources have no status subresource (as upstream): the status is applied on
        // the object.
        api.patch(
            &ds.name_any(),
            &PatchParams::apply(crate::FIELD_MANAGER).force(),
            &Patch::Apply(&apply),
        )
        .await?;
    }
    Ok(if poll {
        Action::requeue(SNAPSHOT_POLL)
    } else {
        Action::await_change()
    })
}

/// The state of the claim (and the DataVolume of the same name that fills it) or snapshot.
async fn observe(ctx: &Context, target: &Target) -> Result<TargetState, Error> {
    Ok(match target {
        Target::Pvc { namespace, name } => {
            let claim = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), namespace)
                .get_opt(name)
                .await?;
            let dv = match &claim {
                Some(_) => {
                    Api::<DataVolume>::namespaced(ctx.client.clone(), namespace)
                        .get_opt(name)
                        .await?
                }
                None => None,
            };
            TargetState {
                exists: claim.is_some(),
                data_volume_phase: dv.map(|d| {
                    d.status
                        .and_then(|s| s.phase)
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_else(|| "Pending".to_owned())
                }),
                snapshot_ready: false,
            }
        }
        Target::Snapshot { namespace, name } => {
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), namespace, &snapshot_resource());
            // Without the snapshot API there is no snapshot.
            let snapshot = api.get_opt(name).await.unwrap_or(None);
            TargetState {
                exists: snapshot.is_some(),
                data_volume_phase: None,
                snapshot_ready: snapshot.is_some_and(|s| SnapshotFacts::of(&s).ready),
            }
        }
    })
}
