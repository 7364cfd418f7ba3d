//! cdi-apiserver end to end: the binary runs on 127.0.0.1 with a signing key and a serving
//! certificate made here, is registered with a real kube-apiserver through the aggregation
//! layer (testenv's `register_aggregated_api`), and is used as clients use it: through
//! kube-apiserver, which authenticates the user and proxies the request with its front-proxy
//! client certificate. The server runs as ServiceAccount `cdi-apiserver` with exactly the RBAC of
//! `deploy/rbac.yaml`, which proves it suffices. Needs the local control plane (an external
//! cluster cannot reach a process on this machine), so with `CDI_TEST_KUBECONFIG` set these
//! tests only say so.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cdi_apiserver::discovery::{GROUP, VERSION};
use cdi_crds::{DataVolume, UploadTokenRequest};
use cdi_testenv::TestCluster;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::Ca;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, or panics naming `what` after [`TIMEOUT`].
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match cdi_testenv::wait::eventually(what, TIMEOUT, check).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// The cdi-apiserver process, stopped on drop; its log is printed if the test panicked.
struct ApiServerProcess {
    child: Child,
    log: PathBuf,
}

impl Drop for ApiServerProcess {
    fn drop(&mut self) {
        cdi_testenv::process::stop(&mut self.child, Duration::from_secs(5));
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- cdi-apiserver log ---\n{log}");
        }
    }
}

struct Env {
    // Field order is drop order: the server stops before the cluster.
    _server: ApiServerProcess,
    cluster: TestCluster,
    client: Client,
    namespace: String,
    port: u16,
    serving_ca: Ca,
    /// The signing key's public half, as cdi-uploadproxy would read it.
    public_key_pem: String,
    _dir: tempfile::TempDir,
}

/// A local cluster with cdi-apiserver registered as `v1beta1.upload.cdi.kubevirt.io`, and a
/// namespace; `None` on an external cluster.
async fn env() -> Option<Env> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let cluster = match TestCluster::start(BTreeMap::new()).await {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    if !cluster.is_local() {
        eprintln!("cdi-apiserver e2e: skipped, it needs the local control plane");
        return None;
    }
    let client = cluster.client();
    let dir = tempfile::tempdir().expect("tempdir");
    let server_namespace = cluster.create_namespace("cdi").await.expect("namespace");
    apply_apiserver_rbac(&client, &server_namespace).await;
    let kubeconfig = service_account_kubeconfig(&cluster, &server_namespace, dir.path()).await;

    let signing = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
    let key_file = dir.path().join("id_rsa");
    std::fs::write(&key_file, signing.serialize_pem()).expect("write key");
    let serving_ca = Ca::new("cdi-apiserver-signer");
    // 127.0.0.1: the webhooks are registered by URL (testenv::webhooks).
    let serving = serving_ca.server(&[
        &cdi_testenv::aggregation::server_name(GROUP),
        "localhost",
        "127.0.0.1",
    ]);
    let (cert_file, tls_key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_file, &serving.cert_pem).expect("write cert");
    std::fs::write(&tls_key_file, &serving.key_pem).expect("write key");

    let port = cdi_testenv::process::free_port().expect("free port");
    let log = dir.path().join("cdi-apiserver.log");
    let out = std::fs::File::create(&log).expect("log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdi-apiserver"));
    cmd.arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--tls-cert-file={}", cert_file.display()))
        .arg(format!("--tls-key-file={}", tls_key_file.display()))
        .arg(format!("--signing-key={}", key_file.display()))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out);
    let server = ApiServerProcess {
        child: cdi_testenv::process::spawn_tied(cmd).expect("start cdi-apiserver"),
        log,
    };

    // Ready once it has read the request-header settings; only then can the aggregator's
    // first availability check succeed.
    let probe = https_client(&serving_ca, None);
    eventually("cdi-apiserver /readyz", || async {
        let r = probe
            .get(format!("https://localhost:{port}/readyz"))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    if let Err(e) = cluster
        .register_aggregated_api(GROUP, VERSION, port, &serving_ca.pem)
        .await
    {
        panic!("{e}");
    }
    let namespace = cluster.create_namespace("upload").await.expect("namespace");
    Some(Env {
        _server: server,
        client,
        namespace,
        port,
        serving_ca,
        public_key_pem: signing.public_key_pem(),
        cluster,
        _dir: dir,
    })
}

/// A client trusting `ca` for the server, presenting `identity` (cert and key files) if given.
fn https_client(ca: &Ca, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .expect("cert file")
                .collect::<Result<Vec<_>, _>>()
                .expect("PEM");
            let key = PrivateKeyDer::from_pem_file(key).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client cert")
        }
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .expect("client")
}

