//! Golden-image pipelines end to end on the test control plane: DataImportCrons polling a
//! local registry (Debian's `docker-registry`, over TLS with a password) whose tag the test
//! moves. The controller runs under the shipped RBAC with `--dataimportcron-poll-interval 2`,
//! so a cron with a schedule polls every 2 s instead of on its minutes. Claims are on the CSI
//! stand-in's class, so a DataVolume with `sourceRef` to the managed DataSource is a CSI clone
//! (from a claim) or a restore (from a snapshot): the class's profile keeps imports as
//! snapshots (a Ceph RBD driver, as upstream advises), and the first test sets it to claims.

mod support;

use cdi_crds::{DataImportCron, DataSource, DataVolume, DataVolumePhase, StorageProfile};
use cdi_testdata::registry::{Compression, RegistryConfig, RegistryServer, image, layer};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use support::*;

const CSI: &str = cdi_testenv::CSI_STORAGE_CLASS;
const CRON_LABEL: &str = "cdi.kubevirt.io/dataImportCron";

/// A 1 MiB raw disk whose bytes depend on `version`.
fn disk(version: u8) -> Vec<u8> {
    (0..(1u32 << 20))
        .map(|i| (i % 251) as u8 ^ version.wrapping_mul(37))
        .collect()
}

/// Pushes the containerDisk of `version` as `repository:tag`; returns its digest.
fn push(registry: &RegistryServer, repository: &str, tag: &str, version: u8) -> String {
    registry.push(
        repository,
        tag,
        &image(
            vec![layer(
                &[("disk/disk.img", &disk(version))],
                Compression::Gzip,
            )],
            &[("version", &version.to_string())],
            "amd64",
        ),
    )
}

/// The import of `digest` for DataSource `ds`, named as upstream names it.
fn import_name(ds: &str, digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    format!("{ds}-{}", &hex[..12])
}

fn cron(name: &str, ds: &str, url: &str, extra: serde_json::Value) -> DataImportCron {
    let mut spec = json!({
        "template": {"spec": {
            "source": {"registry": {"url": url, "secretRef": "registry-login",
                                    "certConfigMap": "registry-ca"}},
            "storage": {"storageClassName": CSI, "volumeMode": "Filesystem",
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "64Mi"}}}}},
        "schedule": "* * * * *",
        "managedDataSource": ds,
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataImportCron",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("a DataImportCron")
}

/// The names of the imports labelled with cron `name`.
async fn imports(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let dvs: Api<DataVolume> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = dvs
        .list(&ListParams::default().labels(&format!("{CRON_LABEL}={name}")))
        .await
        .expect("list imports")
        .items
        .iter()
        .map(|d| d.name_any())
        .collect();
    names.sort();
    names
}

/// Waits until DataSource `ds` is Ready and points at claim `claim`.
async fn wait_data_source(client: &Client, ns: &str, ds: &str, claim: &str) {
    wait_data_source_on(client, ns, ds, "pvc", claim).await
}

/// Waits until DataSource `ds` is Ready and points at the `kind` (`pvc` or `snapshot`) `name`.
async fn wait_data_source_on(client: &Client, ns: &str, ds: &str, kind: &str, name: &str) {
    let api: Api<DataSource> = Api::namespaced(client.clone(), ns);
    eventually(
        &format!("DataSource {ds} to be Ready on {kind} {name}"),
        || {
            let api = api.clone();
            async move {
                let d = api.get_opt(ds).await.ok()??;
                let source = serde_json::to_value(&d.spec.source).ok()?;
                let points = source[kind]["name"] == name;
                let ready = d
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .any(|c| c.type_.as_str() == "Ready" && c.status.as_str() == "True");
                let resolved = serde_json::to_value(d.status.as_ref()?.source.as_ref()?).ok()?
                    [kind]["name"]
                    == name;
                (points && ready && resolved).then_some(())
            }
        },
    )
    .await;
}

/// The cron's condition `t` as (status, reason).
fn condition(cron: &DataImportCron, t: &str) -> Option<(String, String)> {
    let c = cron
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_str() == t)?;
    Some((
        c.status.as_str().to_owned(),
        c.reason.clone().unwrap_or_default(),
    ))
}

