//! The CSI driver stand-in (opt-in, [`KubeletStandIn::enable_csi`]): a StorageClass whose
//! provisioner is a CSI driver CDI knows to clone and snapshot, whose volumes are provisioned
//! empty, cloned from a claim (`dataSource` kind PersistentVolumeClaim) or restored from a
//! VolumeSnapshot as sparse copies, expanded when their claim asks for more, and deleted when
//! released, as the external-provisioner and external-resizer sidecars with a
//! copy-on-write driver do.
//!
//! [`KubeletStandIn::enable_csi`]: super::KubeletStandIn::enable_csi

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, Event, EventSource, ObjectReference, PersistentVolume,
    PersistentVolumeClaim,
};
use k8s_openapi::api::storage::v1::{CSIDriver, CSIDriverSpec, StorageClass};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use super::applied;
use super::snapshot;
use super::sparse;
use super::storage::{
    bound_volume, create_backing, create_volume, is_block, quantity_bytes, requested_storage,
};
use crate::Error;

/// StorageClass of the CSI stand-in: Immediate binding, expandable, volumes deleted on release.
pub const CSI_STORAGE_CLASS: &str = "cdi-hostpath-csi";
/// The CSI driver the stand-in plays: one CDI's capability table lists with both volume modes,
/// CSI clones as its advised strategy and snapshots as DataImportCron sources.
pub const CSI_DRIVER: &str = "rook-ceph.rbd.csi.ceph.com";
/// `volumeAttributes` key of the stand-in's CSI volumes: the local path of the volume.
pub const PATH_ATTRIBUTE: &str = "kubelet-standin.cdi-rs.io/path";

/// How often a claim waiting for its source (a claim to bind, a snapshot to be ready) is retried.
const WAIT_RETRY: Duration = Duration::from_millis(250);
/// How long after a failure a claim or snapshot is retried, as the sidecars back off.
const FAILURE_RETRY: Duration = Duration::from_secs(1);

/// The driver's state, shared by its loops.
pub(crate) struct CsiDriver {
    pub(crate) client: Client,
    pub(crate) root: PathBuf,
    /// UIDs of the claims and snapshots a task is working on.
    busy: Mutex<HashSet<String>>,
}

/// What one attempt at a claim or snapshot came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Done (or nothing to do); later changes to the object start a new attempt.
    Done,
    /// Waiting for something else (named); retried shortly.
    Wait(String),
}

impl std::fmt::Debug for CsiDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsiDriver")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl CsiDriver {
    pub(crate) fn new(client: Client, root: PathBuf) -> CsiDriver {
        CsiDriver {
            client,
            root,
            busy: Mutex::new(HashSet::new()),
        }
    }

    /// Runs `attempt` for the object with `uid` until it is done, retrying waits and failures,
    /// unless a task already works on it. `attempt` re-reads the object each time and reports
    /// failures through the API itself.
    pub(crate) fn work_on<F, Fut>(self: &Arc<Self>, uid: String, what: String, mut attempt: F)
    where
        F: FnMut(Arc<CsiDriver>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Outcome, Error>> + Send,
    {
        let started = self.busy.lock().is_ok_and(|mut b| b.insert(uid.clone()));
        if !started {
            return;
        }
        let driver = self.clone();
        tokio::spawn(async move {
            loop {
                match attempt(driver.clone()).await {
                    Ok(Outcome::Done) => break,
                    Ok(Outcome::Wait(why)) => {
                        tracing::debug!("CSI stand-in: {what}: waiting: {why}");
                        tokio::time::sleep(WAIT_RETRY).await;
                    }
                    Err(e) => {
                        tracing::warn!("CSI stand-in: {what}: {e}");
                        tokio::time::sleep(FAILURE_RETRY).await;
                    }
                }
            }
            if let Ok(mut busy) = driver.busy.lock() {
                busy.remove(&uid);
            }
        });
    }
}

/// Creates the StorageClass and the CSIDriver object (no attach step, persistent volumes).
pub(crate) async fn install(client: &Client) -> Result<(), Error> {
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(CSI_STORAGE_CLASS.into()),
            ..Default::default()
        },
        provisioner: CSI_DRIVER.into(),
        volume_binding_mode: Some("Immediate".into()),
        reclaim_policy: Some("Delete".into()),
        allow_volume_expansion: Some(true),
        ..Default::default()
    };
    created_or_kept(
        Api::<StorageClass>::all(client.clone())
            .create(&PostParams::default(), &class)
            .await,
    )?;
    let driver = CSIDriver {
        metadata: ObjectMeta {
            name: Some(CSI_DRIVER.into()),
            ..Default::default()
        },
        spec: CSIDriverSpec {
            attach_required: Some(false),
            pod_info_on_mount: Some(false),
            volume_lifecycle_modes: Some(vec!["Persistent".into()]),
            ..Default::default()
        },
    };
    created_or_kept(
        Api::<CSIDriver>::all(client.clone())
            .create(&PostParams::default(), &driver)
            .await,
    )
}

