//! Proves the test environment: a real apiserver accepts our CRDs and enforces their CEL rules,
//! watches and server-side apply of status work, the controller-manager collects garbage by
//! owner reference, and the kubelet stand-in runs pods to completion with their termination
//! message, restart count and claims.
//!
//! Runs against the local control plane, or the cluster named by `CDI_TEST_KUBECONFIG` (the
//! pod scenarios then need the `busybox` image to be pullable).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cdi_crds::DataVolume;
use cdi_testenv::TestCluster;
use cdi_testenv::wait::{TEST_TIMEOUT, until};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

async fn cluster() -> TestCluster {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    // Pods in these tests run "busybox"; the stand-in plays it with the machine's shell.
    let binaries = BTreeMap::from([("busybox".to_string(), PathBuf::from("/bin/sh"))]);
    match TestCluster::start(binaries).await {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// Applies every checked-in CRD and waits until each is Established.
async fn apply_crds(client: &Client) -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    match cdi_testenv::crds::apply_dir(client, &dir).await {
        Ok(names) => names,
        Err(e) => panic!("{e}"),
    }
}

fn data_volume(name: &str, source: serde_json::Value) -> DataVolume {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": { "name": name },
        "spec": { "source": source, "storage": { "resources": { "requests": { "storage": "1Gi" } } } }
    }))
    .expect("a valid DataVolume")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_watch_status_apply_and_garbage_collection() {
    let cluster = cluster().await;
    let client = cluster.client();
    let names = apply_crds(&client).await;
    assert!(
        names.contains(&"datavolumes.cdi.kubevirt.io".to_string()),
        "{names:?}"
    );
    let ns = cluster
        .create_namespace("e2e-crd")
        .await
        .expect("namespace");
    let dvs: Api<DataVolume> = Api::namespaced(client.clone(), &ns);

    // The CEL rules reject what upstream's webhook rejects, with our message.
    let mut two_sources = data_volume(
        "two-sources",
        serde_json::json!({ "blank": {}, "http": { "url": "http://x/y" } }),
    );
    two_sources.metadata.namespace = Some(ns.clone());
    let err = dvs
        .create(&PostParams::default(), &two_sources)
        .await
        .expect_err("two sources must be refused");
    let kube::Error::Api(status) = err else {
        panic!("expected an API refusal, got {err}")
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("exactly one"),
        "unexpected message: {}",
        status.message
    );

    // Watch from before the create, so the create and the status update both arrive.
    let watch_api = dvs.clone();
    let watch = tokio::spawn(async move {
        let cfg = watcher::Config::default().fields("metadata.name=blank");
        let stream = watcher(watch_api, cfg).applied_objects();
        let mut stream = std::pin::pin!(stream);
        let mut phases = Vec::new();
        while let Some(dv) = stream.try_next().await.expect("watch") {
            let phase = dv
                .status
                .as_ref()
                .and_then(|s| s.phase.as_ref())
                .map(|p| p.to_string());
            phases.push(phase.clone().unwrap_or_default());
            if phase.as_deref() == Some("Succeeded") {
                return phases;
            }
        }
        phases
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let created = dvs
        .create(
            &PostParams::default(),
            &data_volume("blank", serde_json::json!({ "blank": {} })),
        )
        .await
        .expect("create");
    assert!(
        created.status.is_none(),
        "status is a subresource; a create cannot set it"
    );

    // Server-side apply of the status subresource, as a controller does it.
    let status = serde_json::json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "status": { "phase": "Succeeded", "progress": "100.0%", "restartCount": 0, "claimName": "blank" }
    });
    let pp = PatchParams::apply("cdi-testenv-e2e").force();
    let patched = dvs
        .patch_status("blank", &pp, &Patch::Apply(&status))
        .await
        .expect("status apply");
    let st = patched.status.expect("status after apply");
    assert_eq!(
        st.phase.map(|p| p.to_string()).as_deref(),
        Some("Succeeded")
    );
    let managers: Vec<_> = patched
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "cdi-testenv-e2e"),
        "{managers:?}"
    );

    let phases = tokio::time::timeout(TEST_TIMEOUT, watch)
        .await
        .expect("watch saw the status")
        .expect("watch task");
    assert_eq!(
        phases.first().map(String::as_str),
        Some(""),
        "first event is the create: {phases:?}"
    );
    assert_eq!(
        phases.last().map(String::as_str),
        Some("Succeeded"),
        "{phases:?}"
    );

    // The controller-manager's garbage collector deletes what a DataVolume owns.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owned: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "owned", "ownerReferences": [{
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "name": "blank",
            "uid": patched.metadata.uid, "controller": true, "blockOwnerDeletion": true }] }
    }))
    .expect("config map");
    cms.create(&PostParams::default(), &owned)
        .await
        .expect("create owned");
    dvs.delete("blank", &DeleteParams::default())
        .await
        .expect("delete");
    until("the owned ConfigMap to be garbage-collected", || async {
        cms.get_opt("owned").await.ok()?.is_none().then_some(())
    })
    .await;
    cluster
        .delete_namespace(&ns)
        .await
        .expect("delete namespace");
}

