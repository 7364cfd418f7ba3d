//! What the controller's end-to-end suites share: a test control plane with our CRDs, the
//! controller and other components as processes, DataVolume helpers, and image fixtures.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cdi_crds::{DataVolume, DataVolumeConditionType, DataVolumePhase};
use cdi_testdata::http::{Behaviour, TestServer};
use cdi_testdata::qcow2::{Cluster, Qcow2Builder};
use cdi_testenv::TestCluster;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

pub const TIMEOUT: Duration = Duration::from_secs(120);
pub const GIB: u64 = 1 << 30;

/// Polls `check` until it returns `Some`, or panics naming `what` after [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match cdi_testenv::wait::eventually(what, TIMEOUT, check).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// A worker binary of the workspace (each worker's package is named as its binary).
pub fn worker_binary(name: &str) -> PathBuf {
    cdi_testdata::workspace::workspace_binary(name, name)
}

/// A cluster with our CRDs, and a namespace for the controller.
pub struct Env {
    pub cluster: TestCluster,
    pub client: Client,
    pub cdi_namespace: String,
    pub logs: tempfile::TempDir,
}

pub async fn env() -> Env {
    env_with(&["cdi-importer"]).await
}

/// A cluster whose kubelet stand-in runs the given worker binaries as their images.
pub async fn env_with(workers: &[&str]) -> Env {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let binaries: BTreeMap<String, PathBuf> = workers
        .iter()
        .map(|w| (w.to_string(), worker_binary(w)))
        .collect();
    let cluster = match TestCluster::start(binaries).await {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let client = cluster.client();
    let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    if let Err(e) = cdi_testenv::crds::apply_dir(&client, &crds).await {
        panic!("{e}");
    }
    let cdi_namespace = cluster.create_namespace("cdi").await.expect("namespace");
    Env {
        cluster,
        client,
        cdi_namespace,
        logs: tempfile::tempdir().expect("log dir"),
    }
}

/// The controller as a process; stopped (SIGTERM, then SIGKILL) on drop.
pub struct ControllerProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl ControllerProcess {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        cdi_testenv::process::stop(&mut self.child, Duration::from_secs(10));
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<_> = log.lines().rev().take(60).collect();
            eprintln!("--- controller log (last lines) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

pub fn start_controller(env: &Env, name: &str) -> ControllerProcess {
    start_controller_as(env, name, env.cluster.kubeconfig())
}

/// Applies `deploy/rbac.yaml` (namespace `cdi` replaced by the controller's; objects for
/// other namespaces, such as the API server's RoleBinding in `kube-system`, stay there), so
/// the components can run with exactly the rights we ship.
pub async fn apply_rbac(env: &Env) {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/rbac.yaml");
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_str_multiple::<serde_json::Value, Vec<_>>(&text)
            .expect("rbac.yaml parses");
    let ns = env.cdi_namespace.as_str();
    let pp = PostParams::default();
    for mut doc in docs.into_iter().filter(|d| !d.is_null()) {
        if doc["metadata"]["namespace"] == "cdi" {
            doc["metadata"]["namespace"] = json!(ns);
        }
        if let Some(subjects) = doc["subjects"].as_array_mut() {
            for s in subjects.iter_mut().filter(|s| s["namespace"] == "cdi") {
                s["namespace"] = json!(ns);
            }
        }
        let doc_ns = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or(ns)
            .to_string();
        let ns = doc_ns.as_str();
        let c = env.client.clone();
        let created = match doc["kind"].as_str().unwrap_or("") {
            "ServiceAccount" => {
                Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(c, ns)
                    .create(&pp, &serde_json::from_value(doc).expect("ServiceAccount"))
                    .await
                    .map(drop)
            }
            "ClusterRole" => Api::<ClusterRole>::all(c)
                .create(&pp, &serde_json::from_value(doc).expect("ClusterRole"))
                .await
                .map(drop),
            "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(c)
                .create(
                    &pp,
                    &serde_json::from_value(doc).expect("ClusterRoleBinding"),
                )
                .await
                .map(drop),
            "Role" => Api::<Role>::namespaced(c, ns)
                .create(&pp, &serde_json::from_value(doc).expect("Role"))
                .await
                .map(drop),
            "RoleBinding" => Api::<RoleBinding>::namespaced(c, ns)
                .create(&pp, &serde_json::from_value(doc).expect("RoleBinding"))
                .await
                .map(drop),
            other => panic!("unexpected kind {other} in rbac.yaml"),
        };
        if let Err(e) = created {
            panic!("applying deploy/rbac.yaml: {e}");
        }
    }
}

/// A kubeconfig that authenticates as ServiceAccount `account` of the controller's namespace
/// (from [`apply_rbac`]), for a component that must work with the rights we ship.
pub async fn service_account_kubeconfig(env: &Env, account: &str) -> PathBuf {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};

    let pp = PostParams::default();
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(env.client.clone(), &env.cdi_namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = sa
        .create_token_request(account, &pp, &request)
        .await
        .unwrap_or_else(|e| panic!("a token for {account}: {e}"))
        .status
        .expect("token status")
        .token;
    let mut kubeconfig =
        kube::config::Kubeconfig::read_from(env.cluster.kubeconfig()).expect("cluster kubeconfig");
    for user in &mut kubeconfig.auth_infos {
        user.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.clone().into()),
            ..Default::default()
        });
    }
    let out = env.logs.path().join(format!("{account}.kubeconfig"));
    // JSON is YAML: kubeconfig readers take it as is.
    std::fs::write(
        &out,
        serde_json::to_string(&kubeconfig).expect("kubeconfig serialises"),
    )
    .expect("write kubeconfig");
    out
}

