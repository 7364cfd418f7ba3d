//! The CSI driver stand-in against the real control plane: CSI clones of Filesystem and Block
//! claims (identical, sparse, grown), expansion and reclaim; VolumeSnapshots taken, restored,
//! deleted with their content, and refused for a claim of non-CSI storage; and a cloner-like
//! pod mounting a claim read-only, a Block claim as a device, and PEM text from a Secret in env.
//!
//! Local control plane only (the stand-in plays the driver): skipped with `CDI_TEST_KUBECONFIG`.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cdi_testenv::wait::until;
use cdi_testenv::{CSI_DRIVER, CSI_STORAGE_CLASS, SNAPSHOT_CLASS, TestCluster};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

const MI: u64 = 1 << 20;

/// What each test starts from: a local cluster with the CSI stand-in, a namespace, its claims.
struct Fixture {
    cluster: TestCluster,
    client: Client,
    ns: String,
    claims: Api<PersistentVolumeClaim>,
}

/// The fixture with a namespace named from `prefix`, or `None` against another cluster.
async fn fixture(prefix: &str) -> Option<Fixture> {
    let cluster = csi_cluster().await?;
    let client = cluster.client();
    let ns = cluster.create_namespace(prefix).await.expect("namespace");
    let claims = Api::namespaced(client.clone(), &ns);
    Some(Fixture {
        cluster,
        client,
        ns,
        claims,
    })
}

/// A local cluster with the CSI stand-in, or `None` against another cluster.
async fn csi_cluster() -> Option<TestCluster> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    if std::env::var_os(cdi_testenv::cluster::KUBECONFIG_ENV).is_some_and(|v| !v.is_empty()) {
        eprintln!("skipped: the CSI stand-in needs the local control plane");
        return None;
    }
    let binaries = BTreeMap::from([("busybox".to_string(), PathBuf::from("/bin/sh"))]);
    let cluster = TestCluster::start(binaries).await.expect("cluster");
    cluster.enable_csi_standin().await.expect("CSI stand-in");
    Some(cluster)
}

fn claim(
    name: &str,
    class: &str,
    size: &str,
    block: bool,
    source: serde_json::Value,
) -> PersistentVolumeClaim {
    let mut spec = serde_json::json!({
        "storageClassName": class,
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": if block { "Block" } else { "Filesystem" },
        "resources": { "requests": { "storage": size } },
    });
    if !source.is_null() {
        spec["dataSource"] = source;
    }
    serde_json::from_value(serde_json::json!({ "metadata": { "name": name }, "spec": spec }))
        .expect("claim")
}

/// Creates claim `name` (see [`claim`]).
async fn create_claim(
    claims: &Api<PersistentVolumeClaim>,
    name: &str,
    class: &str,
    size: &str,
    block: bool,
    source: serde_json::Value,
) {
    claims
        .create(
            &PostParams::default(),
            &claim(name, class, size, block, source),
        )
        .await
        .unwrap_or_else(|e| panic!("create claim {name}: {e}"));
}

fn claim_source(name: &str) -> serde_json::Value {
    serde_json::json!({ "kind": "PersistentVolumeClaim", "name": name })
}

fn snapshot_source(name: &str) -> serde_json::Value {
    serde_json::json!({ "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": name })
}

/// Waits until claim `name` is Bound and returns its volume.
async fn bound_volume(client: &Client, ns: &str, name: &str) -> PersistentVolume {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let volume = until(&format!("claim {name} to be bound"), || async {
        let pvc = claims.get(name).await.ok()?;
        (pvc.status?.phase.as_deref() == Some("Bound")).then_some(pvc.spec?.volume_name?)
    })
    .await;
    Api::<PersistentVolume>::all(client.clone())
        .get(&volume)
        .await
        .expect("volume")
}

/// The local path of a volume of the stand-in (CSI or hostPath).
fn local_path(pv: &PersistentVolume) -> PathBuf {
    let spec = pv.spec.as_ref().expect("spec");
    if let Some(h) = &spec.host_path {
        return PathBuf::from(&h.path);
    }
    let csi = spec.csi.as_ref().expect("a CSI volume");
    assert_eq!(csi.driver, CSI_DRIVER);
    PathBuf::from(
        &csi.volume_attributes.as_ref().expect("attributes")["kubelet-standin.cdi-rs.io/path"],
    )
}

fn capacity(pv: &PersistentVolume) -> String {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .expect("capacity")["storage"]
        .0
        .clone()
}

/// Bytes a file really occupies.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").blocks() * 512
}