/// The result of a create, where an object that already exists is fine.
pub(crate) fn created_or_kept<K>(result: Result<K, kube::Error>) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Where the volume provisioned for the claim with `uid` lives.
fn volume_path(root: &Path, uid: &str) -> PathBuf {
    root.join("csi-volumes").join(format!("pvc-{uid}"))
}

/// The local path of a PersistentVolume of this driver.
pub(crate) fn local_path(pv: &PersistentVolume) -> Option<PathBuf> {
    let csi = pv.spec.as_ref()?.csi.as_ref()?;
    if csi.driver != CSI_DRIVER {
        return None;
    }
    csi.volume_attributes
        .as_ref()?
        .get(PATH_ATTRIBUTE)
        .map(PathBuf::from)
}

/// Bytes of a claim's `status.capacity`, else of its request.
pub(crate) fn capacity_bytes(pvc: &PersistentVolumeClaim) -> Option<u64> {
    pvc.status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| quantity_bytes(&q.0))
        .or_else(|| requested_storage(pvc).ok().map(|(_, b)| b))
}

/// Where a claim's content comes from, per `dataSourceRef` (else `dataSource`).
#[derive(Debug, PartialEq)]
enum DataSource {
    Empty,
    Claim(String),
    Snapshot(String),
    /// Another kind (a volume populator's), or another namespace: not this driver's business.
    Foreign(String),
}

fn data_source(pvc: &PersistentVolumeClaim) -> DataSource {
    let Some(spec) = &pvc.spec else {
        return DataSource::Empty;
    };
    let (group, kind, name, namespace) = match (&spec.data_source_ref, &spec.data_source) {
        (Some(r), _) => (&r.api_group, &r.kind, &r.name, &r.namespace),
        (None, Some(r)) => (&r.api_group, &r.kind, &r.name, &None),
        (None, None) => return DataSource::Empty,
    };
    let group = group.as_deref().unwrap_or_default();
    if namespace
        .as_ref()
        .is_some_and(|n| Some(n) != pvc.namespace().as_ref())
    {
        return DataSource::Foreign(format!("{kind} in another namespace"));
    }
    match (group, kind.as_str()) {
        ("", "PersistentVolumeClaim") => DataSource::Claim(name.clone()),
        (snapshot::GROUP, "VolumeSnapshot") => DataSource::Snapshot(name.clone()),
        _ => DataSource::Foreign(format!("{kind}.{group}")),
    }
}

/// Watches claims: provisions unbound claims of the class and expands bound ones.
pub(crate) async fn claim_loop(driver: Arc<CsiDriver>) {
    let api: Api<PersistentVolumeClaim> = Api::all(driver.client.clone());
    let mut claims = std::pin::pin!(applied(api, "CSI claim"));
    while let Some(pvc) = claims.next().await {
        let spec = pvc.spec.as_ref();
        if spec.and_then(|s| s.storage_class_name.as_deref()) != Some(CSI_STORAGE_CLASS)
            || pvc.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let (Some(uid), Some(ns)) = (pvc.uid(), pvc.namespace()) else {
            continue;
        };
        let name = pvc.name_any();
        let what = format!("claim {ns}/{name}");
        if spec
            .and_then(|s| s.volume_name.as_deref())
            .is_none_or(str::is_empty)
        {
            let claim_uid = uid.clone();
            driver.work_on(uid, what, move |driver| {
                let (ns, name, uid) = (ns.clone(), name.clone(), claim_uid.clone());
                async move { provision_attempt(&driver, &ns, &name, &uid).await }
            });
        } else if let Err(e) = expand(&driver, &pvc).await {
            tracing::warn!("CSI stand-in: expanding {what}: {e}");
        }
    }
}

/// One attempt at provisioning claim `ns/name` (the one with `uid`); failures are reported as
/// `ProvisioningFailed` events on the claim, as the external-provisioner does.
async fn provision_attempt(
    driver: &CsiDriver,
    ns: &str,
    name: &str,
    uid: &str,
) -> Result<Outcome, Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(driver.client.clone(), ns);
    let Some(pvc) = api.get_opt(name).await? else {
        return Ok(Outcome::Done);
    };
    let unbound = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_none_or(str::is_empty);
    if pvc.uid().as_deref() != Some(uid) || !unbound || pvc.metadata.deletion_timestamp.is_some() {
        return Ok(Outcome::Done);
    }
    match provision(driver, &pvc).await {
        Err(Refusal::Failed(message)) => {
            record_event(&driver.client, &pvc, "ProvisioningFailed", &message).await;
            Err(Error::Setup(message))
        }
        Err(Refusal::Api(e)) => Err(e),
        Ok(outcome) => Ok(outcome),
    }
}

