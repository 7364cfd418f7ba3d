//! Clones end to end on the test control plane, whose kubelet stand-in plays a CSI driver
//! (`enable_csi_standin`: clones and snapshots of hostPath-like volumes): CSI clones, smart
//! clones through a VolumeSnapshot, restores from a VolumeSnapshot source, `sourceRef` through
//! a DataSource, and what a clone waits for.

mod support;

use cdi_crds::{DataSource, DataVolume, DataVolumeConditionType, DataVolumePhase};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

use support::*;

const CSI: &str = cdi_testenv::CSI_STORAGE_CLASS;

/// A `storage` spec on the CSI stand-in's class, Filesystem, with `size` if given.
fn csi_storage(size: Option<&str>) -> serde_json::Value {
    let mut s = json!({"storageClassName": CSI, "volumeMode": "Filesystem",
                       "accessModes": ["ReadWriteOnce"]});
    if let Some(size) = size {
        s["resources"] = json!({"requests": {"storage": size}});
    }
    s
}

/// The bytes of claim `name`'s image.
async fn image_bytes(env: &Env, ns: &str, name: &str) -> Vec<u8> {
    let path = disk_image(env, ns, name)
        .await
        .unwrap_or_else(|| panic!("no local image for {name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The claim's annotation `key`.
async fn claim_annotation(env: &Env, ns: &str, name: &str, key: &str) -> Option<String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), ns);
    claims
        .get(name)
        .await
        .ok()?
        .metadata
        .annotations?
        .get(key)
        .cloned()
}

