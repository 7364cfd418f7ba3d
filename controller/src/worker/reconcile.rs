//! Applies the worker controller's decisions: creates the worker pod (and, for uploads, its
//! Service and TLS Secret) once the claim may be used, copies the pod's state onto the claim,
//! and deletes the pod when the transfer succeeded, failed for good, or the claim is going away.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cdi_crds::annotations::{clone, condition, content, import, pod as pod_ann, switches};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::cloner::{self, CloneRequest};
use super::state::{Next, observe};
use super::{WorkerKind, importer, pod, upload};
use crate::apply;
use crate::context::{EventSpec, object_key};
use crate::metrics::ControllerLabels;
use crate::objects::{create_or_keep, delete_if_present};
use crate::{Context, Error, naming};

const CONTROLLER: &str = "worker";
/// Label selecting what the controller creates (claims, pods, Services, Secrets).
const CDI_SELECTOR: &str = "app=containerized-data-importer";
/// Label selecting cloner pods.
const CLONE_SOURCE_SELECTOR: &str = "cdi.kubevirt.io=cdi-clone-source";

/// Runs the worker controller until `shutdown` resolves.
pub async fn run(
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let owned = || watcher::Config::default().labels(CDI_SELECTOR);
    Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .trigger_backoff(crate::backoff::watch_backoff())
    .owns(Api::<Pod>::all(client.clone()), owned())
    .owns(Api::<Service>::all(client.clone()), owned())
    .owns(Api::<Secret>::all(client.clone()), owned())
    // A cloner pod in another namespace than its target claim cannot be owned by it.
    .watches(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(CLONE_SOURCE_SELECTOR),
        |pod| {
            let (ns, name) = pod
                .annotations()
                .get(clone::CLONE_TARGET)?
                .split_once('/')?;
            Some(ObjectRef::new(name).within(ns))
        },
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, Arc::new(ctx))
    .for_each(|_| futures::future::ready(()))
    .await;
}

async fn reconcile(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(kind) = WorkerKind::of_claim(&claim) else {
        return Ok(Action::await_change());
    };
    ctx.reconciled(
        CONTROLLER,
        &object_key(claim.as_ref()),
        reconcile_claim(&claim, kind, &ctx),
    )
    .await
}

fn error_policy(claim: Arc<PersistentVolumeClaim>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry_after(CONTROLLER, &object_key(claim.as_ref()), error)
}

#[tracing::instrument(skip_all, fields(claim = %claim.name_any(), ns = claim.namespace().unwrap_or_default()))]
async fn reconcile_claim(
    claim: &PersistentVolumeClaim,
    kind: WorkerKind,
    ctx: &Context,
) -> Result<Action, Error> {
    let ns = claim
        .namespace()
        .ok_or(Error::MissingObjectKey(".metadata.namespace"))?;
    let name = claim
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingObjectKey(".metadata.name"))?;
    let a = claim.metadata.annotations.clone().unwrap_or_default();
    let is = |k: &str, v: &str| a.get(k).is_some_and(|x| x == v);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_name = kind.pod_name(&name);
    let retain = is(pod_ann::RETAIN_AFTER_COMPLETION, "true");

    if claim.metadata.deletion_timestamp.is_some() {
        // The claim is protected while a pod uses it; the pod must go first.
        ctx.worker_backoff.forget(claim);
        cleanup(ctx, claim, kind, false).await?;
        return Ok(Action::await_change());
    }
    let done = is(pod_ann::PHASE, "Succeeded");
    if done || is(import::FATAL_ERROR, "true") {
        ctx.worker_backoff.forget(claim);
        if !(done && retain) {
            cleanup(ctx, claim, kind, false).await?;
        }
        return Ok(Action::await_change());
    }
    if !StartGate::of(claim, &a, ctx).open() {
        return Ok(Action::await_change());
    }

    let Some(pod) = pods.get_opt(&pod_name).await? else {
        if let Some(wait) = ctx.worker_backoff.wait(claim) {
            return Ok(Action::requeue(wait));
        }
        // The cached claim may lag behind what this controller wrote (the pod just finished
        // and was deleted): only the claim as it is now can say a new pod is due.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        match claims.get_opt(&name).await? {
            Some(now) if still_to_fill(&now) => {}
            _ => return Ok(Action::await_change()),
        }
        create_worker(claim, kind, ctx, &ns).await?;
        ctx.worker_backoff.created(claim);
        patch_annotations(ctx, claim, &kind.created_annotations(&pod_name), None).await?;
        return Ok(Action::await_change());
    };
    if !owned_by(&pod, claim) {
        ctx.publish(
            &claim.object_ref(&()),
            &kind.target_in_use(&pod_name, &name),
        )
        .await;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }

    let (mut update, next) = observe(&pod, kind);
    let claim_ref = claim.object_ref(&());
    match next {
        Next::Wait => {
            patch_annotations(ctx, claim, &update, None).await?;
            if kind == WorkerKind::CloneTarget {
                let ready = update.get(pod_ann::READY).is_some_and(|r| r == "true");
                if let Some(action) = drive_clone_source(ctx, claim, &pod, ready).await? {
                    return Ok(action);
                }
            }
        }
        Next::Complete {
            preallocation_applied,
            labels,
        } => {
            if preallocation_applied {
                update.insert(content::PREALLOCATION_APPLIED.into(), "true".into());
            }
            patch_annotations(ctx, claim, &update, Some(&labels)).await?;
            ctx.publish(&claim_ref, &kind.claim_succeeded()).await;
            tracing::info!(pod = %pod_name, "Transfer complete.");
            ctx.worker_backoff.forget(claim);
            if !retain {
                cleanup(ctx, claim, kind, false).await?;
            }
        }
        Next::Fail { reason, message } => {
            patch_annotations(ctx, claim, &update, None).await?;
            ctx.publish(&claim_ref, &kind.claim_failed(&message)).await;
            tracing::warn!(pod = %pod_name, %reason, %message, "Transfer failed for good; not retrying.");
            cleanup(ctx, claim, kind, false).await?;
        }
        Next::Recreate => {
            patch_annotations(ctx, claim, &update, None).await?;
            tracing::warn!(pod = %pod_name, "Worker pod ended without finishing; recreating it.");
            cleanup(ctx, claim, kind, true).await?;
            return Ok(Action::requeue(
                ctx.worker_backoff
                    .wait(claim)
                    .unwrap_or(Duration::from_secs(1)),
            ));
        }
    }
    Ok(Action::await_change())
}