/// Why a claim or snapshot was not served: a fault of its spec or sources (reported on the
/// object), or the API.
#[derive(Debug)]
pub(crate) enum Refusal {
    Failed(String),
    Api(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        Refusal::Api(e)
    }
}

impl From<kube::Error> for Refusal {
    fn from(e: kube::Error) -> Refusal {
        Refusal::Api(e.into())
    }
}

async fn provision(driver: &CsiDriver, pvc: &PersistentVolumeClaim) -> Result<Outcome, Refusal> {
    let ns = pvc.namespace().unwrap_or_default();
    let block = is_block(pvc);
    let (request, bytes) = requested_storage(pvc).map_err(|e| Refusal::Failed(e.to_string()))?;
    let path = volume_path(&driver.root, &pvc.uid().unwrap_or_default());
    match data_source(pvc) {
        DataSource::Empty => create_backing(&path, block, bytes)?,
        DataSource::Foreign(kind) => {
            tracing::debug!("CSI stand-in: data source {kind} is for a populator");
            return Ok(Outcome::Done);
        }
        DataSource::Claim(source) => {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(driver.client.clone(), &ns);
            let Some(src) = api.get_opt(&source).await? else {
                return Ok(Outcome::Wait(format!(
                    "source claim {ns}/{source} does not exist"
                )));
            };
            let bound = src.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            let volume = src.spec.as_ref().and_then(|s| s.volume_name.clone());
            let Some(volume) = volume.filter(|_| bound) else {
                return Ok(Outcome::Wait(format!(
                    "source claim {ns}/{source} is not bound"
                )));
            };
            let class = |c: &PersistentVolumeClaim| c.spec.as_ref()?.storage_class_name.clone();
            if class(&src) != class(pvc) {
                return Err(Refusal::Failed(format!(
                    "the source claim {source} is of storage class {:?}, the clone of {:?}: \
                     a CSI clone needs both in the same class",
                    class(&src).unwrap_or_default(),
                    class(pvc).unwrap_or_default()
                )));
            }
            if is_block(&src) != block {
                return Err(Refusal::Failed(format!(
                    "the source claim {source} and the clone differ in volume mode; a CSI clone \
                     needs the same mode"
                )));
            }
            let source_bytes = capacity_bytes(&src).unwrap_or(0);
            if bytes < source_bytes {
                return Err(Refusal::Failed(format!(
                    "the requested size {bytes} is less than the size {source_bytes} of the \
                     source claim {source}"
                )));
            }
            let pv = Api::<PersistentVolume>::all(driver.client.clone())
                .get(&volume)
                .await?;
            let from = local_path(&pv).ok_or_else(|| {
                Refusal::Failed(format!(
                    "volume {volume} of claim {source} is not {CSI_DRIVER}'s"
                ))
            })?;
            copy(&from, &path, block, bytes).await?;
        }
        DataSource::Snapshot(source) => {
            let restore = match snapshot::restorable(driver, &ns, &source).await? {
                Ok(r) => r,
                Err(why) => return Ok(Outcome::Wait(why)),
            };
            if restore.block != block {
                return Err(Refusal::Failed(format!(
                    "snapshot {source} is of a {} volume; it cannot be restored to a {} claim",
                    mode_name(restore.block),
                    mode_name(block)
                )));
            }
            if bytes < restore.size {
                return Err(Refusal::Failed(format!(
                    "the requested size {bytes} is less than the restore size {} of snapshot \
                     {source}",
                    restore.size
                )));
            }
            copy(&restore.path, &path, block, bytes).await?;
        }
    }
    let mut pv = bound_volume(pvc, request, CSI_DRIVER, "Delete");
    if let Some(spec) = pv.spec.as_mut() {
        spec.csi = Some(CSIPersistentVolumeSource {
            driver: CSI_DRIVER.into(),
            volume_handle: pv.metadata.name.clone().unwrap_or_default(),
            fs_type: (!block).then(|| "ext4".into()),
            volume_attributes: Some(BTreeMap::from([(
                PATH_ATTRIBUTE.to_string(),
                path.display().to_string(),
            )])),
            ..Default::default()
        });
    }
    create_volume(&driver.client, &pv).await?;
    Ok(Outcome::Done)
}

fn mode_name(block: bool) -> &'static str {
    if block { "Block" } else { "Filesystem" }
}

/// Sparse-copies a volume off the async threads.
pub(crate) async fn copy(from: &Path, to: &Path, block: bool, size: u64) -> Result<(), Error> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    let what = format!("copy {} to {}", from.display(), to.display());
    tokio::task::spawn_blocking(move || sparse::copy_volume(&from, &to, block, size))
        .await
        .map_err(|e| Error::Setup(format!("{what}: {e}")))?
        .map_err(|e| Error::io(what, e))
}

