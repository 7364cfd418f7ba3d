//! The VolumeSnapshot API (`snapshot.storage.k8s.io/v1`) and a snapshotter stand-in for the CSI
//! stand-in's volumes: installs the CRDs and a VolumeSnapshotClass, and plays the
//! snapshot-controller with the csi-snapshotter sidecar: a VolumeSnapshot of a bound claim of
//! the driver becomes a sparse copy of its volume, a VolumeSnapshotContent and a ready status;
//! deleting it removes both (deletion policy Delete). A claim of any other storage gets an
//! error in the snapshot's status, as a real snapshotter reports it.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};

use super::csi::{self, CSI_DRIVER, CsiDriver, Outcome, Refusal};
use super::storage::is_block;
use crate::Error;

/// The API group of VolumeSnapshots.
pub const GROUP: &str = "snapshot.storage.k8s.io";
/// The VolumeSnapshotClass of the CSI stand-in's driver (its default; deletion policy Delete).
pub const SNAPSHOT_CLASS: &str = "cdi-hostpath-snapclass";
/// The finalizer that keeps a snapshot until its content and stored copy are removed.
pub const FINALIZER: &str = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection";
/// Annotation marking a VolumeSnapshotClass as its driver's default.
const DEFAULT_CLASS: &str = "snapshot.storage.kubernetes.io/is-default-class";

const CRDS: [(&str, &str); 3] = [
    (
        "volumesnapshotclasses.yaml",
        include_str!("../../crds/snapshot/volumesnapshotclasses.yaml"),
    ),
    (
        "volumesnapshotcontents.yaml",
        include_str!("../../crds/snapshot/volumesnapshotcontents.yaml"),
    ),
    (
        "volumesnapshots.yaml",
        include_str!("../../crds/snapshot/volumesnapshots.yaml"),
    ),
];

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", kind), plural)
}

/// VolumeSnapshots in namespace `ns`.
pub fn volume_snapshots(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &resource("VolumeSnapshot", "volumesnapshots"),
    )
}

/// VolumeSnapshotContents (cluster-scoped).
pub fn volume_snapshot_contents(client: &Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &resource("VolumeSnapshotContent", "volumesnapshotcontents"),
    )
}

/// VolumeSnapshotClasses (cluster-scoped).
pub fn volume_snapshot_classes(client: &Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &resource("VolumeSnapshotClass", "volumesnapshotclasses"),
    )
}

/// Installs the three CRDs (waiting until they are Established) and the driver's
/// VolumeSnapshotClass.
pub(crate) async fn install(client: &Client) -> Result<(), Error> {
    let documents: Vec<(String, String)> = CRDS
        .iter()
        .map(|(name, text)| (format!("testenv/crds/snapshot/{name}"), text.to_string()))
        .collect();
    crate::crds::apply(client, &documents).await?;
    let class: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "VolumeSnapshotClass",
        "metadata": { "name": SNAPSHOT_CLASS, "annotations": { DEFAULT_CLASS: "true" } },
        "driver": CSI_DRIVER,
        "deletionPolicy": "Delete",
    }))
    .map_err(|e| Error::Setup(format!("VolumeSnapshotClass: {e}")))?;
    csi::created_or_kept(
        volume_snapshot_classes(client)
            .create(&PostParams::default(), &class)
            .await,
    )
}

/// Where the copy behind snapshot handle `handle` is stored.
fn stored_path(driver: &CsiDriver, handle: &str) -> PathBuf {
    driver.root.join("csi-snapshots").join(handle)
}

/// A ready snapshot's stored copy, for restoring a claim from it.
#[derive(Debug)]
pub(crate) struct Restore {
    pub path: PathBuf,
    pub block: bool,
    /// Bytes; a restored claim must ask for at least this much.
    pub size: u64,
}

/// The stored copy of snapshot `ns/name`, or why a claim restoring it must wait.
pub(crate) async fn restorable(
    driver: &CsiDriver,
    ns: &str,
    name: &str,
) -> Result<Result<Restore, String>, Refusal> {
    let Some(vs) = volume_snapshots(&driver.client, ns).get_opt(name).await? else {
        return Ok(Err(format!("snapshot {ns}/{name} does not exist")));
    };
    let status = &vs.data["status"];
    let content = status["boundVolumeSnapshotContentName"].as_str();
    let (true, Some(content)) = (status["readyToUse"].as_bool() == Some(true), content) else {
        return Ok(Err(format!("snapshot {ns}/{name} is not ready to use")));
    };
    let Some(content) = volume_snapshot_contents(&driver.client)
        .get_opt(content)
        .await?
    else {
        return Ok(Err(format!(
            "the content {content} of snapshot {ns}/{name} does not exist"
        )));
    };
    let spec = &content.data["spec"];
    if spec["driver"].as_str() != Some(CSI_DRIVER) {
        return Err(Refusal::Failed(format!(
            "snapshot {ns}/{name} was taken by driver {}, not {CSI_DRIVER}",
            spec["driver"]
        )));
    }
    let status = &content.data["status"];
    let handle = status["snapshotHandle"].as_str().ok_or_else(|| {
        Refusal::Failed(format!(
            "the content of snapshot {ns}/{name} has no snapshot handle"
        ))
    })?;
    Ok(Ok(Restore {
        path: stored_path(driver, handle),
        block: spec["sourceVolumeMode"].as_str() == Some("Block"),
        size: status["restoreSize"].as_u64().unwrap_or(0),
    }))
}