/// HEAD requests for `repository`'s manifests in the registry's access log.
fn manifest_heads(registry: &RegistryServer, repository: &str) -> usize {
    let needle = format!("\"HEAD /v2/{repository}/manifests/");
    registry
        .log()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

/// Sets the CSI class's profile to keep DataImportCron imports as `format`, and waits until
/// its status says so.
async fn set_import_format(client: &Client, format: &str) {
    let profiles: Api<StorageProfile> = Api::all(client.clone());
    eventually("the CSI class's StorageProfile", || {
        let profiles = profiles.clone();
        async move { profiles.get_opt(CSI).await.ok()?.map(|_| ()) }
    })
    .await;
    let patch = json!({"spec": {"dataImportCronSourceFormat": format}});
    profiles
        .patch(CSI, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("profile patched");
    wait_import_format(client, format).await;
}

/// Waits until the CSI class's profile keeps imports as `format`.
async fn wait_import_format(client: &Client, format: &str) {
    let profiles: Api<StorageProfile> = Api::all(client.clone());
    eventually(
        &format!("the CSI profile's import format to be {format}"),
        || {
            let profiles = profiles.clone();
            async move {
                let p = profiles.get_opt(CSI).await.ok()??;
                let f = p.status?.data_import_cron_source_format?;
                (f.as_str() == format).then_some(())
            }
        },
    )
    .await;
}

/// The controller under exactly the RBAC we ship (`deploy/rbac.yaml`, as `cdi-sa`), polling
/// every 2 s.
async fn start_under_rbac(env: &Env, name: &str) -> ControllerProcess {
    apply_rbac(env).await;
    let kubeconfig = service_account_kubeconfig(env, "cdi-sa").await;
    let poll = ["--dataimportcron-poll-interval".to_owned(), "2".to_owned()];
    start_controller_with(env, name, &kubeconfig, &poll)
}

async fn create_secret_and_ca(client: &Client, ns: &str, registry: &RegistryServer) {
    let (user, password) = registry.credentials.clone().expect("credentials");
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry-login"},
        "stringData": {"accessKeyId": user, "secretKey": password},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret created");
    let ca: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "registry-ca"},
        "data": {"ca.pem": registry.ca_pem.clone().expect("CA")},
    }))
    .expect("config map");
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ca)
        .await
        .expect("CA created");
}

/// What each test runs against: the CSI stand-in's cluster, the controller (shipped RBAC), a
/// namespace with the registry's login Secret and CA ConfigMap, and the registry.
struct Stage {
    env: Env,
    _controller: ControllerProcess,
    client: Client,
    ns: String,
    registry: RegistryServer,
    crons: Api<DataImportCron>,
    dvs: Api<DataVolume>,
    sources: Api<DataSource>,
}

impl Stage {
    /// `None` on a remote cluster (no CSI stand-in there).
    async fn start(namespace: &str) -> Option<Stage> {
        let env = env_with_csi().await?;
        let controller = start_under_rbac(&env, &format!("cdi-controller-{namespace}")).await;
        let ns = env
            .cluster
            .create_namespace(namespace)
            .await
            .expect("namespace");
        let client = env.client.clone();
        let registry = RegistryServer::start(RegistryConfig {
            tls: true,
            auth: true,
        });
        create_secret_and_ca(&client, &ns, &registry).await;
        Some(Stage {
            crons: Api::namespaced(client.clone(), &ns),
            dvs: Api::namespaced(client.clone(), &ns),
            sources: Api::namespaced(client.clone(), &ns),
            env,
            _controller: controller,
            client,
            ns,
            registry,
        })
    }
}

/// Waits until cron `name` is UpToDate; returns it.
async fn wait_up_to_date(crons: &Api<DataImportCron>, name: &str) -> DataImportCron {
    eventually(&format!("{name} to be UpToDate"), || {
        let crons = crons.clone();
        async move {
            let c = crons.get(name).await.ok()?;
            (condition(&c, "UpToDate")? == ("True".into(), "UpToDate".into())).then_some(c)
        }
    })
    .await
}