/// Whether `claim` still needs its worker: not being deleted, not done, not failed for good.
fn still_to_fill(claim: &PersistentVolumeClaim) -> bool {
    let a = claim.metadata.annotations.as_ref();
    let is = |k: &str, v: &str| a.and_then(|a| a.get(k)).is_some_and(|x| x == v);
    claim.metadata.deletion_timestamp.is_none()
        && !is(pod_ann::PHASE, "Succeeded")
        && !is(import::FATAL_ERROR, "true")
}

/// What decides whether a claim's worker pod may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StartGate {
    /// The claim is Bound.
    bound: bool,
    /// The claim's StorageClass binds on the first consumer.
    wait_for_first_consumer: bool,
    /// The claim asks for immediate binding (`cdi.kubevirt.io/storage.bind.immediate.requested`).
    immediate_binding: bool,
    /// CDIConfig's `HonorWaitForFirstConsumer` feature gate.
    honor_wait_for_first_consumer: bool,
}

impl StartGate {
    fn of(claim: &PersistentVolumeClaim, a: &BTreeMap<String, String>, ctx: &Context) -> StartGate {
        let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Bound") {
            // Nothing else matters then: spare the lookups on every reconcile of a bound claim.
            return StartGate {
                bound: true,
                wait_for_first_consumer: false,
                immediate_binding: false,
                honor_wait_for_first_consumer: false,
            };
        }
        let class = claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref());
        StartGate {
            bound: false,
            wait_for_first_consumer: class
                .and_then(|c| ctx.stores.storage_class(c))
                .and_then(|c| c.volume_binding_mode.clone())
                .as_deref()
                == Some("WaitForFirstConsumer"),
            immediate_binding: a
                .get(switches::IMMEDIATE_BINDING)
                .is_some_and(|v| v == "true"),
            honor_wait_for_first_consumer: ctx
                .stores
                .effective_config()
                .honor_wait_for_first_consumer,
        }
    }

    /// Whether the worker pod may run now: the claim is bound, or binding waits for a consumer
    /// and the pod is to be that consumer (immediate binding asked, or the gate off). Otherwise
    /// the claim waits: for its provisioner, or for the VM that will consume it.
    fn open(self) -> bool {
        self.bound
            || (self.wait_for_first_consumer
                && (self.immediate_binding || !self.honor_wait_for_first_consumer))
    }
}

fn owned_by(pod: &Pod, claim: &PersistentVolumeClaim) -> bool {
    let uid = claim.metadata.uid.as_deref();
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(o.uid.as_str()) == uid)
}

async fn create_worker(
    claim: &PersistentVolumeClaim,
    kind: WorkerKind,
    ctx: &Context,
    ns: &str,
) -> Result<(), Error> {
    let config = ctx.stores.effective_config();
    if kind == WorkerKind::Importer
        && let Some(source) = config
            .import_proxy
            .as_ref()
            .and_then(|p| p.trusted_ca_proxy.clone())
    {
        copy_proxy_ca(ctx, claim, ns, &source).await?;
    }
    let pod = match kind {
        WorkerKind::Importer => importer::render(&importer::ImporterInput {
            claim,
            settings: &ctx.settings,
            config: &config,
        }),
        WorkerKind::UploadServer | WorkerKind::CloneTarget => {
            let name = claim.name_any();
            let service = naming::upload_service(&name);
            let (data, deadline) =
                ctx.upload_certs
                    .upload_server_secret(&service, ns, SystemTime::now())?;
            create_or_keep(
                &Api::<Secret>::namespaced(ctx.client.clone(), ns),
                &upload::render_secret(claim, data),
            )
            .await?;
            create_or_keep(
                &Api::<Service>::namespaced(ctx.client.clone(), ns),
                &upload::render_service(claim),
            )
            .await?;
            upload::render_pod(&upload::UploadInput {
                claim,
                settings: &ctx.settings,
                config: &config,
                deadline,
            })
        }
    };
    create_or_keep(&Api::<Pod>::namespaced(ctx.client.clone(), ns), &pod).await?;
    ctx.metrics
        .pods_created
        .get_or_create(&ControllerLabels {
            controller: kind.metrics_label().into(),
        })
        .inc();
    tracing::info!(pod = %pod.name_any(), "Worker pod created.");
    Ok(())
}