/// Watches VolumeSnapshots and takes, or cleans up after, each.
pub(crate) async fn snapshot_loop(driver: Arc<CsiDriver>) {
    let api: Api<DynamicObject> = Api::all_with(
        driver.client.clone(),
        &resource("VolumeSnapshot", "volumesnapshots"),
    );
    let mut snapshots = std::pin::pin!(super::applied(api, "VolumeSnapshot"));
    while let Some(vs) = snapshots.next().await {
        let ready = vs.data["status"]["readyToUse"].as_bool() == Some(true);
        let deleting = vs.metadata.deletion_timestamp.is_some();
        let ours = vs.finalizers().iter().any(|f| f == FINALIZER);
        if (ready && !deleting) || (deleting && !ours) {
            continue;
        }
        let (Some(uid), Some(ns)) = (vs.uid(), vs.namespace()) else {
            continue;
        };
        let name = vs.name_any();
        let what = format!("snapshot {ns}/{name}");
        let snapshot_uid = uid.clone();
        driver.work_on(uid, what, move |driver| {
            let (ns, name, uid) = (ns.clone(), name.clone(), snapshot_uid.clone());
            async move { snapshot_attempt(&driver, &ns, &name, &uid).await }
        });
    }
}

async fn snapshot_attempt(
    driver: &CsiDriver,
    ns: &str,
    name: &str,
    uid: &str,
) -> Result<Outcome, Error> {
    let api = volume_snapshots(&driver.client, ns);
    let Some(vs) = api.get_opt(name).await? else {
        return Ok(Outcome::Done);
    };
    if vs.uid().as_deref() != Some(uid) {
        return Ok(Outcome::Done);
    }
    if vs.metadata.deletion_timestamp.is_some() {
        release(driver, &vs).await?;
        return Ok(Outcome::Done);
    }
    if vs.data["status"]["readyToUse"].as_bool() == Some(true) {
        return Ok(Outcome::Done);
    }
    match take(driver, &vs).await {
        Ok(outcome) => {
            if let Outcome::Wait(why) = &outcome {
                report_error(&api, &vs, why).await?;
            }
            Ok(outcome)
        }
        Err(Refusal::Failed(message)) => {
            report_error(&api, &vs, &message).await?;
            Ok(Outcome::Done)
        }
        Err(Refusal::Api(e)) => Err(e),
    }
}