/// Grows a bound claim's volume to its request when that is larger than its capacity, and
/// reports the new size on the volume and claim, as the external-resizer does for a driver
/// that needs no node-side step.
async fn expand(driver: &CsiDriver, pvc: &PersistentVolumeClaim) -> Result<(), Error> {
    if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Ok(());
    }
    let (request, bytes) = requested_storage(pvc)?;
    if capacity_bytes(pvc).is_some_and(|c| c >= bytes) {
        return Ok(());
    }
    let Some(volume) = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
        return Ok(());
    };
    let pvs: Api<PersistentVolume> = Api::all(driver.client.clone());
    let pv = pvs.get(&volume).await?;
    let Some(path) = local_path(&pv) else {
        return Ok(());
    };
    if is_block(pvc) {
        let grown = path.clone();
        tokio::task::spawn_blocking(move || sparse::grow(&grown, bytes))
            .await
            .map_err(|e| Error::Setup(format!("grow {}: {e}", path.display())))?
            .map_err(|e| Error::io(format!("grow {}", path.display()), e))?;
    }
    let storage = BTreeMap::from([("storage".to_string(), request)]);
    let pv_patch = serde_json::json!({ "spec": { "capacity": &storage } });
    pvs.patch(&volume, &PatchParams::default(), &Patch::Merge(&pv_patch))
        .await?;
    let claim_patch = serde_json::json!({ "status": {
        "capacity": &storage, "allocatedResources": &storage, "conditions": null } });
    Api::<PersistentVolumeClaim>::namespaced(
        driver.client.clone(),
        &pvc.namespace().unwrap_or_default(),
    )
    .patch_status(
        &pvc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&claim_patch),
    )
    .await?;
    Ok(())
}

/// Watches volumes: deletes the backing and the PersistentVolume of this driver's released
/// volumes whose reclaim policy is Delete, as the external-provisioner does.
pub(crate) async fn reclaim_loop(driver: Arc<CsiDriver>) {
    let api: Api<PersistentVolume> = Api::all(driver.client.clone());
    let mut volumes = std::pin::pin!(applied(api.clone(), "CSI volume"));
    while let Some(pv) = volumes.next().await {
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let delete = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Delete");
        let Some(path) = local_path(&pv).filter(|_| released && delete) else {
            continue;
        };
        if let Err(e) = sparse::remove_volume(&path) {
            tracing::warn!("CSI stand-in: removing {}: {e}", path.display());
            continue;
        }
        match api.delete(&pv.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!("CSI stand-in: deleting volume {}: {e}", pv.name_any()),
        }
    }
}

/// Records a Warning event on `object`, as the CSI sidecars do; failing to is only logged.
pub(crate) async fn record_event<K>(client: &Client, object: &K, reason: &str, message: &str)
where
    K: kube::Resource<DynamicType = ()>,
{
    let ns = object.meta().namespace.clone().unwrap_or_default();
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}.",
                object.meta().name.clone().unwrap_or_default()
            )),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: object.meta().name.clone(),
            namespace: Some(ns.clone()),
            uid: object.meta().uid.clone(),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some(CSI_DRIVER.into()),
            host: None,
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    if let Err(e) = Api::<Event>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &event)
        .await
    {
        tracing::warn!("CSI stand-in: recording event {reason}: {e}");
    }
}

/// A quantity for `bytes`.
pub(crate) fn bytes_quantity(bytes: u64) -> Quantity {
    Quantity(bytes.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(spec: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "c", "namespace": "ns" }, "spec": spec
        }))
        .expect("claim")
    }

    #[test]
    fn data_sources_prefer_the_ref_and_leave_populators_alone() {
        assert_eq!(
            data_source(&claim(serde_json::json!({}))),
            DataSource::Empty
        );
        assert_eq!(
            data_source(&claim(serde_json::json!({
                "dataSource": { "kind": "PersistentVolumeClaim", "name": "src" }
            }))),
            DataSource::Claim("src".into())
        );
        assert_eq!(
            data_source(&claim(serde_json::json!({
                "dataSource": { "kind": "PersistentVolumeClaim", "name": "a" },
                "dataSourceRef": { "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "s" }
            }))),
            DataSource::Snapshot("s".into())
        );
        assert!(matches!(
            data_source(&claim(serde_json::json!({
                "dataSourceRef": { "apiGroup": "cdi.kubevirt.io", "kind": "VolumeCloneSource", "name": "v" }
            }))),
            DataSource::Foreign(_)
        ));
        assert!(matches!(
            data_source(&claim(serde_json::json!({
                "dataSourceRef": { "kind": "PersistentVolumeClaim", "name": "src", "namespace": "other" }
            }))),
            DataSource::Foreign(_)
        ));
    }
}