/// Copies the import proxy's CA ConfigMap `source` from the controller's namespace into the
/// claim's, owned by the claim, for the importer to mount (as upstream does).
async fn copy_proxy_ca(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    ns: &str,
    source: &str,
) -> Result<(), Error> {
    let from: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let Some(original) = from.get_opt(source).await? else {
        return Err(Error::ProxyCaMissing {
            name: source.to_owned(),
            namespace: ctx.settings.namespace.clone(),
        });
    };
    let copy = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(importer::proxy_ca_config_map(&claim.name_any())),
            namespace: Some(ns.to_owned()),
            labels: Some(crate::datavolume::plan::cdi_labels()),
            owner_references: pod::claim_owner(claim),
            ..Default::default()
        },
        data: original.data,
        binary_data: original.binary_data,
        ..Default::default()
    };
    create_or_keep(&Api::<ConfigMap>::namespaced(ctx.client.clone(), ns), &copy).await
}

/// Deletes the worker pod and the objects its kind keeps beside it (all but the Service when
/// `renew` asks only for a fresh pod and certificates), and a clone's cloner pod and Secret in
/// the source's namespace.
async fn cleanup(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    kind: WorkerKind,
    renew: bool,
) -> Result<(), Error> {
    let client = ctx.client.clone();
    let ns = claim
        .namespace()
        .ok_or(Error::MissingObjectKey(".metadata.namespace"))?;
    let name = claim.name_any();
    if kind == WorkerKind::CloneTarget
        && let Some(request) = CloneRequest::of(claim)
    {
        // The source goes first: a cloner without its server only fails and retries.
        let cloner_pod = cloner::pod_name(claim);
        delete_if_present(
            &Api::<Pod>::namespaced(client.clone(), &request.namespace),
            &cloner_pod,
        )
        .await?;
        delete_if_present(
            &Api::<Secret>::namespaced(client.clone(), &request.namespace),
            &cloner_pod,
        )
        .await?;
    }
    delete_if_present(
        &Api::<Pod>::namespaced(client.clone(), &ns),
        &kind.pod_name(&name),
    )
    .await?;
    let companions = kind.companions(&name);
    if let Some(secret) = companions.secret {
        delete_if_present(&Api::<Secret>::namespaced(client.clone(), &ns), &secret).await?;
    }
    if let Some(service) = companions.service.filter(|_| !renew) {
        delete_if_present(&Api::<Service>::namespaced(client, &ns), &service).await?;
    }
    Ok(())
}

/// How long a clone waits for other users of its source to let go before looking again.
const SOURCE_IN_USE_RETRY: Duration = Duration::from_secs(10);