/// A client acting as `user` (the admin impersonates it), with `extra` attributes.
async fn client_as(env: &Env, user: &str, extra: &[(&str, &str)]) -> Client {
    let mut config = cdi_testenv::kube_config(env.cluster.kubeconfig())
        .await
        .expect("kubeconfig");
    config.auth_info.impersonate = Some(user.to_owned());
    if !extra.is_empty() {
        config.auth_info.impersonate_user_extra = Some(
            extra
                .iter()
                .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                .collect(),
        );
    }
    Client::try_from(config).expect("client")
}

async fn request_token(client: &Client, namespace: &str, pvc: &str) -> Result<String, kube::Error> {
    let api: Api<UploadTokenRequest> = Api::namespaced(client.clone(), namespace);
    let created = api
        .create(
            &PostParams::default(),
            &UploadTokenRequest::new("token-for-virtctl", pvc),
        )
        .await?;
    Ok(created
        .status
        .and_then(|s| s.token)
        .expect("a token in status"))
}

fn user_binding(namespace: &str, name: &str, user: &str, role: RoleRef) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        role_ref: role,
        subjects: Some(vec![Subject {
            kind: "User".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            name: user.to_owned(),
            namespace: None,
        }]),
    }
}

/// The ServiceAccount the server runs as in `deploy/`.
const SERVICE_ACCOUNT: &str = "cdi-apiserver";

