//! etcd, kube-apiserver and kube-controller-manager on free loopback ports, stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::binaries::{self, KubeBinaries};
use crate::pki::Pki;
use crate::process::{free_port, spawn_tied, stop};

/// How long the apiserver may take to report ready (about 3 s here; CI machines are slower).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running control plane. Dropping it stops every process and deletes its directory
/// (unless `CDI_TESTENV_KEEP` is set, for post-mortems).
#[derive(Debug)]
pub struct ControlPlane {
    dir: tempfile::TempDir,
    children: Vec<(&'static str, Child)>,
    pub kubeconfig: PathBuf,
    pub server: String,
    pub ca_pem: String,
    pub token: String,
    pki: Pki,
    /// How kube-apiserver was started (program and arguments), to start it again.
    apiserver: Option<(PathBuf, Vec<std::ffi::OsString>)>,
}

impl ControlPlane {
    /// Builds (once) and starts etcd, the apiserver and the controller-manager, and waits until
    /// the apiserver is ready.
    pub async fn start() -> Result<ControlPlane, Error> {
        let bins = tokio::task::spawn_blocking(binaries::ensure)
            .await
            .map_err(|e| {
                Error::Setup(format!("building the Kubernetes binaries panicked: {e}"))
            })??;
        let dir = tempfile::Builder::new()
            .prefix("cdi-testenv-")
            .tempdir()
            .map_err(|e| Error::io("create the environment directory".into(), e))?;
        let pki = Pki::create(dir.path())?;
        let mut plane = ControlPlane {
            kubeconfig: dir.path().join("kubeconfig"),
            server: String::new(),
            ca_pem: pki.ca_pem.clone(),
            token: pki.admin_token.clone(),
            children: Vec::new(),
            dir,
            pki: pki.clone(),
            apiserver: None,
        };
        plane.launch(&bins, &pki).await?;
        Ok(plane)
    }

    /// The directory holding logs, PKI and etcd data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, name: &'static str, mut cmd: Command) -> Result<(), Error> {
        let log_path = self.dir.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(|e| Error::io(format!("create {}", log_path.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("dup log".into(), e))?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let child = spawn_tied(cmd).map_err(|e| Error::io(format!("start {name}"), e))?;
        self.children.push((name, child));
        Ok(())
    }

    /// The certificates and keys it runs with (e.g. the front-proxy client certificate, to
    /// talk to an aggregated API server as kube-apiserver does).
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    async fn launch(&mut self, bins: &KubeBinaries, pki: &Pki) -> Result<(), Error> {
        let dir = self.dir.path().to_path_buf();
        let (client_port, peer_port) = (free_port_io()?, free_port_io()?);
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd = Command::new(&bins.etcd);
        etcd.arg("--name=testenv")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=testenv={peer_url}"))
            .arg("--unsafe-no-fsync=true")
            .arg("--log-level=warn");
        self.spawn("etcd", etcd)?;

        let port = free_port_io()?;
        self.server = format!("https://127.0.0.1:{port}");
        let mut api = Command::new(&bins.apiserver);
        api.arg(format!("--etcd-servers={etcd_url}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={port}"))
            .arg(format!("--tls-cert-file={}", pki.serving_cert.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.serving_key.display()
            ))
            .arg(format!("--client-ca-file={}", pki.ca_cert.display()))
            .arg(format!("--token-auth-file={}", pki.token_file.display()))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                pki.sa_public.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.sa_private.display()
            ))
            // The aggregation layer: kube-apiserver proxies to aggregated API servers with this
            // client certificate and the user in X-Remote-* headers, and publishes the CA and
            // names in kube-system/extension-apiserver-authentication for them to check.
            .arg(format!(
                "--requestheader-client-ca-file={}",
                pki.front_proxy_ca_cert.display()
            ))
            .arg(format!(
                "--requestheader-allowed-names={}",
                crate::pki::FRONT_PROXY_CLIENT
            ))
            .arg("--requestheader-username-headers=X-Remote-User")
            .arg("--requestheader-group-headers=X-Remote-Group")
            .arg("--requestheader-extra-headers-prefix=X-Remote-Extra-")
            .arg(format!(
                "--proxy-client-cert-file={}",
                pki.front_proxy_client_cert.display()
            ))
            .arg(format!(
                "--proxy-client-key-file={}",
                pki.front_proxy_client_key.display()
            ))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--endpoint-reconciler-type=none")
            .arg("--enable-priority-and-fairness=false")
            .arg("--profiling=false")
            .arg(format!(
                "--cert-dir={}",
                dir.join("apiserver-certs").display()
            ))
            .arg("--v=1");
        self.apiserver = Some((
            bins.apiserver.clone(),
            api.get_args().map(|a| a.to_os_string()).collect(),
        ));
        self.spawn("kube-apiserver", api)?;