pub fn start_controller_as(env: &Env, name: &str, kubeconfig: &Path) -> ControllerProcess {
    start_controller_with(env, name, kubeconfig, &[])
}

/// The controller as a process with `kubeconfig` and `extra` flags.
pub fn start_controller_with(
    env: &Env,
    name: &str,
    kubeconfig: &Path,
    extra: &[String],
) -> ControllerProcess {
    let log = env.logs.path().join(format!("{name}.log"));
    let out = std::fs::File::create(&log).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdi-controller"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "--importer-image",
            "quay.io/cdi-rs/cdi-importer:latest",
            "--uploadserver-image",
            "quay.io/cdi-rs/cdi-uploadserver:latest",
            "--metrics-addr",
            "127.0.0.1:0",
            "--namespace",
            &env.cdi_namespace,
        ])
        .args(extra)
        .env("RUST_LOG", "info,kube_runtime=warn")
        .env("POD_NAME", name)
        .stdout(Stdio::null())
        .stderr(out);
    let child = cdi_testenv::process::spawn_tied(cmd).expect("start cdi-controller");
    ControllerProcess { child, log }
}

pub fn data_volume(name: &str, spec: serde_json::Value) -> DataVolume {
    serde_json::from_value(json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("a valid DataVolume")
}

pub fn storage_1gi() -> serde_json::Value {
    json!({ "resources": { "requests": { "storage": "1Gi" } } })
}

pub async fn create(api: &Api<DataVolume>, dv: &DataVolume) {
    if let Err(e) = api.create(&PostParams::default(), dv).await {
        panic!("creating DataVolume {}: {e}", dv.name_any());
    }
}

pub fn phase(dv: &DataVolume) -> Option<DataVolumePhase> {
    dv.status.as_ref()?.phase.clone()
}

pub async fn wait_phase(api: &Api<DataVolume>, name: &str, want: DataVolumePhase) -> DataVolume {
    let last = std::sync::Arc::new(std::sync::Mutex::new(None));
    let what = format!("DataVolume {name} to reach {want:?}");
    let result = cdi_testenv::wait::eventually(&what, TIMEOUT, || {
        let api = api.clone();
        let want = want.clone();
        let last = last.clone();
        async move {
            let dv = api.get(name).await.ok()?;
            *last.lock().unwrap_or_else(|p| p.into_inner()) = dv.status.clone();
            (phase(&dv) == Some(want)).then_some(dv)
        }
    })
    .await;
    match result {
        Ok(dv) => dv,
        Err(e) => panic!(
            "{e}; last status: {:#?}",
            last.lock().unwrap_or_else(|p| p.into_inner())
        ),
    }
}

pub fn condition(dv: &DataVolume, t: DataVolumeConditionType) -> (String, String, String) {
    let c = dv
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == t))
        .unwrap_or_else(|| panic!("{t:?} condition missing on {}", dv.name_any()));
    (
        c.status.as_str().to_owned(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

/// The reasons of the events about DataVolume `name`.
pub async fn event_reasons(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await.expect("events");
    list.items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.name.as_deref() == Some(name) && r.kind.as_deref() == Some("DataVolume")
            })
        })
        .filter_map(|e| e.reason)
        .collect()
}

