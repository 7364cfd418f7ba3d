//! cdi-controller end to end, on a real kube-apiserver and controller-manager with the kubelet
//! stand-in running our `cdi-importer` as the importer image (see `testenv/`), or on the cluster
//! named by `CDI_TEST_KUBECONFIG` (then image contents are not checked, as the volumes are not
//! local). The CRDs are applied from `deploy/crds`, the controller runs as a process, and the
//! sources are served by the test HTTP server on 127.0.0.1.
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use cdi_crds::{DataVolume, DataVolumeConditionType, DataVolumePhase};
use cdi_testdata::http::{Behaviour, TestServer};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use sha2::Digest;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datavolumes_import_upload_and_fail_on_a_real_apiserver() {
    let env = env().await;
    let _controller = start_controller(&env, "cdi-controller-a");
    let ns = env
        .cluster
        .create_namespace("e2e")
        .await
        .expect("namespace");
    let dvs: Api<DataVolume> = Api::namespaced(env.client.clone(), &ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), &ns);

    // Invalid DataVolumes are refused at admission by the CRD's CEL rules.
    let refused = dvs
        .create(
            &PostParams::default(),
            &data_volume("no-source", json!({"storage": storage_1gi()})),
        )
        .await
        .expect_err("a DataVolume without a source is refused");
    assert!(refused.to_string().contains("no data source"), "{refused}");

    let (qcow2, qcow2_raw) = qcow2_image();
    let qcow2_sum = hex::encode(sha2::Sha256::digest(&qcow2));
    let qcow2_server = serve(qcow2.clone());
    let raw = cdi_testdata::raw::sparse_disk(7, 4 << 20, 4096);
    let gz_server = serve(gzip(&raw));
    let (vmdk, vmdk_raw) = qemu_image("vmdk", &["-o", "subformat=streamOptimized"]);
    let vmdk_server = serve(vmdk);
    let (vhdx, vhdx_raw) = qemu_image("vhdx", &[]);
    let vhdx_server = serve(vhdx);
    let missing = TestServer::start(Behaviour {
        statuses: std::iter::repeat_n(404, 50).collect(),
        ..Default::default()
    });
    let stalled = TestServer::start(Behaviour {
        body: vec![7u8; 16 << 20],
        ranges: true,
        stall_at: Some((4 << 20, Duration::from_secs(600))),
        ..Default::default()
    });

    let http = |url: String| json!({ "http": { "url": url } });
    for dv in [
        data_volume(
            "dv-http",
            json!({
                "source": { "http": { "url": qcow2_server.url("/file"),
                                      "checksum": format!("sha256:{qcow2_sum}") } },
                "storage": storage_1gi(),
            }),
        ),
        data_volume(
            "dv-gz",
            json!({ "source": http(gz_server.url("/file")), "storage": storage_1gi() }),
        ),
        data_volume(
            "dv-vmdk",
            json!({ "source": http(vmdk_server.url("/file")), "storage": storage_1gi() }),
        ),
        data_volume(
            "dv-vhdx",
            json!({ "source": http(vhdx_server.url("/file")), "storage": storage_1gi() }),
        ),
        data_volume(
            "dv-bad-sum",
            json!({
                "source": { "http": { "url": qcow2_server.url("/file"),
                                      "checksum": format!("sha256:{}", "0".repeat(64)) } },
                "storage": storage_1gi(),
            }),
        ),
        data_volume(
            "dv-404",
            json!({ "source": http(missing.url("/nope.img")), "storage": storage_1gi() }),
        ),
        data_volume(
            "dv-blank",
            json!({ "source": { "blank": {} }, "storage": storage_1gi() }),
        ),
        data_volume(
            "dv-upload",
            json!({ "source": { "upload": {} }, "storage": storage_1gi() }),
        ),
        data_volume(
            "dv-pvc",
            json!({
                "source": http(qcow2_server.url("/file")),
                "pvc": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
            }),
        ),
        data_volume(
            "dv-wffc",
            json!({
                "source": { "blank": {} },
                "storage": { "storageClassName": cdi_testenv::STORAGE_CLASS_WFFC,
                             "resources": { "requests": { "storage": "1Gi" } } },
            }),
        ),
        data_volume(
            "dv-stalled",
            json!({ "source": http(stalled.url("/file")), "storage": storage_1gi() }),
        ),
    ] {
        create(&dvs, &dv).await;
    }
    let mut immediate = data_volume(
        "dv-wffc-immediate",
        json!({
            "source": { "blank": {} },
            "storage": { "storageClassName": cdi_testenv::STORAGE_CLASS_WFFC,
                         "resources": { "requests": { "storage": "1Gi" } } },
        }),
    );
    immediate.metadata.annotations = Some(BTreeMap::from([(
        "cdi.kubevirt.io/storage.bind.immediate.requested".to_string(),
        "true".to_string(),
    )]));
    create(&dvs, &immediate).await;

    // http qcow2 with a checksum: upstream's claim, status and events; the image is exact.
    let dv = wait_phase(&dvs, "dv-http", DataVolumePhase::Succeeded).await;
    let status = dv.status.clone().expect("status");
    assert_eq!(status.progress.as_deref(), Some("100.0%"));
    assert_eq!(status.claim_name.as_deref(), Some("dv-http"));
    assert_eq!(status.restart_count, Some(0));
    assert_eq!(
        condition(&dv, DataVolumeConditionType::Bound),
        ("True".into(), "Bound".into(), "PVC dv-http Bound".into())
    );
    assert_eq!(condition(&dv, DataVolumeConditionType::Ready).0, "True");
    assert_eq!(
        condition(&dv, DataVolumeConditionType::Running),
        ("False".into(), "Completed".into(), "Import Complete".into())
    );
    let claim = claims.get("dv-http").await.expect("claim");
    let spec = claim.spec.clone().expect("claim spec");
    assert_eq!(
        spec.resources.and_then(|r| r.requests).expect("requests")["storage"].0,
        "1138166334"
    );
    let ann = claim.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(ann["cdi.kubevirt.io/storage.pod.phase"], "Succeeded");
    assert_eq!(
        ann["cdi.kubevirt.io/storage.import.importPodName"],
        "importer-dv-http"
    );
    assert_eq!(
        ann["cdi.kubevirt.io/storage.condition.running.reason"],
        "Completed"
    );
    assert_eq!(
        ann["cdi.kubevirt.io/createdForDataVolume"],
        dv.uid().expect("uid")
    );
    pod_gone(&env.client, &ns, "importer-dv-http").await;
    assert_image(&env, &ns, "dv-http", &qcow2_raw, GIB).await;
    let reasons = eventually("DataVolume events", || {
        let client = env.client.clone();
        let ns = ns.clone();
        async move {
            let r = event_reasons(&client, &ns, "dv-http").await;
            (r.contains(&"Bound".to_string()) && r.contains(&"ImportSucceeded".to_string()))
                .then_some(r)
        }
    })
    .await;
    assert!(!reasons.iter().any(|r| r.contains("Failed")), "{reasons:?}");

    // raw.gz, the pvc API (size used as written), blank.
    wait_phase(&dvs, "dv-gz", DataVolumePhase::Succeeded).await;
    assert_image(&env, &ns, "dv-gz", &raw, GIB).await;
    // vmdk (streamOptimized) and vhdx, converted as they stream in.
    wait_phase(&dvs, "dv-vmdk", DataVolumePhase::Succeeded).await;
    assert_image(&env, &ns, "dv-vmdk", &vmdk_raw, GIB).await;
    wait_phase(&dvs, "dv-vhdx", DataVolumePhase::Succeeded).await;
    assert_image(&env, &ns, "dv-vhdx", &vhdx_raw, GIB).await;
    wait_phase(&dvs, "dv-pvc", DataVolumePhase::Succeeded).await;
    let pvc_claim = claims.get("dv-pvc").await.expect("claim");
    assert_eq!(
        pvc_claim
            .spec
            .and_then(|s| s.resources)
            .and_then(|r| r.requests)
            .expect("requests")["storage"]
            .0,
        "1Gi"
    );
    wait_phase(&dvs, "dv-blank", DataVolumePhase::Succeeded).await;
    assert_image(&env, &ns, "dv-blank", &[], GIB).await;

    // Terminal failures fail the DataVolume at once, without restarts, and leave no image.
    for (name, reason) in [("dv-bad-sum", "ChecksumError"), ("dv-404", "NotFound")] {
        let dv = wait_phase(&dvs, name, DataVolumePhase::Failed).await;
        let (status, why, message) = condition(&dv, DataVolumeConditionType::Running);
        assert_eq!(
            (status.as_str(), why.as_str()),
            ("False", reason),
            "{name}: {message}"
        );
        // No restart loop: the pod is deleted on its first terminal failure (the stand-in
        // kubelet restarts after 1 s, so one restart may slip in before the delete lands).
        let restarts = dv
            .status
            .as_ref()
            .and_then(|s| s.restart_count)
            .unwrap_or(0);
        assert!(restarts <= 1, "{name}: {restarts} restarts");
        pod_gone(&env.client, &ns, &format!("importer-{name}")).await;
        if let Some(path) = disk_image(&env, &ns, name).await {
            assert!(
                !path.exists(),
                "{name}: a failed import left {}",
                path.display()
            );
        }
    }

    // Upload: scheduled with its pod, Service and TLS Secret (no upload server runs here).
    wait_phase(&dvs, "dv-upload", DataVolumePhase::UploadScheduled).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let pod = pods.get("cdi-upload-dv-upload").await.expect("upload pod");
    let container = &pod.spec.expect("spec").containers[0];
    let env_names: Vec<_> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    for want in [
        "TLS_KEY_FILE",
        "TLS_CERT_FILE",
        "CLIENT_CERT_FILE",
        "UPLOAD_IMAGE_SIZE",
        "CLIENT_NAME",
        "DEADLINE",
    ] {
        assert!(
            env_names.contains(&want),
            "upload pod env lacks {want}: {env_names:?}"
        );
    }
    let svc = Api::<Service>::namespaced(env.client.clone(), &ns)
        .get("cdi-upload-dv-upload")
        .await
        .expect("upload service");
    assert_eq!(svc.spec.and_then(|s| s.ports).expect("ports")[0].port, 443);
    let secret = Api::<Secret>::namespaced(env.client.clone(), &ns)
        .get("cdi-upload-dv-upload")
        .await
        .expect("upload secret");
    let keys: Vec<_> = secret.data.unwrap_or_default().into_keys().collect();
    assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
    let upload_claim = claims.get("dv-upload").await.expect("claim");
    let ann = upload_claim.metadata.annotations.unwrap_or_default();
    assert_eq!(
        ann.get("cdi.kubevirt.io/storage.upload.target")
            .map(String::as_str),
        Some("")
    );
    assert_eq!(
        ann.get("cdi.kubevirt.io/storage.uploadPodName")
            .map(String::as_str),
        Some("cdi-upload-dv-upload")
    );

    // The CDIConfig the controller created has its status filled in.
    let configs: Api<cdi_crds::CdiConfig> = Api::all(env.client.clone());
    let config_status = eventually("the CDIConfig status", || {
        let configs = configs.clone();
        async move { configs.get("config").await.ok()?.status }
    })
    .await;
    assert!(config_status.default_pod_resource_requirements.is_some());
    assert_eq!(
        config_status
            .filesystem_overhead
            .and_then(|o| o.global)
            .map(|p| p.0)
            .as_deref(),
        Some("0.06")
    );

    // Upstream's legacy flow: a plain claim annotated with an import endpoint is imported
    // too, its state recorded in its annotations.
    let legacy: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": "legacy", "annotations": {
            "cdi.kubevirt.io/storage.import.endpoint": qcow2_server.url("/file") } },
        "spec": { "accessModes": ["ReadWriteOnce"],
                  "resources": { "requests": { "storage": "64Mi" } } }
    }))
    .expect("a claim");
    claims
        .create(&PostParams::default(), &legacy)
        .await
        .expect("create the annotated claim");
    eventually("the annotated claim to be imported", || {
        let claims = claims.clone();
        async move {
            let c = claims.get("legacy").await.ok()?;
            let a = c.metadata.annotations?;
            (a.get("cdi.kubevirt.io/storage.pod.phase")? == "Succeeded").then_some(())
        }
    })
    .await;
    pod_gone(&env.client, &ns, "importer-legacy").await;
    // 64Mi less the 6 % filesystem overhead, rounded down to whole MiB (upstream's arithmetic).
    assert_image(&env, &ns, "legacy", &qcow2_raw, 60 << 20).await;

    // WaitForFirstConsumer: no importer until a consumer binds the claim, unless immediate
    // binding is asked for.
    wait_phase(&dvs, "dv-wffc", DataVolumePhase::WaitForFirstConsumer).await;
    wait_phase(&dvs, "dv-wffc-immediate", DataVolumePhase::Succeeded).await;
    assert!(
        pods.get_opt("importer-dv-wffc")
            .await
            .expect("get")
            .is_none()
    );

    // Progress is read from the running importer; deleting the DataVolume mid-import removes
    // its pod and claim.
    wait_phase(&dvs, "dv-stalled", DataVolumePhase::ImportInProgress).await;
    let progress = eventually("progress from the importer's metrics", || {
        let dvs = dvs.clone();
        async move {
            let p = dvs.get("dv-stalled").await.ok()?.status?.progress?;
            let value: f64 = p.strip_suffix('%')?.parse().ok()?;
            (value > 0.0).then_some(value)
        }
    })
    .await;
    assert!(progress < 100.0, "{progress}");
    dvs.delete("dv-stalled", &DeleteParams::background())
        .await
        .expect("delete");
    pod_gone(&env.client, &ns, "importer-dv-stalled").await;
    eventually("the claim of the deleted DataVolume to go", || {
        let claims = claims.clone();
        async move {
            claims
                .get_opt("dv-stalled")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
}

/// DataVolume `dv` in a new namespace (`prefix`), importing 8 MiB from a server that stalls 6 s
/// after 2 MiB, once it is in progress: its namespace, the bytes, and the server.
async fn slow_import(env: &Env, prefix: &str) -> (String, Vec<u8>, TestServer) {
    let ns = env
        .cluster
        .create_namespace(prefix)
        .await
        .expect("namespace");
    let dvs: Api<DataVolume> = Api::namespaced(env.client.clone(), &ns);
    let body: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    let server = TestServer::start(Behaviour {
        body: body.clone(),
        ranges: true,
        stall_at: Some((2 << 20, Duration::from_secs(6))),
        ..Default::default()
    });
    create(
        &dvs,
        &data_volume(
            "dv",
            json!({
                "source": { "http": { "url": server.url("/file") } },
                "storage": storage_1gi(),
            }),
        ),
    )
    .await;
    wait_phase(&dvs, "dv", DataVolumePhase::ImportInProgress).await;
    (ns, body, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_picks_up_where_it_was() {
    let env = env().await;
    let first = start_controller(&env, "cdi-controller-first");
    let (ns, body, _server) = slow_import(&env, "e2e-restart").await;
    let dvs: Api<DataVolume> = Api::namespaced(env.client.clone(), &ns);
    drop(first);

    // The importer finishes while no controller runs; the next one records it, running with
    // the ServiceAccount and RBAC of deploy/rbac.yaml (which proves they suffice).
    apply_rbac(&env).await;
    let kubeconfig = service_account_kubeconfig(&env, "cdi-sa").await;
    let second = start_controller_as(&env, "cdi-controller-second", &kubeconfig);
    let dv = wait_phase(&dvs, "dv", DataVolumePhase::Succeeded).await;
    assert_eq!(
        dv.status.and_then(|s| s.progress).as_deref(),
        Some("100.0%")
    );
    pod_gone(&env.client, &ns, "importer-dv").await;
    assert_image(&env, &ns, "dv", &body, GIB).await;
    let log = second.log_text();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the controller lacked a permission:\n{log}"
    );
}

/// The API server restarts while an import runs: the controller's watches break, resume
/// against a fresh watch cache (which answers `410 Gone` to their old resource versions) and
/// must neither stall nor act on stale objects. Before the fix the DataVolume succeeded a
/// minute or more after its import (one back-off for all of a controller's watches grew to
/// 30 s), and once a second importer pod was created for a claim already done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apiserver_restarted_mid_import_neither_stalls_nor_repeats_the_import() {
    let mut env = env().await;
    if !env.cluster.is_local() {
        return;
    }
    let controller = start_controller(&env, "cdi-controller-apiserver-restart");
    let (ns, body, _server) = slow_import(&env, "e2e-apiserver-restart").await;
    env.cluster
        .restart_apiserver()
        .await
        .expect("the apiserver restarts");
    let restarted = std::time::Instant::now();
    let dvs: Api<DataVolume> = Api::namespaced(env.cluster.client(), &ns);
    wait_phase(&dvs, "dv", DataVolumePhase::Succeeded).await;
    eprintln!(
        "Succeeded {:.1} s after the apiserver was back",
        restarted.elapsed().as_secs_f64()
    );
    assert_image(&env, &ns, "dv", &body, GIB).await;
    // Exactly one importer pod was ever created for the claim.
    let log = controller.log_text();
    assert_eq!(
        log.matches("Worker pod created.").count(),
        1,
        "a second importer pod was created:\n{log}"
    );
}

/// A client of the upload server behind `pod`, as the upload proxy is one: the controller's
/// proxy client certificate, the server signer's bundle, the Service's name resolved to the
/// port the kubelet stand-in serves the pod's 8443 on.
async fn upload_client(env: &Env, pod: &Pod) -> (reqwest::Client, String) {
    let secret = Api::<Secret>::namespaced(env.client.clone(), &env.cdi_namespace)
        .get("cdi-uploadserver-client-cert")
        .await
        .expect("the proxy's client certificate Secret");
    let data = secret.data.expect("data");
    let identity = [data["tls.crt"].0.clone(), data["tls.key"].0.clone()].concat();
    let bundle = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
        env.client.clone(),
        &env.cdi_namespace,
    )
    .get("cdi-uploadserver-signer-bundle")
    .await
    .expect("server signer bundle");
    let ca = bundle.data.expect("bundle data")["ca-bundle.crt"].clone();
    let ports: BTreeMap<String, u16> =
        serde_json::from_str(&pod.annotations()["kubelet-standin.cdi-rs.io/ports"])
            .expect("ports annotation");
    let ns = pod.namespace().expect("namespace");
    let host = format!("cdi-upload-dv-up.{ns}.svc");
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.as_bytes()).expect("ca"))
        .identity(reqwest::Identity::from_pem(&identity).expect("identity"))
        .resolve(&host, ([127, 0, 0, 1], ports["8443"]).into())
        .build()
        .expect("client");
    (client, format!("https://{host}:{}", ports["8443"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_datavolume_goes_ready_then_succeeded_through_the_upload_server() {
    let env = env_with(&["cdi-importer", "cdi-uploadserver"]).await;
    if !env.cluster.is_local() {
        return; // The upload pod is reached through the stand-in's port mapping.
    }
    let _controller = start_controller(&env, "cdi-controller-upload");
    let ns = env
        .cluster
        .create_namespace("e2e-upload")
        .await
        .expect("namespace");
    let dvs: Api<DataVolume> = Api::namespaced(env.client.clone(), &ns);
    create(
        &dvs,
        &data_volume(
            "dv-up",
            json!({ "source": { "upload": {} }, "storage": storage_1gi() }),
        ),
    )
    .await;
    wait_phase(&dvs, "dv-up", DataVolumePhase::UploadReady).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let pod = pods.get("cdi-upload-dv-up").await.expect("upload pod");
    let (client, base) = upload_client(&env, &pod).await;
    let (image, raw) = qcow2_image();
    let body = gzip(&image);
    let response = eventually("the upload server to take the upload", || {
        let (client, base, body) = (client.clone(), base.clone(), body.clone());
        async move {
            client
                .post(format!("{base}/v1beta1/upload"))
                .header(
                    "x-cdi-checksum",
                    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body))),
                )
                .body(body)
                .send()
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let dv = wait_phase(&dvs, "dv-up", DataVolumePhase::Succeeded).await;
    assert_eq!(
        dv.status.and_then(|s| s.progress).as_deref(),
        Some("100.0%")
    );
    let reasons = event_reasons(&env.client, &ns, "dv-up").await;
    for want in ["UploadScheduled", "UploadReady", "UploadSucceeded"] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no {want} event: {reasons:?}"
        );
    }
    assert_image(&env, &ns, "dv-up", &raw, GIB).await;
    pod_gone(&env.client, &ns, "cdi-upload-dv-up").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_datavolume_succeeds_through_the_upload_proxy_with_a_token_from_the_apiserver() {
    const GROUP: &str = "upload.cdi.kubevirt.io";
    let env = env_with(&["cdi-importer", "cdi-uploadserver"]).await;
    if !env.cluster.is_local() {
        return; // The API server and proxy run on this machine.
    }
    let _controller = start_controller(&env, "cdi-controller-proxy");
    let dir = tempfile::tempdir().expect("tempdir");
    // The API server and the proxy run as their ServiceAccounts of deploy/rbac.yaml, which
    // proves the rights we ship suffice.
    apply_rbac(&env).await;
    let apiserver_kubeconfig = service_account_kubeconfig(&env, "cdi-apiserver").await;
    let proxy_kubeconfig = service_account_kubeconfig(&env, "cdi-uploadproxy").await;

    // cdi-apiserver, registered through the aggregation layer.
    let signing = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
    let signing_key = dir.path().join("id_rsa");
    std::fs::write(&signing_key, signing.serialize_pem()).expect("write key");
    let public_key = dir.path().join("id_rsa.pub");
    std::fs::write(&public_key, signing.public_key_pem()).expect("write key");
    let api_ca = TestCa::new("cdi-apiserver-signer");
    let (api_cert, api_key) = api_ca.server_files(
        &[&cdi_testenv::aggregation::server_name(GROUP), "localhost"],
        &dir.path().join("apiserver"),
    );
    let api_port = cdi_testenv::process::free_port().expect("free port");
    let _apiserver = spawn_logged(
        &env,
        "cdi-apiserver",
        vec![
            format!("--listen=127.0.0.1:{api_port}"),
            format!("--tls-cert-file={}", api_cert.display()),
            format!("--tls-key-file={}", api_key.display()),
            format!("--signing-key={}", signing_key.display()),
            format!("--kubeconfig={}", apiserver_kubeconfig.display()),
        ],
    );
    wait_ready(
        "cdi-apiserver /readyz",
        &api_ca.client(),
        format!("https://localhost:{api_port}/readyz"),
    )
    .await;
    if let Err(e) = env
        .cluster
        .register_aggregated_api(GROUP, "v1beta1", api_port, &api_ca.pem)
        .await
    {
        panic!("{e}");
    }

    // cdi-uploadproxy, with the controller's client certificate and server signer bundle.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.cdi_namespace);
    let data = eventually("the proxy's client certificate Secret", || async {
        secrets
            .get_opt("cdi-uploadserver-client-cert")
            .await
            .ok()
            .flatten()
            .and_then(|s| s.data)
    })
    .await;
    let (client_cert, client_key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
    std::fs::write(&client_cert, &data["tls.crt"].0).expect("write");
    std::fs::write(&client_key, &data["tls.key"].0).expect("write");
    let bundles: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.client.clone(), &env.cdi_namespace);
    let bundle = eventually("the server signer bundle", || async {
        bundles
            .get_opt("cdi-uploadserver-signer-bundle")
            .await
            .ok()
            .flatten()
            .and_then(|c| c.data)
            .and_then(|d| d.get("ca-bundle.crt").cloned())
    })
    .await;
    let server_ca = dir.path().join("ca-bundle.crt");
    std::fs::write(&server_ca, bundle).expect("write");
    let proxy_ca = TestCa::new("cdi-uploadproxy-signer");
    let (proxy_cert, proxy_key) =
        proxy_ca.server_files(&["localhost"], &dir.path().join("uploadproxy"));
    let proxy_port = cdi_testenv::process::free_port().expect("free port");
    let _proxy = spawn_logged(
        &env,
        "cdi-uploadproxy",
        vec![
            "--listen-address=127.0.0.1".into(),
            format!("--listen-port={proxy_port}"),
            format!("--tls-cert={}", proxy_cert.display()),
            format!("--tls-key={}", proxy_key.display()),
            format!("--client-cert={}", client_cert.display()),
            format!("--client-key={}", client_key.display()),
            format!("--server-ca={}", server_ca.display()),
            format!("--token-public-key={}", public_key.display()),
            format!("--kubeconfig={}", proxy_kubeconfig.display()),
        ],
    );
    let proxy = proxy_ca.client();
    let proxy_url = format!("https://localhost:{proxy_port}");
    wait_ready(
        "cdi-uploadproxy /readyz",
        &proxy,
        format!("{proxy_url}/readyz"),
    )
    .await;

    // The DataVolume, as virtctl image-upload makes it.
    let ns = env
        .cluster
        .create_namespace("e2e-proxy")
        .await
        .expect("namespace");
    let dvs: Api<DataVolume> = Api::namespaced(env.client.clone(), &ns);
    create(
        &dvs,
        &data_volume(
            "dv-up",
            json!({ "source": { "upload": {} }, "storage": storage_1gi() }),
        ),
    )
    .await;
    wait_phase(&dvs, "dv-up", DataVolumePhase::UploadReady).await;

    let requests: Api<cdi_crds::UploadTokenRequest> = Api::namespaced(env.client.clone(), &ns);
    let token = requests
        .create(
            &PostParams::default(),
            &cdi_crds::UploadTokenRequest::new("token-for-virtctl", "dv-up"),
        )
        .await
        .expect("an UploadTokenRequest through the aggregated API")
        .status
        .and_then(|s| s.token)
        .expect("a token in status");

    let (image, raw) = qcow2_image();
    let body = gzip(&image);
    let upload = |token: String| {
        let (proxy, url, body) = (proxy.clone(), proxy_url.clone(), body.clone());
        async move {
            proxy
                .post(format!("{url}/v1beta1/upload"))
                .bearer_auth(token)
                .body(body)
                .send()
                .await
        }
    };

    // A forged token: one character of the signature changed.
    let mut forged = token.clone().into_bytes();
    let at = forged.len() - 2;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let refused = upload(forged).await.expect("the proxy answers");
    assert_eq!(refused.status(), 401, "{:?}", refused.text().await);
    assert_eq!(
        phase(&dvs.get("dv-up").await.expect("dv")),
        Some(DataVolumePhase::UploadReady),
        "nothing was written"
    );

    let response = cdi_testenv::wait::eventually(
        "the proxy to take the upload",
        Duration::from_secs(60),
        || {
            let upload = upload(token.clone());
            async move {
                let r = upload.await.ok()?;
                (r.status() != 503).then_some(r)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let dv = wait_phase(&dvs, "dv-up", DataVolumePhase::Succeeded).await;
    assert_eq!(
        dv.status.and_then(|s| s.progress).as_deref(),
        Some("100.0%")
    );
    let reasons = event_reasons(&env.client, &ns, "dv-up").await;
    for want in ["UploadScheduled", "UploadReady", "UploadSucceeded"] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no {want} event: {reasons:?}"
        );
    }
    assert_image(&env, &ns, "dv-up", &raw, GIB).await;
}

/// A Secret of string data in `ns`.
async fn create_secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name },
        "stringData": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_gcs_and_registry_datavolumes_import_with_their_secrets_and_cas() {
    use cdi_testdata::objectstore::{GcsEmulator, S3Server, service_account_key};
    use cdi_testdata::registry::{Compression, RegistryConfig, RegistryServer, image, layer};
    use k8s_openapi::api::core::v1::ConfigMap;

    let env = env().await;
    let _controller = start_controller(&env, "cdi-controller-sources");
    let ns = env
        .cluster
        .create_namespace("sources")
        .await
        .expect("namespace");
    let dvs: Api<DataVolume> = Api::namespaced(env.client.clone(), &ns);
    let (qcow2, qcow2_raw) = qcow2_image();

    // S3 (moto, checking signatures) with the secret's keys.
    let s3 = S3Server::start(true);
    s3.put("images", "fedora/disk.qcow2", &qcow2, None);
    create_secret(
        &env.client,
        &ns,
        "s3-keys",
        &[("accessKeyId", &s3.key_id), ("secretKey", &s3.secret)],
    )
    .await;

    // GCS (the emulator) with a service-account key whose gcs_base_url points at it.
    let gcs = GcsEmulator::start();
    gcs.put("images", "disk.qcow2.gz", &gzip(&qcow2));
    let dir = tempfile::tempdir().expect("tempdir");
    let key = service_account_key(dir.path(), &gcs.endpoint());
    let key_json = std::fs::read_to_string(&key).expect("key");
    create_secret(
        &env.client,
        &ns,
        "gcs-key",
        &[("credentials.json", &key_json)],
    )
    .await;

    // A registry over TLS with htpasswd: CA in a ConfigMap, user and password in a secret.
    let registry = RegistryServer::start(RegistryConfig {
        tls: true,
        auth: true,
    });
    registry.push(
        "disks/fedora",
        "42",
        &image(
            vec![layer(&[("disk/fedora.qcow2", &qcow2)], Compression::Gzip)],
            &[],
            "amd64",
        ),
    );
    let (user, password) = registry.credentials.clone().expect("credentials");
    create_secret(
        &env.client,
        &ns,
        "registry-login",
        &[("accessKeyId", &user), ("secretKey", &password)],
    )
    .await;
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &ns);
    let ca: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "registry-ca" },
        "data": { "ca.pem": registry.ca_pem.clone().expect("CA") },
    }))
    .expect("config map");
    config_maps
        .create(&PostParams::default(), &ca)
        .await
        .expect("CA config map");

    for dv in [
        data_volume(
            "dv-s3",
            json!({
                "source": { "s3": { "url": format!("{}/images/fedora/disk.qcow2", s3.endpoint()),
                                    "secretRef": "s3-keys" } },
                "storage": storage_1gi(),
            }),
        ),
        data_volume(
            "dv-gcs",
            json!({
                "source": { "gcs": { "url": "gs://images/disk.qcow2.gz", "secretRef": "gcs-key" } },
                "storage": storage_1gi(),
            }),
        ),
        data_volume(
            "dv-registry",
            json!({
                "source": { "registry": {
                    "url": format!("docker://{}/disks/fedora:42", registry.host()),
                    "secretRef": "registry-login",
                    "certConfigMap": "registry-ca",
                } },
                "storage": storage_1gi(),
            }),
        ),
        data_volume(
            "dv-s3-wrong-key",
            json!({
                "source": { "s3": { "url": format!("{}/images/fedora/disk.qcow2", s3.endpoint()) } },
                "storage": storage_1gi(),
            }),
        ),
    ] {
        create(&dvs, &dv).await;
    }
    for name in ["dv-s3", "dv-gcs", "dv-registry"] {
        let dv = wait_phase(&dvs, name, DataVolumePhase::Succeeded).await;
        let status = dv.status.clone().expect("status");
        assert_eq!(status.progress.as_deref(), Some("100.0%"), "{name}");
        assert_eq!(status.restart_count, Some(0), "{name}");
        assert_image(&env, &ns, name, &qcow2_raw, GIB).await;
    }
    // Without the secret, moto refuses the unsigned request: terminal, no restart loop.
    let dv = wait_phase(&dvs, "dv-s3-wrong-key", DataVolumePhase::Failed).await;
    let (_, reason, message) = condition(&dv, DataVolumeConditionType::Running);
    assert_eq!(reason, "Unauthorized", "{message}");
}