/// A 16 MiB sparse image with data at its start, middle and end.
fn write_image(path: &Path, len: u64) {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .expect("open");
    f.set_len(len).expect("size");
    f.write_all_at(b"head", 0).expect("write");
    f.write_all_at(&[0x5a; 65536], len / 2).expect("write");
    f.write_all_at(b"tail", len - 4).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csi_clones_are_sparse_grown_copies_expand_and_are_reclaimed() {
    let Some(Fixture {
        cluster,
        client,
        ns,
        claims,
    }) = fixture("csi-clone").await
    else {
        return;
    };

    // The clone is asked for before its source exists: it waits for the source to be bound.
    create_claim(
        &claims,
        "fs-clone",
        CSI_STORAGE_CLASS,
        "32Mi",
        false,
        claim_source("fs-src"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = claims.get("fs-clone").await.expect("clone");
    assert!(
        early.spec.and_then(|s| s.volume_name).is_none(),
        "provisioned before its source existed"
    );

    create_claim(
        &claims,
        "fs-src",
        CSI_STORAGE_CLASS,
        "16Mi",
        false,
        serde_json::Value::Null,
    )
    .await;
    let src = local_path(&bound_volume(&client, &ns, "fs-src").await);
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    write_image(&src.join("disk.img"), 16 * MI);
    std::fs::write(src.join("sub/notes"), "small file").expect("write");
    // The first clone was provisioned once the source was bound, at the size it asked for.
    let clone_pv = bound_volume(&client, &ns, "fs-clone").await;
    let clone = local_path(&clone_pv);
    assert_eq!(capacity(&clone_pv), "32Mi");
    assert_ne!(clone, src);

    // A second clone, taken now that the source has content: identical and sparse.
    create_claim(
        &claims,
        "fs-clone2",
        CSI_STORAGE_CLASS,
        "16Mi",
        false,
        claim_source("fs-src"),
    )
    .await;
    let clone2 = local_path(&bound_volume(&client, &ns, "fs-clone2").await);
    assert_eq!(
        std::fs::read(src.join("disk.img")).ok(),
        std::fs::read(clone2.join("disk.img")).ok()
    );
    assert_eq!(
        std::fs::read_to_string(clone2.join("sub/notes"))
            .ok()
            .as_deref(),
        Some("small file")
    );
    assert!(
        allocated(&clone2.join("disk.img")) < 2 * MI,
        "clone allocates {}",
        allocated(&clone2.join("disk.img"))
    );

    // Block: the 16 MiB source cloned into 32 MiB: same bytes, then a hole to the new size.
    create_claim(
        &claims,
        "blk-src",
        CSI_STORAGE_CLASS,
        "16Mi",
        true,
        serde_json::Value::Null,
    )
    .await;
    let blk_src = local_path(&bound_volume(&client, &ns, "blk-src").await);
    write_image(&blk_src, 16 * MI);
    create_claim(
        &claims,
        "blk-clone",
        CSI_STORAGE_CLASS,
        "32Mi",
        true,
        claim_source("blk-src"),
    )
    .await;
    let blk_pv = bound_volume(&client, &ns, "blk-clone").await;
    let blk = local_path(&blk_pv);
    let bytes = std::fs::read(&blk).expect("read clone");
    assert_eq!(bytes.len() as u64, 32 * MI);
    assert_eq!(
        Some(&bytes[..16 * MI as usize]),
        std::fs::read(&blk_src).ok().as_deref()
    );
    assert!(bytes[16 * MI as usize..].iter().all(|b| *b == 0));
    assert!(
        allocated(&blk) < 2 * MI,
        "block clone allocates {}",
        allocated(&blk)
    );

    // A clone smaller than its source, or of another volume mode, is refused with an event.
    create_claim(
        &claims,
        "too-small",
        CSI_STORAGE_CLASS,
        "8Mi",
        true,
        claim_source("blk-src"),
    )
    .await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    let message = until("a ProvisioningFailed event for too-small", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some("too-small")
                    && e.reason.as_deref() == Some("ProvisioningFailed")
            })?
            .message
    })
    .await;
    assert!(message.contains("less than the size"), "{message}");

    // Expansion: the volume grows (sparsely) and the claim reports the new capacity.
    let grow =
        serde_json::json!({ "spec": { "resources": { "requests": { "storage": "48Mi" } } } });
    claims
        .patch("blk-clone", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .expect("expand");
    until("blk-clone to report 48Mi", || async {
        let pvc = claims.get("blk-clone").await.ok()?;
        (pvc.status?.capacity?.get("storage")?.0 == "48Mi").then_some(())
    })
    .await;
    assert_eq!(std::fs::metadata(&blk).expect("meta").len(), 48 * MI);
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&blk_pv.name_any())
        .await
        .expect("pv");
    assert_eq!(capacity(&pv), "48Mi");

    // Released volumes are deleted, with their backing (reclaim policy Delete).
    claims
        .delete("blk-clone", &DeleteParams::default())
        .await
        .expect("delete");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    until("the released volume to be deleted", || async {
        pvs.get_opt(&blk_pv.name_any())
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(!blk.exists(), "{} is left behind", blk.display());
    cluster
        .delete_namespace(&ns)
        .await
        .expect("delete namespace");
}

fn status(vs: &DynamicObject) -> &serde_json::Value {
    &vs.data["status"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_taken_restored_deleted_and_refused_for_other_storage() {
    let Some(Fixture {
        cluster,
        client,
        ns,
        claims,
    }) = fixture("csi-snap").await
    else {
        return;
    };
    let snapshots = cdi_testenv::kubelet::snapshot::volume_snapshots(&client, &ns);
    let contents = cdi_testenv::kubelet::snapshot::volume_snapshot_contents(&client);
    let pp = PostParams::default();
    let snapshot = |name: &str, claim: &str| -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": { "name": name },
            "spec": { "volumeSnapshotClassName": SNAPSHOT_CLASS, "source": { "persistentVolumeClaimName": claim } }
        }))
        .expect("snapshot")
    };

    create_claim(
        &claims,
        "src",
        CSI_STORAGE_CLASS,
        "16Mi",
        true,
        serde_json::Value::Null,
    )
    .await;
    let src = local_path(&bound_volume(&client, &ns, "src").await);
    write_image(&src, 16 * MI);

    // A restore asked for first waits until the snapshot is ready.
    create_claim(
        &claims,
        "restored",
        CSI_STORAGE_CLASS,
        "24Mi",
        true,
        snapshot_source("snap"),
    )
    .await;
    snapshots
        .create(&pp, &snapshot("snap", "src"))
        .await
        .expect("create snapshot");
    let ready = until("snap to be ready", || async {
        let vs = snapshots.get("snap").await.ok()?;
        (status(&vs)["readyToUse"].as_bool() == Some(true)).then_some(vs)
    })
    .await;
    assert_eq!(status(&ready)["restoreSize"], "16Mi");
    assert!(status(&ready)["creationTime"].is_string());
    let content_name = status(&ready)["boundVolumeSnapshotContentName"]
        .as_str()
        .expect("content")
        .to_string();
    let content = contents.get(&content_name).await.expect("content");
    let spec = &content.data["spec"];
    assert_eq!(
        (spec["driver"].as_str(), spec["deletionPolicy"].as_str()),
        (Some(CSI_DRIVER), Some("Delete"))
    );
    assert_eq!(spec["volumeSnapshotRef"]["name"], "snap");
    assert_eq!(content.data["status"]["readyToUse"], true);
    assert_eq!(
        content.data["status"]["restoreSize"].as_u64(),
        Some(16 * MI)
    );
    let handle = content.data["status"]["snapshotHandle"]
        .as_str()
        .expect("handle")
        .to_string();

    // Writes to the source after the snapshot do not reach the restore.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&src)
        .expect("open")
        .write_all_at(b"late", 8)
        .expect("write");
    let restored = local_path(&bound_volume(&client, &ns, "restored").await);
    let bytes = std::fs::read(&restored).expect("read");
    assert_eq!(bytes.len() as u64, 24 * MI);
    assert_eq!(&bytes[..4], b"head");
    assert_eq!(
        &bytes[8..12],
        &[0; 4],
        "the restore has a write made after the snapshot"
    );
    let mut expected = std::fs::read(&src).expect("read source");
    expected[8..12].fill(0);
    assert_eq!(&bytes[..16 * MI as usize], &expected[..]);
    assert!(allocated(&restored) < 2 * MI);

    // Deleting the snapshot removes its content and stored copy; the restore keeps its data.
    snapshots
        .delete("snap", &DeleteParams::default())
        .await
        .expect("delete snapshot");
    until("snap and its content to be gone", || async {
        let gone = snapshots.get_opt("snap").await.ok()?.is_none()
            && contents.get_opt(&content_name).await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    let stores: Vec<_> = walk_names(cluster_root(&restored));
    assert!(
        !stores.iter().any(|n| n == &handle),
        "stored copy {handle} left in {stores:?}"
    );
    assert_eq!(
        std::fs::read(&restored).ok().map(|b| b.len() as u64),
        Some(24 * MI)
    );

    // A claim of non-CSI storage gets an error in the snapshot's status, never a snapshot.
    create_claim(
        &claims,
        "plain",
        cdi_testenv::STORAGE_CLASS,
        "16Mi",
        false,
        serde_json::Value::Null,
    )
    .await;
    bound_volume(&client, &ns, "plain").await;
    snapshots
        .create(&pp, &snapshot("plain-snap", "plain"))
        .await
        .expect("create snapshot");
    let message = until("plain-snap to report an error", || async {
        let vs = snapshots.get("plain-snap").await.ok()?;
        status(&vs)["error"]["message"].as_str().map(str::to_string)
    })
    .await;
    assert!(message.contains("not a CSI volume"), "{message}");
    let vs = snapshots.get("plain-snap").await.expect("get");
    assert_ne!(status(&vs)["readyToUse"], true);
    assert!(status(&vs)["boundVolumeSnapshotContentName"].is_null());
    // It can still be deleted (no finalizer was added).
    snapshots
        .delete("plain-snap", &DeleteParams::default())
        .await
        .expect("delete");
    until("plain-snap to be gone", || async {
        snapshots
            .get_opt("plain-snap")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    cluster
        .delete_namespace(&ns)
        .await
        .expect("delete namespace");
}

/// The stand-in's root: the parent of `csi-volumes/`, where `volume` lives.
fn cluster_root(volume: &Path) -> PathBuf {
    volume
        .parent()
        .and_then(Path::parent)
        .expect("root")
        .to_path_buf()
}

/// Names of everything under `root/csi-snapshots`.
fn walk_names(root: PathBuf) -> Vec<String> {
    std::fs::read_dir(root.join("csi-snapshots"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloner_pod_reads_claims_read_only_and_as_devices_with_pem_from_a_secret() {
    let Some(Fixture {
        cluster,
        client,
        ns,
        claims,
    }) = fixture("csi-cloner").await
    else {
        return;
    };
    let pp = PostParams::default();
    create_claim(
        &claims,
        "fs",
        CSI_STORAGE_CLASS,
        "16Mi",
        false,
        serde_json::Value::Null,
    )
    .await;
    create_claim(
        &claims,
        "blk",
        CSI_STORAGE_CLASS,
        "16Mi",
        true,
        serde_json::Value::Null,
    )
    .await;
    std::fs::write(
        local_path(&bound_volume(&client, &ns, "fs").await).join("disk.img"),
        "fs-data",
    )
    .expect("write");
    write_image(
        &local_path(&bound_volume(&client, &ns, "blk").await),
        16 * MI,
    );

    let ca = cdi_testdata::pki::Ca::new("cdi-uploadserver-client-ca");
    let leaf = ca.client("ns/src-ns/target");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "cloner-tls" },
        "stringData": { "tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": ca.pem }
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&pp, &secret)
        .await
        .expect("secret");
    let from_secret =
        |key: &str| serde_json::json!({ "secretKeyRef": { "name": "cloner-tls", "key": key } });
    let script = "r=${CDI_ROOT:-}; { printf '%s' \"$CLIENT_CERT$CLIENT_KEY$SERVER_CA_CERT\" | md5sum; \
                  cat $r/var/run/cdi/clone/source/disk.img; echo; head -c 4 $r/dev/cdi-block-volume; } > $r/dev/termination-log";
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "cloner" },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "cdi-cloner", "image": "busybox", "command": ["sh", "-c", script],
                "env": [
                    { "name": "CLIENT_CERT", "valueFrom": from_secret("tls.crt") },
                    { "name": "CLIENT_KEY", "valueFrom": from_secret("tls.key") },
                    { "name": "SERVER_CA_CERT", "valueFrom": from_secret("ca.crt") }
                ],
                "volumeMounts": [{ "name": "source", "mountPath": "/var/run/cdi/clone/source", "readOnly": true }],
                "volumeDevices": [{ "name": "device", "devicePath": "/dev/cdi-block-volume" }]
            }],
            "volumes": [
                { "name": "source", "persistentVolumeClaim": { "claimName": "fs", "readOnly": true } },
                { "name": "device", "persistentVolumeClaim": { "claimName": "blk", "readOnly": true } }
            ]
        }
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&pp, &pod).await.expect("create pod");
    let done = until("the cloner pod to finish", || async {
        let pod = pods.get("cloner").await.ok()?;
        let phase = pod.status.as_ref()?.phase.clone()?;
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(pod)
    })
    .await;
    let log = cluster
        .kubelet()
        .map(|k| k.pod_log(&ns, "cloner", "cdi-cloner"))
        .unwrap_or_default();
    let status = done.status.expect("status");
    assert_eq!(
        status.phase.as_deref(),
        Some("Succeeded"),
        "{status:?}\n{log}"
    );
    let message = status.container_statuses.expect("statuses")[0]
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.message.clone())
        .expect("termination message");
    let pem = format!("{}{}{}", leaf.cert_pem, leaf.key_pem, ca.pem);
    let digest = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(pem.as_bytes())?;
            c.wait_with_output()
        })
        .expect("md5sum");
    let expected = format!("{}fs-data\nhead", String::from_utf8_lossy(&digest.stdout));
    assert_eq!(
        message, expected,
        "PEM env, read-only mount and device as the pod saw them"
    );
    cluster
        .delete_namespace(&ns)
        .await
        .expect("delete namespace");
}