/// Creates cdi-apiserver's part of `deploy/rbac.yaml`: its ServiceAccount (in `namespace`
/// instead of `cdi`), the bindings naming it, its own ClusterRole, and the ClusterRoles
/// aggregated into `admin` and `edit`.
async fn apply_apiserver_rbac(client: &Client, namespace: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/rbac.yaml");
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_str_multiple::<serde_json::Value, Vec<_>>(&text).expect("parses");
    let pp = PostParams::default();
    let (mut bindings, mut cluster_roles) = (0, 0);
    for mut doc in docs.into_iter().filter(|d| !d.is_null()) {
        let names_us = doc["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == SERVICE_ACCOUNT));
        if let Some(subjects) = doc["subjects"].as_array_mut() {
            for s in subjects
                .iter_mut()
                .filter(|s| s["kind"] == "ServiceAccount")
            {
                s["namespace"] = serde_json::json!(namespace);
            }
        }
        let labels = &doc["metadata"]["labels"];
        let aggregates = labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
            || labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true";
        let c = client.clone();
        match doc["kind"].as_str().unwrap_or("") {
            "ServiceAccount" if doc["metadata"]["name"] == SERVICE_ACCOUNT => {
                doc["metadata"]["namespace"] = serde_json::json!(namespace);
                let sa: ServiceAccount = serde_json::from_value(doc).expect("ServiceAccount");
                Api::<ServiceAccount>::namespaced(c, namespace)
                    .create(&pp, &sa)
                    .await
                    .expect("ServiceAccount");
            }
            "ClusterRoleBinding" if names_us => {
                let b: ClusterRoleBinding = serde_json::from_value(doc).expect("binding");
                Api::<ClusterRoleBinding>::all(c)
                    .create(&pp, &b)
                    .await
                    .expect("binding");
                bindings += 1;
            }
            // In kube-system, as deployed: the Role it names lives there.
            "RoleBinding" if names_us => {
                let b: RoleBinding = serde_json::from_value(doc).expect("binding");
                let ns = b.metadata.namespace.clone().expect("a namespace");
                Api::<RoleBinding>::namespaced(c, &ns)
                    .create(&pp, &b)
                    .await
                    .expect("binding");
                bindings += 1;
            }
            "ClusterRole" if aggregates || doc["metadata"]["name"] == SERVICE_ACCOUNT => {
                let role: ClusterRole = serde_json::from_value(doc).expect("ClusterRole");
                Api::<ClusterRole>::all(c)
                    .create(&pp, &role)
                    .await
                    .expect("ClusterRole");
                cluster_roles += 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        (bindings, cluster_roles),
        (3, 3),
        "cdi-apiserver's RBAC in deploy/rbac.yaml (its own ClusterRole and the two aggregated)"
    );
}

/// A kubeconfig for the cluster that authenticates as cdi-apiserver's ServiceAccount.
async fn service_account_kubeconfig(cluster: &TestCluster, namespace: &str, dir: &Path) -> PathBuf {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(cluster.client(), namespace)
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .expect("a token for cdi-apiserver")
        .status
        .expect("token status")
        .token;
    let mut kubeconfig =
        kube::config::Kubeconfig::read_from(cluster.kubeconfig()).expect("cluster kubeconfig");
    for user in &mut kubeconfig.auth_infos {
        user.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.clone().into()),
            ..kube::config::AuthInfo::default()
        });
    }
    let path = dir.join("cdi-apiserver.kubeconfig");
    // JSON is YAML: kubeconfig readers take it as is.
    std::fs::write(
        &path,
        serde_json::to_string(&kubeconfig).expect("serialises"),
    )
    .expect("write kubeconfig");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_gets_a_token_for_the_claim_that_the_validator_accepts() {
    let Some(env) = env().await else { return };

    let token = request_token(&env.client, &env.namespace, "disk")
        .await
        .expect("the admin may create uploadtokenrequests");

    let validator =
        cdi_token::Validator::from_public_pem(env.public_key_pem.as_bytes()).expect("public key");
    let payload = validator
        .validate(&token, SystemTime::now())
        .expect("a valid upload token");
    assert_eq!(payload.operation, cdi_token::Operation::Upload);
    assert_eq!(payload.name, "disk");
    assert_eq!(payload.namespace, env.namespace);
    assert_eq!(payload.resource.resource, "persistentvolumeclaims");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_shows_a_namespaced_create_only_resource_and_openapi_still_aggregates() {
    let Some(env) = env().await else { return };

    let group = kube::discovery::group(&env.client, GROUP)
        .await
        .expect("the group is discovered");
    let (resource, caps) = group
        .recommended_resources()
        .into_iter()
        .find(|(r, _)| r.plural == "uploadtokenrequests")
        .expect("uploadtokenrequests is listed");
    assert_eq!(resource.kind, "UploadTokenRequest");
    assert_eq!(resource.version, VERSION);
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(caps.supports_operation(kube::discovery::verbs::CREATE));
    assert!(!caps.supports_operation(kube::discovery::verbs::LIST));

    // The aggregator takes our 404 for /openapi/v2 and /openapi/v3 as "no spec": the cluster's
    // documents are still served, and the APIService stays Available.
    for path in ["/openapi/v2", "/openapi/v3"] {
        let mut request = http::Request::new(Vec::new());
        *request.uri_mut() = http::Uri::from_static(path);
        let text = env.client.request_text(request).await.expect(path);
        assert!(!text.is_empty(), "{path}");
    }
    if let Err(e) = env
        .cluster
        .register_aggregated_api(GROUP, VERSION, env.port, &env.serving_ca.pem)
        .await
    {
        panic!("still Available: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_decides_who_gets_a_token() {
    let Some(env) = env().await else { return };
    let ns = env.namespace.as_str();

    // bob may read pods and nothing else.
    let reader = Role {
        metadata: ObjectMeta {
            name: Some("pod-reader".into()),
            namespace: Some(ns.into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into()]),
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        }]),
    };
    Api::<Role>::namespaced(env.client.clone(), ns)
        .create(&PostParams::default(), &reader)
        .await
        .expect("Role");
    let bindings: Api<RoleBinding> = Api::namespaced(env.client.clone(), ns);
    let role_ref = |kind: &str, name: &str| RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    };
    bindings
        .create(
            &PostParams::default(),
            &user_binding(ns, "bob-reads-pods", "bob", role_ref("Role", "pod-reader")),
        )
        .await
        .expect("RoleBinding");
    // carol edits the namespace: deploy/rbac.yaml's aggregated rules give edit the create.
    bindings
        .create(
            &PostParams::default(),
            &user_binding(ns, "carol-edits", "carol", role_ref("ClusterRole", "edit")),
        )
        .await
        .expect("RoleBinding");

    let bob = client_as(&env, "bob", &[]).await;
    let denied = request_token(&bob, ns, "disk")
        .await
        .expect_err("bob is refused");
    let kube::Error::Api(status) = denied else {
        panic!("not an API error: {denied}");
    };
    assert_eq!(status.code, 403, "{status:?}");
    assert!(
        status
            .message
            .contains("User \"bob\" cannot create resource \"uploadtokenrequests\""),
        "{}",
        status.message
    );

    // Extra attributes travel as X-Remote-Extra-* headers into our SubjectAccessReview.
    let carol = client_as(&env, "carol", &[("scopes", "upload")]).await;
    let token = eventually("carol's token (edit aggregates the rule)", || async {
        request_token(&carol, ns, "disk").await.ok()
    })
    .await;
    assert!(!token.is_empty());

    // kube-apiserver refuses bob before proxying; our own SubjectAccessReview refuses him too
    // when his identity reaches us with the front-proxy certificate.
    let pki = env.cluster.control_plane().expect("local").pki();
    let front_proxy = https_client(
        &env.serving_ca,
        Some((&pki.front_proxy_client_cert, &pki.front_proxy_client_key)),
    );
    let url = format!(
        "https://localhost:{}/apis/{GROUP}/{VERSION}/namespaces/{ns}/uploadtokenrequests",
        env.port
    );
    for (user, expected) in [("bob", 403), ("carol", 200)] {
        let response = front_proxy
            .post(&url)
            .header("X-Remote-User", user)
            .header("X-Remote-Group", "system:authenticated")
            .header("Content-Type", "application/json")
            .body(r#"{"spec":{"pvcName":"disk"}}"#)
            .send()
            .await
            .expect("direct request");
        let code = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(code, expected, "{user}: {body}");
    }
}

/// The DataVolume webhooks of `deploy/webhooks/datavolumes.yaml`, pointed at the server, with
/// the CRDs installed; returns once kube-apiserver calls both (probed with dry-run creates).
async fn register_webhooks(env: &Env) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Err(e) = cdi_testenv::crds::apply_dir(&env.client, &root.join("deploy/crds")).await {
        panic!("{e}");
    }
    let manifests = std::fs::read_to_string(root.join("deploy/webhooks/datavolumes.yaml"))
        .expect("deploy/webhooks/datavolumes.yaml");
    let names =
        cdi_testenv::webhooks::apply_local(&env.client, &manifests, env.port, &env.serving_ca.pem)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names.len(), 2, "{names:?}");

    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let api: Api<DataVolume> = Api::namespaced(env.client.clone(), &env.namespace);
    eventually("the mutating webhook to add clone tokens", || async {
        let clone = data_volume("probe", clone_spec(&env.namespace, "disk"));
        let created = api.create(&dry_run, &clone).await.ok()?;
        created.annotations().get(TOKEN_ANNOTATION).map(drop)
    })
    .await;
    eventually(
        "the validating webhook to refuse a small DataVolume",
        || async {
            let small = data_volume("probe", blank_spec("512Ki"));
            match api.create(&dry_run, &small).await {
                Err(kube::Error::Api(s)) if s.message.contains("at least 1Mi") => Some(()),
                _ => None,
            }
        },
    )
    .await;
}

