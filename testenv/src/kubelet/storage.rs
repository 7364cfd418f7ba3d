//! A hostPath provisioner for the stand-in's StorageClasses: one directory (Filesystem) or
//! sparse file (Block) per claim, bound by the controller-manager through a pre-set claimRef.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};

use crate::Error;

/// StorageClass with `Immediate` binding.
pub const STORAGE_CLASS: &str = "cdi-hostpath";
/// StorageClass with `WaitForFirstConsumer` binding.
pub const STORAGE_CLASS_WFFC: &str = "cdi-hostpath-wffc";
/// Annotation the scheduler sets on a WaitForFirstConsumer claim once a pod using it is placed.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// Creates (or keeps) the two StorageClasses; the Immediate one is the cluster default.
pub async fn ensure_storage_classes(client: &Client) -> Result<(), Error> {
    let api: Api<StorageClass> = Api::all(client.clone());
    for (name, mode, default) in [
        (STORAGE_CLASS, "Immediate", true),
        (STORAGE_CLASS_WFFC, "WaitForFirstConsumer", false),
    ] {
        let mut annotations = BTreeMap::new();
        if default {
            annotations.insert(
                "storageclass.kubernetes.io/is-default-class".to_string(),
                "true".to_string(),
            );
        }
        let sc = StorageClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(annotations),
                ..Default::default()
            },
            provisioner: "kubernetes.io/no-provisioner".into(),
            volume_binding_mode: Some(mode.into()),
            reclaim_policy: Some("Retain".into()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sc).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether `pvc` is ours to provision now.
pub fn wants_volume(pvc: &PersistentVolumeClaim) -> bool {
    let Some(spec) = &pvc.spec else { return false };
    if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
        || pvc.metadata.deletion_timestamp.is_some()
    {
        return false;
    }
    match spec.storage_class_name.as_deref() {
        Some(STORAGE_CLASS) => true,
        Some(STORAGE_CLASS_WFFC) => pvc.annotations().contains_key(SELECTED_NODE),
        _ => false,
    }
}

/// Bytes of a Kubernetes quantity such as `1Gi`, `1138166334`, `500M`, `1.5Gi`.
pub fn quantity_bytes(q: &str) -> Option<u64> {
    cdi_crds::quantity::parse_bytes(q)
}

/// Where the volume of a claim lives on this machine.
pub fn volume_path(root: &Path, pvc: &PersistentVolumeClaim, block: bool) -> PathBuf {
    let name = format!("{}_{}", pvc.namespace().unwrap_or_default(), pvc.name_any());
    root.join("volumes")
        .join(if block { format!("{name}.img") } else { name })
}

/// Creates the backing directory or file and a PersistentVolume pre-bound to `pvc`.
pub async fn provision(
    client: &Client,
    root: &Path,
    pvc: &PersistentVolumeClaim,
) -> Result<(), Error> {
    if pvc.spec.is_none() {
        return Ok(());
    }
    let block = is_block(pvc);
    let (request, bytes) = requested_storage(pvc)?;
    let path = volume_path(root, pvc, block);
    create_backing(&path, block, bytes)?;
    let mut pv = bound_volume(pvc, request, "cdi-testenv", "Retain");
    if let Some(spec) = pv.spec.as_mut() {
        spec.host_path = Some(HostPathVolumeSource {
            path: path.display().to_string(),
            type_: None,
        });
    }
    create_volume(client, &pv).await
}

/// Whether the claim asks for a raw block volume.
pub(crate) fn is_block(pvc: &PersistentVolumeClaim) -> bool {
    pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block")
}

/// The claim's storage request, as written and in bytes.
pub(crate) fn requested_storage(pvc: &PersistentVolumeClaim) -> Result<(Quantity, u64), Error> {
    let request = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .ok_or_else(|| Error::Setup(format!("claim {} requests no storage", pvc.name_any())))?;
    let bytes = quantity_bytes(&request.0).ok_or_else(|| {
        Error::Setup(format!(
            "claim {} requests storage {:?}",
            pvc.name_any(),
            request.0
        ))
    })?;
    Ok((request, bytes))
}

/// Creates the directory (Filesystem) or sparse file of `bytes` (Block) that backs a volume.
pub(crate) fn create_backing(path: &Path, block: bool, bytes: u64) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    if block {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        file.set_len(bytes)
            .map_err(|e| Error::io(format!("size {}", path.display()), e))
    } else {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))
    }
}

/// A PersistentVolume named after `pvc`'s UID, pre-bound to it through its claimRef, with
/// `capacity` and the claim's modes and class; the caller sets its volume source.
pub(crate) fn bound_volume(
    pvc: &PersistentVolumeClaim,
    capacity: Quantity,
    provisioned_by: &str,
    reclaim_policy: &str,
) -> PersistentVolume {
    let spec = pvc.spec.clone().unwrap_or_default();
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("pvc-{}", pvc.uid().unwrap_or_default())),
            annotations: Some(BTreeMap::from([(
                "pv.kubernetes.io/provisioned-by".to_string(),
                provisioned_by.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), capacity)])),
            access_modes: spec.access_modes,
            volume_mode: spec.volume_mode,
            storage_class_name: spec.storage_class_name,
            persistent_volume_reclaim_policy: Some(reclaim_policy.into()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: pvc.namespace(),
                name: Some(pvc.name_any()),
                uid: pvc.uid(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates `pv`; one that already exists (a retry) is fine.
pub(crate) async fn create_volume(client: &Client, pv: &PersistentVolume) -> Result<(), Error> {
    match Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), pv)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Completes the binding of `pvc` to the volume [`provision`] made for it, as the
/// controller-manager's binder would (claim `volumeName` and bind annotations, both statuses
/// Bound), for benchmarks that must not wait for the binder's pace.
pub async fn bind_now(client: &Client, pvc: &PersistentVolumeClaim) -> Result<(), Error> {
    let (request, _) = requested_storage(pvc)?;
    let pv_name = format!("pvc-{}", pvc.uid().unwrap_or_default());
    let ns = pvc.namespace().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let merge = |v: serde_json::Value| kube::api::Patch::Merge(v);
    let params = kube::api::PatchParams::default();
    volumes
        .patch_status(
            &pv_name,
            &params,
            &merge(serde_json::json!({"status": {"phase": "Bound"}})),
        )
        .await?;
    claims
        .patch(
            &pvc.name_any(),
            &params,
            &merge(serde_json::json!({
                "metadata": {"annotations": {
                    "pv.kubernetes.io/bind-completed": "yes",
                    "pv.kubernetes.io/bound-by-controller": "yes"}},
                "spec": {"volumeName": pv_name},
            })),
        )
        .await?;
    let modes = pvc.spec.as_ref().and_then(|s| s.access_modes.clone());
    claims
        .patch_status(
            &pvc.name_any(),
            &params,
            &merge(serde_json::json!({"status": {
                "phase": "Bound", "accessModes": modes, "capacity": {"storage": request}}})),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::quantity_bytes;

    #[test]
    fn quantities_in_binary_and_decimal_units() {
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("1138166334"), Some(1_138_166_334));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("1.5Ki"), Some(1536));
        assert_eq!(quantity_bytes("1Qi"), None);
        assert_eq!(quantity_bytes("-1"), None);
    }
}