/// The source side of a host-assisted clone: once the target's upload server is ready, the
/// cloner pod (and its certificate) in the source's namespace; then its state, copied onto the
/// target claim as upstream's `storage.condition.source.running*`. `Some` when the reconcile
/// should end with that action.
async fn drive_clone_source(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    upload_pod: &Pod,
    ready: bool,
) -> Result<Option<Action>, Error> {
    let Some(request) = CloneRequest::of(claim) else {
        return Ok(None);
    };
    let client = ctx.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &request.namespace);
    let cloner_name = cloner::pod_name(claim);
    let address = cloner::upload_address(upload_pod);
    if let Some(cloner_pod) = pods.get_opt(&cloner_name).await? {
        if cloner_pod.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        if address.is_some() && cloner_upload_address(&cloner_pod) != address {
            // The upload pod was replaced: the cloner must find the new one.
            tracing::info!(pod = %cloner_name, "Upload server moved; replacing the cloner pod.");
            delete_if_present(&pods, &cloner_name).await?;
            return Ok(Some(Action::requeue(Duration::from_secs(1))));
        }
        let (state, next) = observe(&cloner_pod, WorkerKind::CloneTarget);
        let source_state: BTreeMap<String, String> = [
            (condition::RUNNING, condition::SOURCE_RUNNING),
            (condition::RUNNING_REASON, condition::SOURCE_RUNNING_REASON),
            (
                condition::RUNNING_MESSAGE,
                condition::SOURCE_RUNNING_MESSAGE,
            ),
        ]
        .into_iter()
        .filter_map(|(from, to)| state.get(from).map(|v| (to.to_owned(), v.clone())))
        .collect();
        patch_annotations(ctx, claim, &source_state, None).await?;
        match next {
            Next::Fail { reason, message } => {
                fail_clone(
                    ctx,
                    claim,
                    &reason,
                    &format!("clone source failed: {message}"),
                )
                .await?;
                return Ok(Some(Action::await_change()));
            }
            Next::Recreate => {
                delete_if_present(&pods, &cloner_name).await?;
                return Ok(Some(Action::requeue(
                    ctx.worker_backoff
                        .wait(claim)
                        .unwrap_or(Duration::from_secs(1)),
                )));
            }
            Next::Wait | Next::Complete { .. } => {}
        }
        return Ok(None);
    }
    if !ready {
        return Ok(None);
    }
    let source = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &request.namespace)
        .get_opt(&request.name)
        .await?;
    let source = match source {
        Some(s) if s.metadata.deletion_timestamp.is_none() => s,
        gone => {
            let state = if gone.is_some() {
                "is being deleted"
            } else {
                "no longer exists"
            };
            let message = format!(
                "the clone source claim {} {state}; nothing was copied: create the source again \
                 and recreate the DataVolume",
                request.key()
            );
            fail_clone(ctx, claim, "CloneWithoutSource", &message).await?;
            return Ok(Some(Action::await_change()));
        }
    };
    let users: Vec<String> = pods
        .list(&kube::api::ListParams::default())
        .await?
        .items
        .iter()
        .filter(|p| cloner::uses_claim(p, &request.name, &cloner_name))
        .map(|p| p.name_any())
        .collect();
    if !users.is_empty() {
        ctx.publish(
            &claim.object_ref(&()),
            &EventSpec::warning(
                "CloneSourceInUse",
                format!(
                    "pod(s) {} use the clone source {}; the clone starts when they stop",
                    users.join(", "),
                    request.key()
                ),
            ),
        )
        .await;
        return Ok(Some(Action::requeue(SOURCE_IN_USE_RETRY)));
    }
    let Some(address) = address else {
        return Ok(Some(Action::requeue(Duration::from_secs(2))));
    };
    let config = ctx.stores.effective_config();
    let input = cloner::ClonerInput {
        target: claim,
        source: &source,
        upload_addr: &address,
        settings: &ctx.settings,
        config: &config,
    };
    let (cert, key) = ctx
        .upload_certs
        .client_certificate_named(&cloner::client_name(&request, claim), SystemTime::now())?;
    let secret = cloner::render_secret(&input, cert, key, ctx.upload_certs.server_ca_bundle());
    create_or_keep(
        &Api::<Secret>::namespaced(client.clone(), &request.namespace),
        &secret,
    )
    .await?;
    create_or_keep(&pods, &cloner::render_pod(&input)).await?;
    ctx.metrics
        .pods_created
        .get_or_create(&ControllerLabels {
            controller: "clone-source".into(),
        })
        .inc();
    tracing::info!(pod = %cloner_name, source = %request.key(), "Clone source pod created.");
    patch_annotations(
        ctx,
        claim,
        &BTreeMap::from([(pod_ann::SOURCE_CLONE_POD_NAME.to_owned(), cloner_name)]),
        None,
    )
    .await?;
    Ok(None)
}

/// The `UPLOAD_SERVER_ADDR` a cloner pod was given.
fn cloner_upload_address(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .first()?
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "UPLOAD_SERVER_ADDR")
        .and_then(|e| e.value.clone())
}

/// Fails a clone for good: the claim records why (the DataVolume fails with it), and the
/// worker pods on both sides are deleted.
async fn fail_clone(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    let update = BTreeMap::from([
        (import::FATAL_ERROR.to_owned(), "true".to_owned()),
        (condition::RUNNING.to_owned(), "false".to_owned()),
        (condition::RUNNING_REASON.to_owned(), reason.to_owned()),
        (condition::RUNNING_MESSAGE.to_owned(), message.to_owned()),
    ]);
    patch_annotations(ctx, claim, &update, None).await?;
    ctx.publish(
        &claim.object_ref(&()),
        &WorkerKind::CloneTarget.claim_failed(message),
    )
    .await;
    tracing::warn!(%reason, %message, "Clone failed for good; not retrying.");
    cleanup(ctx, claim, WorkerKind::CloneTarget, false).await
}