const TOKEN_ANNOTATION: &str = cdi_crds::annotations::clone::TOKEN;

fn data_volume(name: &str, spec: serde_json::Value) -> DataVolume {
    DataVolume::new(
        name,
        serde_json::from_value(spec).expect("a DataVolumeSpec"),
    )
}

fn clone_spec(source_namespace: &str, claim: &str) -> serde_json::Value {
    serde_json::json!({
        "source": {"pvc": {"namespace": source_namespace, "name": claim}},
        "storage": {"resources": {"requests": {"storage": "1Gi"}}},
    })
}

fn blank_spec(size: &str) -> serde_json::Value {
    serde_json::json!({
        "source": {"blank": {}},
        "storage": {"resources": {"requests": {"storage": size}}},
    })
}

/// A Role in `namespace` allowing `verbs` on `resources` of `group`, bound to `user`.
async fn grant(env: &Env, namespace: &str, user: &str, group: &str, resources: &[&str]) {
    let name = format!("{user}-{}", resources.join("-").replace('/', "-"));
    let role = Role {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![group.into()]),
            resources: Some(resources.iter().map(|r| r.to_string()).collect()),
            verbs: vec!["create".into()],
            ..PolicyRule::default()
        }]),
    };
    let pp = PostParams::default();
    Api::<Role>::namespaced(env.client.clone(), namespace)
        .create(&pp, &role)
        .await
        .expect("Role");
    let role_ref = RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "Role".into(),
        name: name.clone(),
    };
    Api::<RoleBinding>::namespaced(env.client.clone(), namespace)
        .create(&pp, &user_binding(namespace, &name, user, role_ref))
        .await
        .expect("RoleBinding");
}