/// Sets `status.error` (unless it already says `message`) with `readyToUse: false`.
async fn report_error(
    api: &Api<DynamicObject>,
    vs: &DynamicObject,
    message: &str,
) -> Result<(), Error> {
    let message = format!("failed to take snapshot {}: {message}", vs.name_any());
    if vs.data["status"]["error"]["message"].as_str() == Some(message.as_str()) {
        return Ok(());
    }
    let patch = serde_json::json!({ "status": { "readyToUse": false, "error": {
        "message": message, "time": k8s_openapi::jiff::Timestamp::now().to_string() } } });
    api.patch_status(
        &vs.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Takes the snapshot: copies the claim's volume, creates the content, reports it ready.
async fn take(driver: &CsiDriver, vs: &DynamicObject) -> Result<Outcome, Refusal> {
    let ns = vs.namespace().unwrap_or_default();
    let uid = vs.uid().unwrap_or_default();
    let spec = &vs.data["spec"];
    let Some(claim) = spec["source"]["persistentVolumeClaimName"].as_str() else {
        return Err(Refusal::Failed(
            "the stand-in snapshotter takes snapshots of claims only; pre-provisioned \
             snapshots (source.volumeSnapshotContentName) are not supported"
                .into(),
        ));
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(driver.client.clone(), &ns);
    let Some(pvc) = claims.get_opt(claim).await? else {
        return Ok(Outcome::Wait(format!("claim {ns}/{claim} does not exist")));
    };
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume = pvc.spec.as_ref().and_then(|s| s.volume_name.clone());
    let Some(volume) = volume.filter(|_| bound) else {
        return Ok(Outcome::Wait(format!(
            "claim {ns}/{claim} is not bound to a volume yet"
        )));
    };
    let pv = Api::<PersistentVolume>::all(driver.client.clone())
        .get(&volume)
        .await?;
    let volume_driver = pv
        .spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .map(|c| c.driver.clone());
    let Some(volume_driver) = volume_driver else {
        return Err(Refusal::Failed(format!(
            "volume {volume} of claim {claim} is not a CSI volume; only CSI volumes can be \
             snapshotted"
        )));
    };
    let class_name = class_for(driver, spec, &volume_driver).await?;
    let class = volume_snapshot_classes(&driver.client)
        .get_opt(&class_name)
        .await?;
    let Some(class) = class else {
        return Ok(Outcome::Wait(format!(
            "VolumeSnapshotClass {class_name} does not exist"
        )));
    };
    if class.data["driver"].as_str() != Some(volume_driver.as_str()) {
        return Err(Refusal::Failed(format!(
            "VolumeSnapshotClass {class_name} is for driver {}, but volume {volume} is of {volume_driver}",
            class.data["driver"]
        )));
    }
    let path = csi::local_path(&pv).ok_or_else(|| {
        Refusal::Failed(format!(
            "volume {volume} is of driver {volume_driver}, which has no snapshotter here"
        ))
    })?;
    let deletion_policy = class.data["deletionPolicy"]
        .as_str()
        .unwrap_or("Delete")
        .to_string();

    // The finalizer first, so that a delete from here on also removes what is created below.
    if !vs.finalizers().iter().any(|f| f == FINALIZER) {
        let mut finalizers = vs.finalizers().to_vec();
        finalizers.push(FINALIZER.into());
        let patch = serde_json::json!({ "metadata": {
            "finalizers": finalizers, "resourceVersion": vs.resource_version() } });
        volume_snapshots(&driver.client, &ns)
            .patch(
                &vs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }

    let block = is_block(&pvc);
    let handle = format!("snapshot-{uid}");
    let size = csi::capacity_bytes(&pvc).unwrap_or(0);
    csi::copy(&path, &stored_path(driver, &handle), block, size).await?;

    let content_name = format!("snapcontent-{uid}");
    let content: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "VolumeSnapshotContent",
        "metadata": { "name": content_name },
        "spec": {
            "deletionPolicy": deletion_policy,
            "driver": volume_driver,
            "source": { "volumeHandle": pv.spec.as_ref().and_then(|s| s.csi.as_ref()).map(|c| c.volume_handle.clone()) },
            "sourceVolumeMode": if block { "Block" } else { "Filesystem" },
            "volumeSnapshotClassName": class_name,
            "volumeSnapshotRef": {
                "apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshot",
                "namespace": ns, "name": vs.name_any(), "uid": uid,
            },
        },
    }))
    .map_err(|e| Refusal::Api(Error::Setup(format!("VolumeSnapshotContent: {e}"))))?;
    let contents = volume_snapshot_contents(&driver.client);
    csi::created_or_kept(contents.create(&PostParams::default(), &content).await)?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let content_status = serde_json::json!({ "status": {
        "snapshotHandle": handle, "readyToUse": true, "restoreSize": size,
        "creationTime": now.as_nanosecond() as i64 } });
    contents
        .patch_status(
            &content_name,
            &PatchParams::default(),
            &Patch::Merge(&content_status),
        )
        .await?;
    let restore_size = pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage").cloned())
        .unwrap_or_else(|| csi::bytes_quantity(size));
    let status = serde_json::json!({ "status": {
        "boundVolumeSnapshotContentName": content_name, "readyToUse": true,
        "restoreSize": restore_size, "creationTime": now.to_string(), "error": null } });
    volume_snapshots(&driver.client, &ns)
        .patch_status(
            &vs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
    Ok(Outcome::Done)
}

/// The snapshot's class: the one it names, else the default one of the volume's driver.
async fn class_for(
    driver: &CsiDriver,
    spec: &serde_json::Value,
    volume_driver: &str,
) -> Result<String, Refusal> {
    if let Some(name) = spec["volumeSnapshotClassName"].as_str() {
        return Ok(name.to_string());
    }
    let classes = volume_snapshot_classes(&driver.client)
        .list(&Default::default())
        .await?;
    classes
        .items
        .iter()
        .find(|c| {
            c.data["driver"].as_str() == Some(volume_driver)
                && c.annotations().get(DEFAULT_CLASS).map(String::as_str) == Some("true")
        })
        .map(|c| c.name_any())
        .ok_or_else(|| {
            Refusal::Failed(format!(
                "no VolumeSnapshotClass is named and driver {volume_driver} has no default one"
            ))
        })
}

/// Removes a deleted snapshot's content and stored copy (deletion policy Delete), then its
/// finalizer.
async fn release(driver: &CsiDriver, vs: &DynamicObject) -> Result<(), Error> {
    let content_name = vs.data["status"]["boundVolumeSnapshotContentName"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("snapcontent-{}", vs.uid().unwrap_or_default()));
    let contents = volume_snapshot_contents(&driver.client);
    if let Some(content) = contents.get_opt(&content_name).await?
        && content.data["spec"]["deletionPolicy"].as_str() != Some("Retain")
    {
        if let Some(handle) = content.data["status"]["snapshotHandle"].as_str() {
            let path = stored_path(driver, handle);
            super::sparse::remove_volume(&path)
                .map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
        }
        match contents
            .delete(&content_name, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let finalizers: Vec<&String> = vs.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    let patch = serde_json::json!({ "metadata": {
        "finalizers": finalizers, "resourceVersion": vs.resource_version() } });
    volume_snapshots(&driver.client, &vs.namespace().unwrap_or_default())
        .patch(
            &vs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}