/// Sets `update` in the claim's annotations (and `labels` in its labels) by server-side apply,
/// when anything differs ([`crate::apply`]: the apply also names every key this controller set
/// before, so none is dropped).
async fn patch_annotations(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    update: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<(), Error> {
    let meta = &claim.metadata;
    let manager = crate::FIELD_MANAGER;
    let annotations = apply::applied_set(
        meta,
        meta.annotations.as_ref(),
        manager,
        "annotations",
        update,
    );
    let labels = labels
        .filter(|l| !l.is_empty())
        .and_then(|l| apply::applied_set(meta, meta.labels.as_ref(), manager, "labels", l));
    if annotations.is_none() && labels.is_none() {
        return Ok(());
    }
    let ns = claim
        .namespace()
        .ok_or(Error::MissingObjectKey(".metadata.namespace"))?;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let owned = |field| apply::owned_keys(meta, manager, field);
    // A set left out would drop the keys this manager owns in it: name it as it is.
    let annotations =
        annotations.unwrap_or_else(|| current_of(meta.annotations.as_ref(), &owned("annotations")));
    let labels = labels.unwrap_or_else(|| current_of(meta.labels.as_ref(), &owned("labels")));
    let apply = serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": claim.name_any(), "annotations": annotations, "labels": labels },
    });
    api.patch(
        &claim.name_any(),
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&apply),
    )
    .await?;
    Ok(())
}