/// Creates DataVolume `name` cloning DataSource `ds` onto the CSI class, and waits for it.
async fn clone_data_source(dvs: &Api<DataVolume>, name: &str, ds: &str) {
    create(
        dvs,
        &data_volume(
            name,
            json!({"sourceRef": {"kind": "DataSource", "name": ds},
                   "storage": {"storageClassName": CSI, "volumeMode": "Filesystem",
                               "accessModes": ["ReadWriteOnce"]}}),
        ),
    )
    .await;
    wait_phase(dvs, name, DataVolumePhase::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_imports_each_new_digest_once_and_its_data_source_follows() {
    let Some(stage) = Stage::start("golden").await else {
        return;
    };
    set_import_format(&stage.client, "pvc").await;
    let Stage {
        env,
        client,
        ns,
        registry,
        crons,
        dvs,
        sources,
        ..
    } = &stage;
    let (client, ns) = (client.clone(), ns.clone());

    // Version 1, and two crons: fedora (kept on deletion, two imports kept) and cirros
    // (another repository, deleted with its imports).
    let d1 = push(registry, "disks/fedora", "latest", 1);
    let c1 = push(registry, "disks/cirros", "1", 11);
    let url = format!("docker://{}/disks/fedora:latest", registry.host());
    crons
        .create(
            &PostParams::default(),
            &cron("fedora-cron", "fedora", &url, json!({"importsToKeep": 2})),
        )
        .await
        .expect("fedora cron");
    let cirros_url = format!("docker://{}/disks/cirros:1", registry.host());
    crons
        .create(
            &PostParams::default(),
            &cron(
                "cirros-cron",
                "cirros",
                &cirros_url,
                json!({"retentionPolicy": "None"}),
            ),
        )
        .await
        .expect("cirros cron");

    // First import: the DataVolume named from the digest, pinned to it; the DataSource on it.
    let first = import_name("fedora", &d1);
    let dv = wait_phase(dvs, &first, DataVolumePhase::Succeeded).await;
    let pinned = dv
        .spec
        .source
        .as_ref()
        .and_then(|s| s.registry.as_ref())
        .and_then(|r| r.url.clone());
    assert_eq!(
        pinned,
        Some(format!("docker://{}/disks/fedora@{d1}", registry.host()))
    );
    wait_data_source(&client, &ns, "fedora", &first).await;
    assert!(
        disk_image(env, &ns, &first)
            .await
            .map(|p| std::fs::read(p).expect("image"))
            .is_some_and(|b| b.starts_with(&disk(1)))
    );
    let up = wait_up_to_date(crons, "fedora-cron").await;
    let status = up.status.clone().expect("status");
    assert_eq!(
        status.last_imported_pvc.map(|p| p.name).as_deref(),
        Some(first.as_str())
    );
    assert!(status.last_import_timestamp.is_some());

    // Unchanged: polls go on (lastExecutionTimestamp moves), one manifest HEAD each, nothing
    // is imported again.
    let polled_at = status.last_execution_timestamp.clone().expect("polled");
    let heads_before = manifest_heads(registry, "disks/fedora");
    eventually("three more polls", || {
        let crons = crons.clone();
        let polled_at = polled_at.clone();
        async move {
            let c = crons.get("fedora-cron").await.ok()?;
            let t = c.status?.last_execution_timestamp?;
            (t.0.as_second() >= polled_at.0.as_second() + 6).then_some(())
        }
    })
    .await;
    let heads = manifest_heads(registry, "disks/fedora") - heads_before;
    assert!(
        (3..=5).contains(&heads),
        "one manifest HEAD per poll, about 3 polls in 6 s: {heads}"
    );
    assert_eq!(
        imports(&client, &ns, "fedora-cron").await,
        std::slice::from_ref(&first)
    );

    // The tag moves: a new import, and the DataSource follows once it succeeded.
    let d2 = push(registry, "disks/fedora", "latest", 2);
    let second = import_name("fedora", &d2);
    wait_phase(dvs, &second, DataVolumePhase::Succeeded).await;
    wait_data_source(&client, &ns, "fedora", &second).await;

    // Once more: three imports made, two kept (the oldest goes).
    let d3 = push(registry, "disks/fedora", "latest", 3);
    let third = import_name("fedora", &d3);
    wait_phase(dvs, &third, DataVolumePhase::Succeeded).await;
    wait_data_source(&client, &ns, "fedora", &third).await;
    let mut kept = vec![second.clone(), third.clone()];
    kept.sort();
    eventually("garbage collection down to importsToKeep", || {
        let (client, ns, kept) = (client.clone(), ns.clone(), kept.clone());
        async move { (imports(&client, &ns, "fedora-cron").await == kept).then_some(()) }
    })
    .await;

    // A VM's disk clones the golden image through the DataSource.
    clone_data_source(dvs, "vm-disk", "fedora").await;
    let read = |name: String| {
        let env = &env;
        let ns = ns.clone();
        async move {
            let p = disk_image(env, &ns, &name).await.expect("local image");
            std::fs::read(p).expect("image")
        }
    };
    let golden = read(third.clone()).await;
    assert!(golden.starts_with(&disk(3)));
    assert!(read("vm-disk".into()).await == golden, "the clone differs");

    // Deleting a cron that retains all: its imports and DataSource stay.
    crons
        .delete("fedora-cron", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually("fedora-cron to be gone", || {
        let crons = crons.clone();
        async move {
            crons
                .get_opt("fedora-cron")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert_eq!(imports(&client, &ns, "fedora-cron").await, kept);
    assert!(sources.get_opt("fedora").await.expect("get").is_some());

    // Deleting one that retains nothing: its imports and DataSource go with it.
    let cirros = import_name("cirros", &c1);
    wait_phase(dvs, &cirros, DataVolumePhase::Succeeded).await;
    wait_data_source(&client, &ns, "cirros", &cirros).await;
    crons
        .delete("cirros-cron", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually("cirros-cron, its imports and DataSource to be gone", || {
        let (crons, sources, client, ns) =
            (crons.clone(), sources.clone(), client.clone(), ns.clone());
        async move {
            let gone = crons.get_opt("cirros-cron").await.ok()?.is_none()
                && sources.get_opt("cirros").await.ok()?.is_none()
                && imports(&client, &ns, "cirros-cron").await.is_empty();
            gone.then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_snapshot_storage_each_import_is_kept_as_a_snapshot() {
    let Some(stage) = Stage::start("golden-snap").await else {
        return;
    };
    // The stand-in plays a Ceph RBD driver with a snapshot class: snapshots advised.
    wait_import_format(&stage.client, "snapshot").await;
    let Stage {
        env,
        client,
        ns,
        registry,
        crons,
        dvs,
        sources,
        ..
    } = &stage;
    let (client, ns) = (client.clone(), ns.clone());
    let snapshots: Api<DynamicObject> =
        cdi_testenv::kubelet::snapshot::volume_snapshots(&client, &ns);
    let labelled = |cron: &str| ListParams::default().labels(&format!("{CRON_LABEL}={cron}"));

    let d1 = push(registry, "disks/fedora", "latest", 1);
    let url = format!("docker://{}/disks/fedora:latest", registry.host());
    crons
        .create(
            &PostParams::default(),
            &cron(
                "fedora-cron",
                "fedora",
                &url,
                json!({"importsToKeep": 1, "retentionPolicy": "None"}),
            ),
        )
        .await
        .expect("cron");

    // The import becomes a snapshot; its DataVolume (and claim) go; the DataSource is on it.
    let first = import_name("fedora", &d1);
    wait_data_source_on(&client, &ns, "fedora", "snapshot", &first).await;
    eventually("the first import's DataVolume to be dropped", || {
        let dvs = dvs.clone();
        let first = first.clone();
        async move { dvs.get_opt(&first).await.ok()?.is_none().then_some(()) }
    })
    .await;
    let up = wait_up_to_date(crons, "fedora-cron").await;
    assert_eq!(
        up.status
            .and_then(|s| s.source_format)
            .map(|f| f.as_str().to_owned())
            .as_deref(),
        Some("snapshot")
    );

    // A VM's disk restores the snapshot.
    clone_data_source(dvs, "vm-disk", "fedora").await;
    let restored = disk_image(env, &ns, "vm-disk").await.expect("local image");
    assert!(
        std::fs::read(restored)
            .expect("image")
            .starts_with(&disk(1)),
        "the restore differs from version 1"
    );

    // The tag moves: a new snapshot, the DataSource on it, the old snapshot collected.
    let d2 = push(registry, "disks/fedora", "latest", 2);
    let second = import_name("fedora", &d2);
    wait_data_source_on(&client, &ns, "fedora", "snapshot", &second).await;
    eventually("the old snapshot to be collected (importsToKeep 1)", || {
        let (snapshots, second, labels) =
            (snapshots.clone(), second.clone(), labelled("fedora-cron"));
        async move {
            let names: Vec<String> = snapshots
                .list(&labels)
                .await
                .ok()?
                .items
                .iter()
                .map(|s| s.name_any())
                .collect();
            (names == [second]).then_some(())
        }
    })
    .await;

    // retentionPolicy None: the snapshots and the DataSource go with the cron.
    crons
        .delete("fedora-cron", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually("the cron's snapshots and DataSource to be gone", || {
        let (crons, sources, snapshots, labels) = (
            crons.clone(),
            sources.clone(),
            snapshots.clone(),
            labelled("fedora-cron"),
        );
        async move {
            let gone = crons.get_opt("fedora-cron").await.ok()?.is_none()
                && sources.get_opt("fedora").await.ok()?.is_none()
                && snapshots.list(&labels).await.ok()?.items.is_empty();
            gone.then_some(())
        }
    })
    .await;
}