/// The image of claim `name` (`disk.img` in a Filesystem volume, or a Block volume's file),
/// when the cluster's volumes are local (hostPath, or the CSI stand-in's).
pub async fn disk_image(env: &Env, ns: &str, name: &str) -> Option<PathBuf> {
    if !env.cluster.is_local() {
        return None;
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), ns);
    let spec = claims.get(name).await.ok()?.spec?;
    let block = spec.volume_mode.as_deref() == Some("Block");
    let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
    let pv = pvs.get(&spec.volume_name?).await.ok()?.spec?;
    let path = match (pv.host_path, pv.csi) {
        (Some(h), _) => PathBuf::from(h.path),
        (None, Some(csi)) => PathBuf::from(
            csi.volume_attributes?
                .get(cdi_testenv::CSI_PATH_ATTRIBUTE)?,
        ),
        (None, None) => return None,
    };
    Some(if block { path } else { path.join("disk.img") })
}

/// Checks that the claim's image starts with `expected` and is zero after it, up to `size`.
pub async fn assert_image(env: &Env, ns: &str, name: &str, expected: &[u8], size: u64) {
    let Some(path) = disk_image(env, ns, name).await else {
        return;
    };
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(data.len() as u64, size, "{name}: image size");
    assert!(
        data[..expected.len()] == *expected,
        "{name}: image content differs"
    );
    assert!(
        data[expected.len()..].iter().all(|b| *b == 0),
        "{name}: tail not zero"
    );
}

pub async fn pod_gone(client: &Client, ns: &str, pod: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(&format!("pod {pod} to be deleted"), || {
        let pods = pods.clone();
        async move { pods.get_opt(pod).await.ok()?.is_none().then_some(()) }
    })
    .await;
}

/// A small qcow2 with data, compressed and zero clusters; returns it and its raw content.
pub fn qcow2_image() -> (Vec<u8>, Vec<u8>) {
    let pattern = |seed: u8| (0..65536u32).map(|i| (i as u8) ^ seed).collect::<Vec<u8>>();
    let builder = Qcow2Builder::new(16, 8 << 20)
        .with(0, Cluster::Data(pattern(1)))
        .with(3, Cluster::Compressed(pattern(2)))
        .with(7, Cluster::ZeroFlag)
        .with(100, Cluster::Data(pattern(3)));
    (builder.build(), builder.expected_raw())
}

/// `qemu-img convert -O format args` of a small sparse disk: the image and its raw content as
/// `qemu-img convert -O raw` reads it.
pub fn qemu_image(format: &str, args: &[&str]) -> (Vec<u8>, Vec<u8>) {
    cdi_testdata::qemu::image_of(
        format,
        args,
        &cdi_testdata::raw::sparse_disk(12, 6 << 20, 65536),
    )
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

pub fn serve(body: Vec<u8>) -> TestServer {
    TestServer::start(Behaviour {
        body,
        ranges: true,
        ..Default::default()
    })
}

/// A CA made here, and leaves it signs, in PEM.
pub struct TestCa {
    pub pem: String,
    pub params: rcgen::CertificateParams,
    pub key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key).expect("self-signed").pem();
        TestCa { pem, params, key }
    }

    /// A serving certificate and key for `names`, written as `tls.crt` and `tls.key` in `dir`.
    pub fn server_files(&self, names: &[&str], dir: &Path) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signed");
        std::fs::create_dir_all(dir).expect("mkdir");
        let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        (cert_file, key_file)
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(self.pem.as_bytes()).expect("ca"))
            .build()
            .expect("client")
    }
}

/// A process of the test, stopped on drop; its log's tail is printed if the test panicked.
pub struct TiedProcess {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for TiedProcess {
    fn drop(&mut self) {
        cdi_testenv::process::stop(&mut self.child, Duration::from_secs(5));
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<_> = log.lines().rev().take(60).collect();
            eprintln!("--- {} log (last lines) ---", self.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

pub fn spawn_logged(env: &Env, name: &'static str, args: Vec<String>) -> TiedProcess {
    let log = env.logs.path().join(format!("{name}.log"));
    let out = std::fs::File::create(&log).expect("log");
    let mut cmd = Command::new(worker_binary(name));
    cmd.args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out);
    TiedProcess {
        name,
        child: cdi_testenv::process::spawn_tied(cmd).expect("spawn"),
        log,
    }
}

/// Waits until `url` answers 2xx.
pub async fn wait_ready(what: &str, client: &reqwest::Client, url: String) {
    eventually(what, || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(url).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
}

/// A cluster whose kubelet stand-in also plays the CSI driver and snapshotter (class
/// `cdi_testenv::CSI_STORAGE_CLASS`); `None` on a remote cluster, where it cannot.
pub async fn env_with_csi() -> Option<Env> {
    let env = env().await;
    if !env.cluster.is_local() {
        return None;
    }
    env.cluster
        .enable_csi_standin()
        .await
        .expect("the CSI stand-in");
    Some(env)
}