/// The clone token of a created DataVolume, checked as the controller will check it.
fn validated_token(env: &Env, dv: &DataVolume, source: &str, claim: &str) -> cdi_token::Payload {
    let validator =
        cdi_token::Validator::from_public_pem(env.public_key_pem.as_bytes()).expect("public key");
    let request = cdi_token::CloneRequest {
        source: cdi_token::CloneSource {
            kind: cdi_token::CloneSourceKind::Pvc,
            namespace: source.into(),
            name: claim.into(),
        },
        target_namespace: dv.namespace().expect("namespace"),
        target_name: dv.name_any(),
    };
    let token = dv.annotations().get(TOKEN_ANNOTATION).map(String::as_str);
    validator
        .validate_clone(token, &request, SystemTime::now())
        .unwrap_or_else(|e| panic!("the clone token of {}: {e}", dv.name_any()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_namespace_clone_needs_permission_in_the_source_namespace() {
    let Some(env) = env().await else { return };
    register_webhooks(&env).await;
    let target = env.namespace.as_str();
    let source = env
        .cluster
        .create_namespace("source")
        .await
        .expect("namespace");
    // dave may create DataVolumes in the target namespace and has no rights in the source.
    grant(&env, target, "dave", cdi_crds::GROUP, &["datavolumes"]).await;
    let dave = client_as(&env, "dave", &[]).await;
    let dvs: Api<DataVolume> = Api::namespaced(dave.clone(), target);
    let pp = PostParams::default();

    let refused = eventually("dave's clone to reach the webhook", || async {
        match dvs
            .create(&pp, &data_volume("copy", clone_spec(&source, "disk")))
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 403 => Some(status),
            _ => None,
        }
    })
    .await;
    for words in [
        "denied the request",
        "User \"dave\" may not clone PersistentVolumeClaim",
        &format!("{source}/disk into DataVolume {target}/copy"),
        &format!(
            "cloning from namespace \"{source}\" needs permission there to create datavolumes/source"
        ),
    ] {
        assert!(
            refused.message.contains(words),
            "{words:?} in {}",
            refused.message
        );
    }

    // Allowed once dave may create datavolumes/source in the source namespace.
    grant(
        &env,
        &source,
        "dave",
        cdi_crds::GROUP,
        &["datavolumes/source"],
    )
    .await;
    let created = eventually("dave's clone to be admitted", || async {
        dvs.create(&pp, &data_volume("copy", clone_spec(&source, "disk")))
            .await
            .ok()
    })
    .await;
    let payload = validated_token(&env, &created, &source, "disk");
    assert_eq!(payload.clone_target(), Some((target, "copy")));

    // A clone within the namespace needs no more than creating the DataVolume.
    let local = dvs
        .create(&pp, &data_volume("local-copy", clone_spec(target, "disk")))
        .await
        .expect("same-namespace clone admitted");
    validated_token(&env, &local, target, "disk");

    // A service account is checked like any user (kube-apiserver adds its groups), here
    // through the other permission a claim clone may rest on: creating pods in the source.
    let builder = format!("system:serviceaccount:{target}:builder");
    grant(&env, target, &builder, cdi_crds::GROUP, &["datavolumes"]).await;
    let as_builder: Api<DataVolume> = Api::namespaced(client_as(&env, &builder, &[]).await, target);
    let refused = as_builder
        .create(&pp, &data_volume("sa-copy", clone_spec(&source, "disk")))
        .await
        .expect_err("no rights in the source yet");
    assert!(
        refused
            .to_string()
            .contains(&format!("User \"{builder}\" may not clone")),
        "{refused}"
    );
    grant(&env, &source, &builder, "", &["pods"]).await;
    let created = eventually("the service account's clone to be admitted", || async {
        as_builder
            .create(&pp, &data_volume("sa-copy", clone_spec(&source, "disk")))
            .await
            .ok()
    })
    .await;
    validated_token(&env, &created, &source, "disk");

    // An import is admitted without a token.
    let blank = dvs
        .create(&pp, &data_volume("blank", blank_spec("1Gi")))
        .await
        .expect("blank admitted");
    assert!(!blank.annotations().contains_key(TOKEN_ANNOTATION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validating_webhook_refuses_what_the_crd_schema_lets_through() {
    let Some(env) = env().await else { return };
    register_webhooks(&env).await;
    let api: Api<DataVolume> = Api::namespaced(env.client.clone(), &env.namespace);
    let pp = PostParams::default();

    let err = api
        .create(&pp, &data_volume("tiny", blank_spec("512Ki")))
        .await
        .expect_err("below 1Mi");
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err}");
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains(
            "admission webhook \"datavolume-validate.cdi.kubevirt.io\" denied the request: \
             spec.storage.resources.requests.storage is 512Ki; it must be at least 1Mi"
        ),
        "{}",
        status.message
    );

    // The spec cannot change after creation.
    let created = api
        .create(&pp, &data_volume("fixed", blank_spec("1Gi")))
        .await
        .expect("created");
    let mut bigger = created.clone();
    bigger.spec = serde_json::from_value(blank_spec("2Gi")).expect("spec");
    let err = api
        .replace("fixed", &pp, &bigger)
        .await
        .expect_err("spec change");
    assert!(
        err.to_string()
            .contains("spec cannot be changed after creation"),
        "{err}"
    );
}