        let kubeconfig = kubeconfig_yaml(&self.server, &pki.ca_cert, &pki.admin_token);
        std::fs::write(&self.kubeconfig, kubeconfig)
            .map_err(|e| Error::io(format!("write {}", self.kubeconfig.display()), e))?;
        self.wait_ready().await?;

        let mut kcm = Command::new(&bins.controller_manager);
        kcm.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--use-service-account-credentials=false")
            .arg("--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller")
            .arg("--leader-elect=false")
            .arg(format!("--service-account-private-key-file={}", pki.sa_private.display()))
            .arg(format!("--root-ca-file={}", pki.ca_cert.display()))
            .args(["--bind-address=127.0.0.1", "--secure-port=0", "--v=1"]);
        self.spawn("kube-controller-manager", kcm)?;
        Ok(())
    }

    /// Stops kube-apiserver (SIGTERM, as a rolling update would) and starts it again on the same
    /// port with the same etcd, then waits until it is ready: for tests of what clients do when
    /// their watches break and resume against a fresh watch cache. Its log is kept as
    /// `kube-apiserver.<n>.log`.
    pub async fn restart_apiserver(&mut self) -> Result<(), Error> {
        let (program, args) = self
            .apiserver
            .clone()
            .ok_or_else(|| Error::Setup("kube-apiserver was never started".into()))?;
        let index = self
            .children
            .iter()
            .position(|(name, _)| *name == "kube-apiserver")
            .ok_or_else(|| Error::Setup("kube-apiserver is not running".into()))?;
        let (_, mut child) = self.children.remove(index);
        stop(&mut child, Duration::from_secs(10));
        let log = self.dir.path().join("kube-apiserver.log");
        let restarts = (1..)
            .find(|n| {
                !self
                    .dir
                    .path()
                    .join(format!("kube-apiserver.{n}.log"))
                    .exists()
            })
            .unwrap_or(1);
        let kept = self
            .dir
            .path()
            .join(format!("kube-apiserver.{restarts}.log"));
        std::fs::rename(&log, &kept)
            .map_err(|e| Error::io(format!("keep {}", log.display()), e))?;
        let mut api = Command::new(program);
        api.args(args);
        self.spawn("kube-apiserver", api)?;
        self.wait_ready().await
    }

    /// Polls `/readyz` through a kube client until the apiserver answers `ok`.
    async fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let config = crate::kube_config(&self.kubeconfig).await?;
        let client = kube::Client::try_from(config)?;
        loop {
            for (name, child) in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(Error::Setup(format!(
                        "{name} exited during start-up ({status}); last lines of its log:\n{}",
                        tail(&self.dir.path().join(format!("{name}.log")), 30)
                    )));
                }
            }
            let req = http_get("/readyz");
            let ready = client.request_text(req).await;
            if matches!(ready.as_deref(), Ok("ok")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Setup(format!(
                    "kube-apiserver not ready after {READY_TIMEOUT:?} (last answer: {ready:?}); its log:\n{}",
                    tail(&self.dir.path().join("kube-apiserver.log"), 30)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines of a component's log (`etcd`, `kube-apiserver`, `kube-controller-manager`).
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        tail(&self.dir.path().join(format!("{component}.log")), lines)
    }
}

fn http_get(path: &'static str) -> http::Request<Vec<u8>> {
    let mut req = http::Request::new(Vec::new());
    *req.uri_mut() = http::Uri::from_static(path);
    req
}

fn free_port_io() -> Result<u16, Error> {
    free_port().map_err(|e| Error::io("find a free port".into(), e))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn kubeconfig_yaml(server: &str, ca_file: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testenv\n  cluster:\n    server: {server}\n    \
         certificate-authority: {}\nusers:\n- name: admin\n  user:\n    token: {token}\n\
         contexts:\n- name: testenv\n  context:\n    cluster: testenv\n    user: admin\n\
         current-context: testenv\n",
        ca_file.display()
    )
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Reverse start order: the controller-manager, then the apiserver, then etcd.
        while let Some((_, mut child)) = self.children.pop() {
            stop(&mut child, Duration::from_secs(5));
        }
        if std::env::var_os("CDI_TESTENV_KEEP").is_some() {
            let dir = std::mem::replace(
                &mut self.dir,
                match tempfile::tempdir() {
                    Ok(d) => d,
                    Err(_) => return,
                },
            );
            eprintln!("testenv: kept {}", dir.keep().display());
        }
    }
}