/// The current values of `keys` in `map`.
fn current_of(
    map: Option<&BTreeMap<String, String>>,
    keys: &std::collections::BTreeSet<String>,
) -> BTreeMap<String, String> {
    map.into_iter()
        .flatten()
        .filter(|(k, _)| keys.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fixtures::{mock_context, pod_running, pod_terminated};
    use serde_json::json;

    const POD_PATH: &str = "/api/v1/namespaces/ns/pods/importer-disk";

    fn claim(phase: &str, annotations: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "disk", "namespace": "ns", "uid": "pvc-uid", "annotations": annotations},
            "spec": {"storageClassName": "local", "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": phase}
        }))
        .expect("a claim")
    }

    fn owned(mut pod: Pod) -> serde_json::Value {
        pod.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "PersistentVolumeClaim".into(),
                name: "disk".into(),
                uid: "pvc-uid".into(),
                controller: Some(true),
                ..Default::default()
            },
        ]);
        serde_json::to_value(pod).expect("pod json")
    }

    const CLAIM_PATH: &str = "/api/v1/namespaces/ns/persistentvolumeclaims/disk";

    /// A mock API server that also answers the fresh read of `c`.
    fn serving(
        c: &PersistentVolumeClaim,
        mut objects: BTreeMap<String, serde_json::Value>,
    ) -> (Context, crate::fixtures::MockApi) {
        objects.insert(
            CLAIM_PATH.to_string(),
            serde_json::to_value(c).expect("claim json"),
        );
        mock_context(objects)
    }

    fn import_annotations() -> serde_json::Value {
        json!({"cdi.kubevirt.io/storage.import.endpoint": "http://server/disk.img",
               "cdi.kubevirt.io/storage.import.source": "http"})
    }

    #[test]
    fn the_start_gate_opens_when_bound_or_when_the_pod_is_to_be_the_first_consumer() {
        // (bound, wffc, immediate, honor) -> open
        let table = [
            ((true, false, false, true), true),
            ((true, true, false, true), true),
            ((false, false, false, true), false), // immediate class: the provisioner binds it
            ((false, false, true, false), false), // nothing the pod could do about it
            ((false, true, false, true), false),  // waits for the VM
            ((false, true, true, true), true),    // immediate binding asked
            ((false, true, false, false), true),  // gate off: the pod binds it
        ];
        for ((bound, wffc, immediate, honor), open) in table {
            let gate = StartGate {
                bound,
                wait_for_first_consumer: wffc,
                immediate_binding: immediate,
                honor_wait_for_first_consumer: honor,
            };
            assert_eq!(gate.open(), open, "{gate:?}");
        }
    }

    #[tokio::test]
    async fn bound_claim_gets_its_importer_pod_and_annotations() {
        let c = claim("Bound", import_annotations());
        let (ctx, api) = serving(&c, BTreeMap::new());
        reconcile_claim(&c, WorkerKind::Importer, &ctx)
            .await
            .expect("reconciles");
        let calls = api.calls();
        assert_eq!(calls[0], format!("GET {POD_PATH}"));
        assert_eq!(calls[1], format!("GET {CLAIM_PATH}"));
        assert_eq!(calls[2], "POST /api/v1/namespaces/ns/pods");
        let pod = api.body("POST", "/pods").expect("pod created");
        assert_eq!(pod["metadata"]["name"], "importer-disk");
        assert_eq!(pod["spec"]["containers"][0]["env"][0]["value"], "http");
        let patch = api
            .body("PATCH", "/persistentvolumeclaims/disk")
            .expect("claim annotated");
        assert_eq!(
            patch["metadata"]["annotations"]["cdi.kubevirt.io/storage.pod.phase"],
            "Pending"
        );
        assert_eq!(
            patch["metadata"]["annotations"]["cdi.kubevirt.io/storage.import.importPodName"],
            "importer-disk"
        );
    }

    #[tokio::test]
    async fn pending_claim_on_an_immediate_class_waits_without_a_pod() {
        let (ctx, api) = mock_context(BTreeMap::new());
        let c = claim("Pending", import_annotations());
        reconcile_claim(&c, WorkerKind::Importer, &ctx)
            .await
            .expect("reconciles");
        assert!(api.calls().is_empty(), "{:?}", api.calls());
    }

    #[tokio::test]
    async fn terminal_failure_marks_the_claim_fatal_and_deletes_the_pod() {
        let pod = pod_terminated(
            1,
            "Unable to connect to http data source: 404\n{\"reason\":\"NotFound\",\"terminal\":true}",
            0,
        );
        let (ctx, api) = mock_context(BTreeMap::from([(POD_PATH.to_string(), owned(pod))]));
        reconcile_claim(
            &claim("Bound", import_annotations()),
            WorkerKind::Importer,
            &ctx,
        )
        .await
        .expect("reconciles");
        let patch = api
            .body("PATCH", "/persistentvolumeclaims/disk")
            .expect("claim annotated");
        let a = &patch["metadata"]["annotations"];
        assert_eq!(a["cdi.kubevirt.io/storage.import.fatalError"], "true");
        assert_eq!(
            a["cdi.kubevirt.io/storage.condition.running.reason"],
            "NotFound"
        );
        let calls = api.calls();
        assert!(calls.contains(&format!("DELETE {POD_PATH}")), "{calls:?}");
        let event = api.body("POST", "/events").expect("event");
        assert_eq!(event["reason"], "ErrImportFailed");
    }

    #[tokio::test]
    async fn success_records_completion_and_deletes_the_pod() {
        let pod = pod_terminated(
            0,
            r#"{"preallocationApplied":true,"message":"Import Complete"}"#,
            0,
        );
        let (ctx, api) = mock_context(BTreeMap::from([(POD_PATH.to_string(), owned(pod))]));
        reconcile_claim(
            &claim("Bound", import_annotations()),
            WorkerKind::Importer,
            &ctx,
        )
        .await
        .expect("reconciles");
        let patch = api
            .body("PATCH", "/persistentvolumeclaims/disk")
            .expect("claim annotated");
        let a = &patch["metadata"]["annotations"];
        assert_eq!(a["cdi.kubevirt.io/storage.pod.phase"], "Succeeded");
        assert_eq!(a["cdi.kubevirt.io/storage.preallocation"], "true");
        assert_eq!(
            api.body("POST", "/events").expect("event")["reason"],
            "ImportSucceeded"
        );
        assert!(api.calls().contains(&format!("DELETE {POD_PATH}")));
    }

    #[tokio::test]
    async fn running_pod_state_is_copied_once() {
        let (ctx, api) = mock_context(BTreeMap::from([(
            POD_PATH.to_string(),
            owned(pod_running(2)),
        )]));
        let c = claim("Bound", import_annotations());
        reconcile_claim(&c, WorkerKind::Importer, &ctx)
            .await
            .expect("reconciles");
        let patch = api
            .body("PATCH", "/persistentvolumeclaims/disk")
            .expect("claim annotated");
        assert_eq!(
            patch["metadata"]["annotations"]["cdi.kubevirt.io/storage.pod.restarts"],
            "2"
        );
        assert!(!api.calls().iter().any(|c| c.starts_with("DELETE")));

        // With the annotations already in place nothing is written.
        let annotated = claim("Bound", {
            let mut a = import_annotations();
            for (k, v) in patch["metadata"]["annotations"].as_object().expect("map") {
                a[k] = v.clone();
            }
            a
        });
        let (ctx, api) = mock_context(BTreeMap::from([(
            POD_PATH.to_string(),
            owned(pod_running(2)),
        )]));
        reconcile_claim(&annotated, WorkerKind::Importer, &ctx)
            .await
            .expect("reconciles");
        assert_eq!(api.calls(), vec![format!("GET {POD_PATH}")]);
    }

    #[tokio::test]
    async fn a_pod_recreated_moments_ago_is_not_recreated_again_at_once() {
        let c = claim("Bound", import_annotations());
        let (ctx, api) = serving(&c, BTreeMap::new());
        reconcile_claim(&c, WorkerKind::Importer, &ctx)
            .await
            .expect("first pod");
        let action = reconcile_claim(&c, WorkerKind::Importer, &ctx)
            .await
            .expect("second pass");
        let posts = api
            .calls()
            .iter()
            .filter(|c| c.starts_with("POST /api/v1/namespaces/ns/pods"))
            .count();
        assert_eq!(posts, 1, "{:?}", api.calls());
        assert_ne!(action, Action::await_change(), "retried after the back-off");
    }

    #[tokio::test]
    async fn a_stale_claim_whose_worker_finished_gets_no_second_pod() {
        // The cache still shows the claim running; the API already says it succeeded (the pod
        // was deleted after it finished, which is what triggered this reconcile).
        let cached = claim("Bound", import_annotations());
        let mut done = cached.clone();
        done.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(pod_ann::PHASE.into(), "Succeeded".into());
        let (ctx, api) = serving(&done, BTreeMap::new());
        reconcile_claim(&cached, WorkerKind::Importer, &ctx)
            .await
            .expect("reconciles");
        assert!(
            !api.calls().iter().any(|c| c.starts_with("POST")),
            "{:?}",
            api.calls()
        );
    }

    #[tokio::test]
    async fn finished_claim_only_cleans_up() {
        let (ctx, api) = mock_context(BTreeMap::new());
        let mut a = import_annotations();
        a["cdi.kubevirt.io/storage.pod.phase"] = json!("Succeeded");
        reconcile_claim(&claim("Bound", a), WorkerKind::Importer, &ctx)
            .await
            .expect("reconciles");
        assert_eq!(api.calls(), vec![format!("DELETE {POD_PATH}")]);
    }

    #[tokio::test]
    async fn upload_claim_gets_secret_service_and_pod() {
        let c = claim(
            "Bound",
            json!({"cdi.kubevirt.io/storage.upload.target": ""}),
        );
        let (ctx, api) = serving(&c, BTreeMap::new());
        reconcile_claim(&c, WorkerKind::UploadServer, &ctx)
            .await
            .expect("reconciles");
        let calls = api.calls();
        assert_eq!(
            calls[..5],
            [
                "GET /api/v1/namespaces/ns/pods/cdi-upload-disk".to_string(),
                format!("GET {CLAIM_PATH}"),
                "POST /api/v1/namespaces/ns/secrets".to_string(),
                "POST /api/v1/namespaces/ns/services".to_string(),
                "POST /api/v1/namespaces/ns/pods".to_string(),
            ]
        );
        let secret = api.body("POST", "/secrets").expect("secret");
        assert!(
            secret["stringData"]["tls.crt"]
                .as_str()
                .is_some_and(|c| c.contains("BEGIN CERTIFICATE"))
        );
        let patch = api
            .body("PATCH", "/persistentvolumeclaims/disk")
            .expect("claim annotated");
        assert_eq!(
            patch["metadata"]["annotations"]["cdi.kubevirt.io/storage.uploadPodName"],
            "cdi-upload-disk"
        );
    }

    mod clone_target {
        use super::*;

        const UPLOAD_PATH: &str = "/api/v1/namespaces/ns/pods/cdi-upload-disk";
        const CLONER_PATH: &str = "/api/v1/namespaces/golden/pods/pvc-uid-source-pod";
        const SOURCE_PATH: &str = "/api/v1/namespaces/golden/persistentvolumeclaims/fedora";

        fn target() -> PersistentVolumeClaim {
            claim(
                "Bound",
                json!({"k8s.io/CloneRequest": "golden/fedora",
                                  "cdi.kubevirt.io/cloneType": "copy"}),
            )
        }

        /// The upload server, running and ready, at 10.1.2.3.
        fn ready_upload_pod() -> serde_json::Value {
            let mut pod = pod_running(0);
            pod.metadata.name = Some("cdi-upload-disk".into());
            if let Some(status) = pod.status.as_mut() {
                status.pod_ip = Some("10.1.2.3".into());
                status.conditions = Some(vec![k8s_openapi::api::core::v1::PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]);
                if let Some(c) = status.container_statuses.as_mut() {
                    c[0].name = "cdi-upload-server".into();
                }
            }
            owned(pod)
        }

        fn source_claim() -> serde_json::Value {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "fedora", "namespace": "golden", "uid": "src-uid"},
                   "spec": {"volumeMode": "Block"}, "status": {"phase": "Bound"}})
        }

        fn pods_in_golden(items: serde_json::Value) -> (String, serde_json::Value) {
            (
                "/api/v1/namespaces/golden/pods".to_string(),
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}),
            )
        }

        #[tokio::test]
        async fn a_clone_target_starts_with_an_upload_server_in_clone_mode() {
            let (ctx, api) = serving(&target(), BTreeMap::new());
            reconcile_claim(&target(), WorkerKind::CloneTarget, &ctx)
                .await
                .expect("reconciles");
            let pod = api.body("POST", "/namespaces/ns/pods").expect("upload pod");
            assert_eq!(pod["metadata"]["name"], "cdi-upload-disk");
            let env = &pod["spec"]["containers"][0]["env"];
            let var = |name: &str| {
                env.as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["name"] == name)
                    .map(|e| e["value"].clone())
            };
            assert_eq!(var("CONTENT_TYPE"), Some(json!("clone")));
            assert_eq!(var("CLIENT_NAME"), Some(json!("golden/fedora-ns/disk")));
            assert!(
                !api.calls()
                    .iter()
                    .any(|c| c.contains("/namespaces/golden/")),
                "no cloner before the server is up: {:?}",
                api.calls()
            );
        }

        #[tokio::test]
        async fn once_the_server_is_ready_the_cloner_starts_beside_the_source() {
            let (ctx, api) = mock_context(BTreeMap::from([
                (UPLOAD_PATH.to_string(), ready_upload_pod()),
                (SOURCE_PATH.to_string(), source_claim()),
                pods_in_golden(json!([])),
            ]));
            reconcile_claim(&target(), WorkerKind::CloneTarget, &ctx)
                .await
                .expect("reconciles");
            let secret = api
                .body("POST", "/namespaces/golden/secrets")
                .expect("the cloner's certificate");
            assert_eq!(secret["metadata"]["name"], "pvc-uid-source-pod");
            let pod = api
                .body("POST", "/namespaces/golden/pods")
                .expect("the cloner pod");
            assert_eq!(pod["metadata"]["name"], "pvc-uid-source-pod");
            assert_eq!(
                pod["metadata"]["annotations"]["cdi.kubevirt.io/storage.clone.target"],
                "ns/disk"
            );
            let env = &pod["spec"]["containers"][0]["env"];
            let addr = env
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == "UPLOAD_SERVER_ADDR")
                .expect("the server's address");
            assert_eq!(addr["value"], "10.1.2.3:8443");
            let patches: Vec<_> = api
                .requests()
                .into_iter()
                .filter(|r| r.method == "PATCH")
                .collect();
            assert!(
                patches.iter().any(|p| p.body["metadata"]["annotations"]
                    ["cdi.kubevirt.io/storage.sourceClonePodName"]
                    == "pvc-uid-source-pod"),
                "{patches:?}"
            );
        }

        #[tokio::test]
        async fn a_source_in_use_by_another_pod_waits() {
            let vm = json!({"metadata": {"name": "vm-launcher", "namespace": "golden"},
                "spec": {"containers": [], "volumes": [{"name": "d",
                    "persistentVolumeClaim": {"claimName": "fedora"}}]},
                "status": {"phase": "Running"}});
            let (ctx, api) = mock_context(BTreeMap::from([
                (UPLOAD_PATH.to_string(), ready_upload_pod()),
                (SOURCE_PATH.to_string(), source_claim()),
                pods_in_golden(json!([vm])),
            ]));
            let action = reconcile_claim(&target(), WorkerKind::CloneTarget, &ctx)
                .await
                .expect("reconciles");
            assert_eq!(action, Action::requeue(SOURCE_IN_USE_RETRY));
            assert!(api.body("POST", "/namespaces/golden/pods").is_none());
            let event = api.body("POST", "/events").expect("an event");
            assert_eq!(event["reason"], "CloneSourceInUse");
            assert!(
                event["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("vm-launcher")),
                "{event}"
            );
        }

        #[tokio::test]
        async fn a_source_gone_before_the_copy_fails_the_clone_clearly() {
            let (ctx, api) = mock_context(BTreeMap::from([
                (UPLOAD_PATH.to_string(), ready_upload_pod()),
                pods_in_golden(json!([])),
            ]));
            reconcile_claim(&target(), WorkerKind::CloneTarget, &ctx)
                .await
                .expect("reconciles");
            let patch = api
                .requests()
                .into_iter()
                .find(|r| {
                    r.method == "PATCH"
                        && r.body["metadata"]["annotations"]
                            ["cdi.kubevirt.io/storage.import.fatalError"]
                            == "true"
                })
                .expect("the claim is marked failed");
            let a = &patch.body["metadata"]["annotations"];
            assert_eq!(
                a["cdi.kubevirt.io/storage.condition.running.reason"],
                "CloneWithoutSource"
            );
            assert!(
                a["cdi.kubevirt.io/storage.condition.running.message"]
                    .as_str()
                    .is_some_and(|m| m.contains("golden/fedora no longer exists")),
                "{a}"
            );
            assert!(api.calls().contains(&format!("DELETE {UPLOAD_PATH}")));
        }

        #[tokio::test]
        async fn a_cloner_that_failed_for_good_fails_the_clone_and_both_pods_go() {
            let mut cloner = pod_terminated(
                1,
                "the source changed while it was being cloned\n{\"reason\":\"SourceChanged\",\"terminal\":true}",
                0,
            );
            cloner.metadata.name = Some("pvc-uid-source-pod".into());
            cloner.metadata.namespace = Some("golden".into());
            cloner.spec = Some(k8s_openapi::api::core::v1::PodSpec {
                containers: vec![k8s_openapi::api::core::v1::Container {
                    name: "cdi-clone-source".into(),
                    env: Some(vec![pod::env("UPLOAD_SERVER_ADDR", "10.1.2.3:8443")]),
                    ..Default::default()
                }],
                ..Default::default()
            });
            let (ctx, api) = mock_context(BTreeMap::from([
                (UPLOAD_PATH.to_string(), ready_upload_pod()),
                (
                    CLONER_PATH.to_string(),
                    serde_json::to_value(cloner).expect("json"),
                ),
            ]));
            reconcile_claim(&target(), WorkerKind::CloneTarget, &ctx)
                .await
                .expect("reconciles");
            let calls = api.calls();
            let fatal = api.requests().into_iter().any(|r| {
                r.method == "PATCH"
                    && r.body["metadata"]["annotations"]["cdi.kubevirt.io/storage.import.fatalError"]
                        == "true"
            });
            assert!(fatal, "{calls:?}");
            assert!(
                calls.contains(&format!("DELETE {CLONER_PATH}")),
                "{calls:?}"
            );
            assert!(
                calls.contains(&format!("DELETE {UPLOAD_PATH}")),
                "{calls:?}"
            );
        }
    }
}