/// Two replicas, as a Deployment with two pods runs them: one takes the Lease and does all the
/// work, the other waits; when the leader stops, the other takes over and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_controller_replicas_only_the_leader_acts_and_the_other_takes_over() {
    let env = env().await;
    let ns = env
        .cluster
        .create_namespace("e2e-replicas")
        .await
        .expect("namespace");
    let dvs: Api<DataVolume> = Api::namespaced(env.client.clone(), &ns);
    let body: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 241) as u8).collect();
    let server = serve(body.clone());
    let http_dv = |name: &str| {
        data_volume(
            name,
            json!({
                "source": { "http": { "url": server.url("/file") } },
                "storage": storage_1gi(),
            }),
        )
    };
    const LEADER: &str = "Became the leader.";
    const CREATED: &str = "Worker pod created.";

    let mut replicas = vec![
        start_controller(&env, "cdi-controller-a"),
        start_controller(&env, "cdi-controller-b"),
    ];
    let leader = eventually("a leader among the replicas", || {
        let logs: Vec<bool> = replicas
            .iter()
            .map(|r| r.log_text().contains(LEADER))
            .collect();
        async move { logs.iter().position(|&l| l) }
    })
    .await;
    let follower = 1 - leader;
    create(&dvs, &http_dv("first")).await;
    wait_phase(&dvs, "first", DataVolumePhase::Succeeded).await;
    assert_image(&env, &ns, "first", &body, GIB).await;
    let follower_log = replicas[follower].log_text();
    assert!(
        !follower_log.contains(LEADER) && !follower_log.contains(CREATED),
        "the follower acted:\n{follower_log}"
    );
    assert!(replicas[leader].log_text().contains(CREATED));

    // The leader stops (SIGTERM: it releases the Lease); the other takes it and goes on.
    drop(replicas.remove(leader));
    let survivor = &replicas[0];
    eventually("the other replica to take the Lease", || {
        let took = survivor.log_text().contains(LEADER);
        async move { took.then_some(()) }
    })
    .await;
    create(&dvs, &http_dv("second")).await;
    wait_phase(&dvs, "second", DataVolumePhase::Succeeded).await;
    assert_image(&env, &ns, "second", &body, GIB).await;
    assert!(survivor.log_text().contains(CREATED));
}
