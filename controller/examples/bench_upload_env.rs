//! The cluster side of `bench/upload.sh`: what `cdi-uploadproxy` needs to find an upload
//! server, and the credentials of all three parties.
//!
//! `bench_upload_env DIR PORT` starts the test control plane (etcd, kube-apiserver and
//! kube-controller-manager on loopback; no kubelet stand-in), then creates
//!
//! - namespace `bench`, with claim `disk` annotated as an upload target whose pod is ready,
//! - pod `cdi-upload-disk`, never run by anything: its status says `podIP: 127.0.0.1` and its
//!   `kubelet-standin.cdi-rs.io/ports` annotation maps 8443 to PORT, which is where the bench
//!   starts a fresh `cdi-uploadserver` for every upload,
//!
//! and writes into DIR (PEM files unless said otherwise):
//!
//! | file | what |
//! |---|---|
//! | `proxy-ca.crt`, `proxy.crt`, `proxy.key` | the proxy's serving certificate, for `127.0.0.1` and `localhost` |
//! | `server-ca.crt`, `server.crt`, `server.key` | the upload server's, for `cdi-upload-disk.bench.svc` |
//! | `client-ca.crt`, `client.crt`, `client.key` | the proxy's client certificate (CN `client.upload-server.cdi.kubevirt.io`) |
//! | `token.pub`, `token` | the token-signing public key; an upload token for `bench/disk`, valid for a day |
//! | `env.sh` | `KUBECONFIG=…`, `NAMESPACE=…`, `CLAIM=…`, `UPLOAD_PORT=…`, `CLIENT_NAME=…`, for `source` |
//!
//! `env.sh` is written last: once it exists, everything is ready. The process then waits for
//! SIGTERM or SIGINT and stops the control plane.
//!
//! Build: `cargo build --release -p cdi-controller --example bench_upload_env` (the control
//! plane's Kubernetes binaries are built on first use, or by `cdi-testenv build`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

const NAMESPACE: &str = "bench";
const CLAIM: &str = "disk";
const POD: &str = "cdi-upload-disk";
/// The name the proxy verifies the upload server's certificate as (`<service>.<ns>.svc`).
const SERVER_NAME: &str = "cdi-upload-disk.bench.svc";
/// The common name the upload server requires of its client (the proxy).
const CLIENT_NAME: &str = "client.upload-server.cdi.kubevirt.io";
/// The claim annotations the proxy reads.
const UPLOAD_TARGET: &str = "cdi.kubevirt.io/storage.upload.target";
const POD_READY: &str = "cdi.kubevirt.io/storage.pod.ready";
/// The kubelet stand-in's container-port map, which the proxy honours.
const PORTS: &str = "kubelet-standin.cdi-rs.io/ports";

/// A self-signed CA that signs leaf certificates.
struct Authority {
    issuer: rcgen::Issuer<'static, KeyPair>,
    pem: String,
}

impl Authority {
    fn new(name: &str) -> anyhow::Result<Authority> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok(Authority {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        })
    }

    /// A certificate for `names` (IP addresses become IP SANs), and its key.
    fn sign(
        &self,
        common_name: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<(String, String)> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Every certificate, key and the token, into `dir`.
fn credentials(dir: &Path) -> anyhow::Result<()> {
    let proxy_ca = Authority::new("bench cdi-uploadproxy CA")?;
    let (cert, key) = proxy_ca.sign(
        "cdi-uploadproxy",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    write(dir, "proxy-ca.crt", &proxy_ca.pem)?;
    write(dir, "proxy.crt", &cert)?;
    write(dir, "proxy.key", &key)?;

    let server_ca = Authority::new("bench cdi-uploadserver signer")?;
    let (cert, key) = server_ca.sign(POD, &[SERVER_NAME], ExtendedKeyUsagePurpose::ServerAuth)?;
    write(dir, "server-ca.crt", &server_ca.pem)?;
    write(dir, "server.crt", &cert)?;
    write(dir, "server.key", &key)?;

    let client_ca = Authority::new("bench cdi-uploadserver client signer")?;
    let (cert, key) = client_ca.sign(CLIENT_NAME, &[], ExtendedKeyUsagePurpose::ClientAuth)?;
    write(dir, "client-ca.crt", &client_ca.pem)?;
    write(dir, "client.crt", &cert)?;
    write(dir, "client.key", &key)?;

    // The API server's token key (RSA, PS256 as upstream); one token lasts the whole run.
    let signing = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
    write(dir, "token.pub", &signing.public_key_pem())?;
    let issuer = cdi_token::Issuer::from_rsa_pem(signing.serialize_pem().as_bytes())?
        .with_lifetime(Duration::from_secs(24 * 3600));
    let token = issuer.issue_upload(CLAIM, NAMESPACE, SystemTime::now())?;
    write(dir, "token", &token)
}

/// The namespace, the claim and its (never running) upload pod, reachable at `port`.
async fn objects(client: &kube::Client, port: u16) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": NAMESPACE } }))?,
        )
        .await
        .context("creating the namespace")?;

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    let claim = json!({
        "metadata": {
            "name": CLAIM,
            "annotations": { UPLOAD_TARGET: "", POD_READY: "true" },
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            // No such class: nothing binds the claim, and nothing needs to.
            "storageClassName": "bench-none",
            "resources": { "requests": { "storage": "10Gi" } },
        },
    });
    claims
        .create(&PostParams::default(), &serde_json::from_value(claim)?)
        .await
        .context("creating the claim")?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": POD,
            "annotations": { PORTS: json!({ "8443": port }).to_string() },
        },
        "spec": {
            "containers": [{ "name": "cdi-upload-server", "image": "cdi-uploadserver" }],
        },
    }))?;
    // The ServiceAccount admission plugin refuses pods until the controller-manager has made
    // the namespace's default ServiceAccount.
    cdi_testenv::wait::eventually(
        "the upload pod to be created",
        Duration::from_secs(60),
        || {
            let (pods, pod) = (pods.clone(), pod.clone());
            async move { pods.create(&PostParams::default(), &pod).await.ok() }
        },
    )
    .await?;
    let status = json!({
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "podIPs": [{ "ip": "127.0.0.1" }],
        },
    });
    pods.patch_status(POD, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .context("setting the pod's IP")?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(port)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bench_upload_env DIR UPLOAD_PORT");
    };
    let dir = PathBuf::from(dir);
    let port: u16 = port.parse().context("UPLOAD_PORT")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join("env.sh"));

    // Signals first: a bench that gives up early must still stop the control plane.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;

    credentials(&dir)?;
    let plane = cdi_testenv::ControlPlane::start()
        .await
        .context("starting the test control plane")?;
    let client = kube::Client::try_from(cdi_testenv::kube_config(&plane.kubeconfig).await?)?;
    objects(&client, port).await?;

    let env: BTreeMap<&str, String> = BTreeMap::from([
        ("KUBECONFIG", plane.kubeconfig.display().to_string()),
        ("NAMESPACE", NAMESPACE.to_owned()),
        ("CLAIM", CLAIM.to_owned()),
        ("UPLOAD_PORT", port.to_string()),
        ("CLIENT_NAME", CLIENT_NAME.to_owned()),
    ]);
    let text: String = env.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
    let partial = dir.join(".env.sh.partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, dir.join("env.sh"))?;
    eprintln!("bench_upload_env: ready ({})", dir.join("env.sh").display());

    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    drop(plane);
    Ok(())
}