/// The Bound condition's message once its reason is `reason`.
fn bound_message(dv: &DataVolume, reason: &str) -> Option<String> {
    let c = dv
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == DataVolumeConditionType::Bound)?;
    (c.reason.as_deref() == Some(reason)).then(|| c.message.clone().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csi_smart_snapshot_and_datasource_clones_end_identical() {
    let env = env().await;
    if !env.cluster.is_local() {
        return;
    }
    env.cluster
        .enable_csi_standin()
        .await
        .expect("the CSI stand-in");
    let _controller = start_controller(&env, "cdi-controller-clone");
    let ns = env
        .cluster
        .create_namespace("clone")
        .await
        .expect("namespace");
    let dvs: Api<DataVolume> = Api::namespaced(env.client.clone(), &ns);

    // The golden image, imported into a claim of the CSI class.
    let (qcow2, _) = qcow2_image();
    let server = serve(qcow2);
    create(
        &dvs,
        &data_volume(
            "golden",
            json!({"source": {"http": {"url": server.url("/file")}},
                   "storage": csi_storage(Some("64Mi"))}),
        ),
    )
    .await;
    wait_phase(&dvs, "golden", DataVolumePhase::Succeeded).await;
    let golden = image_bytes(&env, &ns, "golden").await;
    let pvc_source = json!({"pvc": {"namespace": ns, "name": "golden"}});

    // The profile of a Ceph RBD class advises csi-clone: the claim names its source and the
    // driver copies it. No size: the source's is taken.
    create(
        &dvs,
        &data_volume(
            "by-csi",
            json!({"source": pvc_source, "storage": csi_storage(None)}),
        ),
    )
    .await;
    wait_phase(&dvs, "by-csi", DataVolumePhase::Succeeded).await;
    assert_eq!(
        claim_annotation(&env, &ns, "by-csi", "cdi.kubevirt.io/cloneType")
            .await
            .as_deref(),
        Some("csi-clone")
    );
    assert!(
        image_bytes(&env, &ns, "by-csi").await == golden,
        "CSI clone differs"
    );
    let reasons = event_reasons(&env.client, &ns, "by-csi").await;
    assert!(
        reasons.contains(&"CloneSucceeded".to_owned()),
        "{reasons:?}"
    );

    // Asked for snapshots, the clone goes through a VolumeSnapshot, deleted afterwards.
    let profiles: Api<cdi_crds::StorageProfile> = Api::all(env.client.clone());
    profiles
        .patch(
            CSI,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cloneStrategy": "snapshot"}})),
        )
        .await
        .expect("profile patched");
    eventually("the profile to advise snapshot clones", || {
        let profiles = profiles.clone();
        async move {
            let p = profiles.get(CSI).await.ok()?;
            (p.status?.clone_strategy?.as_str() == "snapshot").then_some(())
        }
    })
    .await;
    create(
        &dvs,
        &data_volume(
            "by-snapshot",
            json!({"source": pvc_source, "storage": csi_storage(Some("64Mi"))}),
        ),
    )
    .await;
    let done = wait_phase(&dvs, "by-snapshot", DataVolumePhase::Succeeded).await;
    assert_eq!(
        claim_annotation(&env, &ns, "by-snapshot", "cdi.kubevirt.io/cloneType")
            .await
            .as_deref(),
        Some("snapshot")
    );
    assert!(
        image_bytes(&env, &ns, "by-snapshot").await == golden,
        "smart clone differs"
    );
    let snapshots: Api<DynamicObject> =
        cdi_testenv::kubelet::snapshot::volume_snapshots(&env.client, &ns);
    let tmp = format!(
        "tmp-snapshot-{}",
        done.metadata.uid.clone().unwrap_or_default()
    );
    eventually("the smart clone's snapshot to be deleted", || {
        let snapshots = snapshots.clone();
        let tmp = tmp.clone();
        async move { snapshots.get_opt(&tmp).await.ok()?.is_none().then_some(()) }
    })
    .await;

    // A VolumeSnapshot as the source: restored by the driver.
    let snapshot: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": "golden-snap"},
        "spec": {"volumeSnapshotClassName": cdi_testenv::SNAPSHOT_CLASS,
                 "source": {"persistentVolumeClaimName": "golden"}}
    }))
    .expect("snapshot");
    snapshots
        .create(&PostParams::default(), &snapshot)
        .await
        .expect("snapshot created");
    create(
        &dvs,
        &data_volume(
            "from-snapshot",
            json!({"source": {"snapshot": {"namespace": ns, "name": "golden-snap"}},
                   "storage": csi_storage(None)}),
        ),
    )
    .await;
    wait_phase(&dvs, "from-snapshot", DataVolumePhase::Succeeded).await;
    assert!(
        image_bytes(&env, &ns, "from-snapshot").await == golden,
        "restore differs"
    );

    // sourceRef: through a Ready DataSource; one whose claim does not exist keeps its
    // DataVolume waiting, with the reason.
    let sources: Api<DataSource> = Api::namespaced(env.client.clone(), &ns);
    for (name, claim) in [("fedora", "golden"), ("later", "not-yet")] {
        let ds: DataSource = serde_json::from_value(json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
            "metadata": {"name": name},
            "spec": {"source": {"pvc": {"namespace": ns, "name": claim}}}
        }))
        .expect("DataSource");
        sources
            .create(&PostParams::default(), &ds)
            .await
            .expect("DataSource created");
    }
    for (dv, ds) in [("by-ref", "fedora"), ("waits", "later")] {
        create(
            &dvs,
            &data_volume(
                dv,
                json!({"sourceRef": {"kind": "DataSource", "name": ds},
                       "storage": csi_storage(None)}),
            ),
        )
        .await;
    }
    wait_phase(&dvs, "by-ref", DataVolumePhase::Succeeded).await;
    assert!(
        image_bytes(&env, &ns, "by-ref").await == golden,
        "sourceRef clone differs"
    );
    let ready = sources.get("fedora").await.expect("DataSource");
    let status = ready.status.expect("status");
    assert_eq!(
        status.source.and_then(|s| s.pvc).map(|p| p.name),
        Some("golden".to_owned())
    );
    let waiting = eventually("the DataVolume to wait for its DataSource", || {
        let dvs = dvs.clone();
        async move {
            let dv = dvs.get("waits").await.ok()?;
            bound_message(&dv, "DataSourceNotReady")
        }
    })
    .await;
    assert!(waiting.contains("NotFound"), "{waiting}");
    assert_eq!(
        phase(&dvs.get("waits").await.expect("dv")),
        Some(DataVolumePhase::Pending)
    );

    // A target smaller than its source is refused with the sizes, and waits.
    create(
        &dvs,
        &data_volume(
            "too-small",
            json!({"source": pvc_source, "storage": csi_storage(Some("16Mi"))}),
        ),
    )
    .await;
    let message = eventually("the small target to be refused", || {
        let dvs = dvs.clone();
        async move {
            let dv = dvs.get("too-small").await.ok()?;
            bound_message(&dv, "CloneValidationFailed")
        }
    })
    .await;
    assert!(message.contains("less than the source"), "{message}");
}