fn shell_pod(name: &str, restart: &str, script: &str, claim: Option<&str>) -> Pod {
    let mut pod = serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "restartPolicy": restart,
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", script],
                "env": [
                    { "name": "GREETING", "value": "hello" },
                    { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }
                ],
                "volumeMounts": [{ "name": "scratch", "mountPath": "/scratch" }]
            }],
            "volumes": [{ "name": "scratch", "emptyDir": {} }]
        }
    });
    if let Some(claim) = claim {
        pod["spec"]["volumes"][0] = serde_json::json!({ "name": "scratch", "persistentVolumeClaim": { "claimName": claim } });
    }
    serde_json::from_value(pod).expect("pod")
}

/// Waits for a pod to reach Succeeded or Failed and returns it.
async fn finished(pods: &Api<Pod>, name: &str) -> Pod {
    until(&format!("pod {name} to finish"), || async {
        let pod = pods.get(name).await.ok()?;
        let phase = pod.status.as_ref()?.phase.clone()?;
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(pod)
    })
    .await
}

fn terminated(pod: &Pod) -> k8s_openapi::api::core::v1::ContainerStateTerminated {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    statuses
        .first()
        .and_then(|s| s.state.clone()?.terminated)
        .unwrap_or_else(|| panic!("no terminated state: {pod:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_to_completion_with_termination_message_restarts_and_claims() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = cluster
        .create_namespace("e2e-pod")
        .await
        .expect("namespace");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // Paths inside the "container" are under $CDI_ROOT with the stand-in, and real otherwise.
    let term = "${CDI_ROOT:-}/dev/termination-log";

    // Never: exit code, termination message and env (plain and from the downward API).
    let script = format!("printf '%s from %s' \"$GREETING\" \"$POD_NAME\" > {term}; exit 3");
    pods.create(
        &PostParams::default(),
        &shell_pod("once", "Never", &script, None),
    )
    .await
    .expect("create");
    let pod = finished(&pods, "once").await;
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed")
    );
    let t = terminated(&pod);
    assert_eq!(t.exit_code, 3);
    assert_eq!(t.message.as_deref(), Some("hello from once"));

    // OnFailure: fails once (a marker in the emptyDir survives the restart), then succeeds.
    let scratch = "${CDI_ROOT:-}/scratch";
    let script = format!(
        "if [ -e {scratch}/tried ]; then echo second-run > {term}; exit 0; fi; touch {scratch}/tried; echo first-run > {term}; exit 1"
    );
    pods.create(
        &PostParams::default(),
        &shell_pod("retry", "OnFailure", &script, None),
    )
    .await
    .expect("create");
    let pod = finished(&pods, "retry").await;
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded")
    );
    let status = &pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .expect("statuses")[0];
    assert_eq!(status.restart_count, 1);
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("last state");
    assert_eq!(
        (last.exit_code, last.message.as_deref()),
        (1, Some("first-run\n"))
    );
    assert_eq!(terminated(&pod).message.as_deref(), Some("second-run\n"));

    // A claim is provisioned and bound, the pod waits for it, and what it writes lands in the PV.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "data" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "16Mi" } } }
    }))
    .expect("pvc");
    pods.create(
        &PostParams::default(),
        &shell_pod(
            "writer",
            "Never",
            &format!("echo payload > {scratch}/file"),
            Some("data"),
        ),
    )
    .await
    .expect("create");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let early = pods.get("writer").await.expect("get");
    assert!(
        early
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .is_none(),
        "scheduled before its claim existed"
    );
    pvcs.create(&PostParams::default(), &pvc)
        .await
        .expect("create pvc");
    let pod = finished(&pods, "writer").await;
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded")
    );
    let bound = pvcs.get("data").await.expect("pvc");
    assert_eq!(
        bound.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Bound")
    );
    if cluster.is_local() {
        let pv = bound.spec.and_then(|s| s.volume_name).expect("volume name");
        let pv = Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(client.clone())
            .get(&pv)
            .await
            .expect("pv");
        let dir = PathBuf::from(pv.spec.and_then(|s| s.host_path).expect("hostPath").path);
        assert_eq!(
            std::fs::read_to_string(dir.join("file")).expect("file in the PV"),
            "payload\n"
        );
    }

    // Deleting a running pod stops its process and removes the object.
    pods.create(
        &PostParams::default(),
        &shell_pod("sleeper", "Always", "sleep 600", None),
    )
    .await
    .expect("create");
    until("sleeper to run", || async {
        let p = pods.get("sleeper").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    pods.delete("sleeper", &DeleteParams::default())
        .await
        .expect("delete");
    until("sleeper to be deleted", || async {
        pods.get_opt("sleeper").await.ok()?.is_none().then_some(())
    })
    .await;
    cluster
        .delete_namespace(&ns)
        .await
        .expect("delete namespace");
}
