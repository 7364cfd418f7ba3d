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

/// Bytes a file really occupies on disk.
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// Checks that `target`'s image holds `source`'s bytes (zeros beyond them, if it is larger) and
/// is as sparse as `source` (within 1 MiB).
async fn assert_copied(env: &Env, ns_source: &str, source: &str, ns: &str, target: &str) {
    let (from, to) = (
        disk_image(env, ns_source, source)
            .await
            .expect("source image"),
        disk_image(env, ns, target).await.expect("target image"),
    );
    let (a, b) = (
        std::fs::read(&from).expect("source"),
        std::fs::read(&to).expect("target"),
    );
    assert!(b.len() >= a.len(), "{target}: smaller than its source");
    assert!(
        b[..a.len()] == a[..],
        "{target}: content differs from {source}"
    );
    assert!(
        b[a.len()..].iter().all(|x| *x == 0),
        "{target}: tail not zero"
    );
    assert!(
        allocated(&to) <= allocated(&from) + (1 << 20),
        "{target}: {} bytes allocated against the source's {}",
        allocated(&to),
        allocated(&from)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_assisted_copies_between_volume_modes_and_namespaces() {
    let env = env_with(&["cdi-importer", "cdi-uploadserver", "cdi-cloner"]).await;
    if !env.cluster.is_local() {
        return;
    }
    // cdi-apiserver's token key: the test signs what its webhook would.
    let keys = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
    let key_file = env.logs.path().join("id_rsa.pub");
    std::fs::write(&key_file, keys.public_key_pem()).expect("public key");
    let issuer = cdi_token::Issuer::from_rsa_pem(keys.serialize_pem().as_bytes()).expect("issuer");
    let controller = start_controller_with(
        &env,
        "cdi-controller-host-assisted",
        env.cluster.kubeconfig(),
        &[format!("--token-public-key={}", key_file.display())],
    );
    let golden = env
        .cluster
        .create_namespace("golden")
        .await
        .expect("namespace");
    let vms = env
        .cluster
        .create_namespace("vms")
        .await
        .expect("namespace");
    let golden_dvs: Api<DataVolume> = Api::namespaced(env.client.clone(), &golden);
    let vm_dvs: Api<DataVolume> = Api::namespaced(env.client.clone(), &vms);

    // Golden images on the stand-in's hostPath class (its profile says copy): a Filesystem one
    // and a Block one, both holding the qcow2's data with holes.
    let (qcow2, _) = qcow2_image();
    let server = serve(qcow2);
    for (name, mode) in [("golden-fs", "Filesystem"), ("golden-block", "Block")] {
        create(
            &golden_dvs,
            &data_volume(
                name,
                json!({"source": {"http": {"url": server.url("/file")}},
                       "storage": {"volumeMode": mode,
                                   "resources": {"requests": {"storage": "64Mi"}}}}),
            ),
        )
        .await;
    }
    for name in ["golden-fs", "golden-block"] {
        wait_phase(&golden_dvs, name, DataVolumePhase::Succeeded).await;
    }

    // Filesystem → Filesystem, Filesystem → Block, Block → Filesystem; sizes from the source.
    for (name, source, mode) in [
        ("fs-to-fs", "golden-fs", "Filesystem"),
        ("fs-to-block", "golden-fs", "Block"),
        ("block-to-fs", "golden-block", "Filesystem"),
    ] {
        create(
            &golden_dvs,
            &data_volume(
                name,
                json!({"source": {"pvc": {"namespace": golden, "name": source}},
                       "storage": {"volumeMode": mode}}),
            ),
        )
        .await;
    }
    for (name, source) in [
        ("fs-to-fs", "golden-fs"),
        ("fs-to-block", "golden-fs"),
        ("block-to-fs", "golden-block"),
    ] {
        let dv = wait_phase(&golden_dvs, name, DataVolumePhase::Succeeded).await;
        assert_eq!(
            dv.status.and_then(|s| s.progress).as_deref(),
            Some("100.0%")
        );
        assert_eq!(
            claim_annotation(&env, &golden, name, "cdi.kubevirt.io/cloneType")
                .await
                .as_deref(),
            Some("copy")
        );
        assert_copied(&env, &golden, source, &golden, name).await;
        let reasons = event_reasons(&env.client, &golden, name).await;
        for reason in ["CloneScheduled", "CloneSucceeded"] {
            assert!(reasons.contains(&reason.to_owned()), "{name}: {reasons:?}");
        }
    }

    // Across namespaces: refused without a clone token, done with one.
    let cross = |name: &str| {
        data_volume(
            name,
            json!({"source": {"pvc": {"namespace": golden, "name": "golden-fs"}},
                   "storage": {}}),
        )
    };
    create(&vm_dvs, &cross("no-token")).await;
    let failed = wait_phase(&vm_dvs, "no-token", DataVolumePhase::Failed).await;
    let (_, reason, message) = condition(&failed, DataVolumeConditionType::Bound);
    assert_eq!(reason, "ErrUnableToClone");
    assert!(message.contains("clone.token"), "{message}");

    let payload = cdi_token::Payload::clone_claim("golden-fs", &golden, "vm-disk", &vms);
    let token = issuer
        .issue(&payload, std::time::SystemTime::now())
        .expect("token");
    let mut with_token = cross("vm-disk");
    with_token
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(cdi_crds::annotations::clone::TOKEN.into(), token);
    create(&vm_dvs, &with_token).await;
    let done = wait_phase(&vm_dvs, "vm-disk", DataVolumePhase::Succeeded).await;
    assert_copied(&env, &golden, "golden-fs", &vms, "vm-disk").await;

    // The cloner ran beside the source and is gone with its certificate.
    let target_uid = claim_uid(&env, &vms, "vm-disk").await;
    let cloner = format!("{target_uid}-source-pod");
    pod_gone(&env.client, &golden, &cloner).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), &golden);
    eventually("the cloner's certificate to be deleted", || {
        let (secrets, cloner) = (secrets.clone(), cloner.clone());
        async move { secrets.get_opt(&cloner).await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(done.status.is_some());
    drop(controller);
}

/// The UID of claim `name`.
async fn claim_uid(env: &Env, ns: &str, name: &str) -> String {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), ns);
    claims
        .get(name)
        .await
        .expect("claim")
        .metadata
        .uid
        .unwrap_or_default()
}
