//! The whole upload path on 127.0.0.1, as in a cluster: a real `cdi-uploadserver` process (the
//! upload pod, its mounts in a temporary `CDI_ROOT`), the proxy in-process in front of it (mTLS
//! with a client certificate of the CA the server trusts, the claim and pod in
//! `MemoryTargets`, the page from `uploadproxy/page`), and a [`Relay`] in front of the proxy
//! that the clients talk to.
//!
//! ```text
//!  client ──TLS──► Relay (cuts) ──► cdi-uploadproxy (token) ──mTLS──► cdi-uploadserver ─► data/disk.img
//! ```

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use cdi_testdata::pki::Ca;
use cdi_testdata::relay::Relay;
use cdi_testdata::workspace::workspace_binary;
use cdi_token::{Issuer, Payload, Validator};
use cdi_uploadproxy::readiness::annotations;
use cdi_uploadproxy::{
    AppConfig, AppState, ForwardTimeouts, Forwarder, MemoryTargets, ReadinessPolicy, Reloadable,
    STANDIN_PORTS_ANNOTATION, ServeLimits,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::oneshot;

pub const CLAIM: &str = "disk";
pub const NAMESPACE: &str = "vms";
/// The name the controller issues the upload server's certificate for.
const UPLOAD_SERVER_NAME: &str = "cdi-upload-disk.vms.svc";
const CLIENT_NAME: &str = "client.upload-server.cdi.kubevirt.io";
/// The claim's size as the upload server is told it.
const IMAGE_SIZE: &str = "64Mi";

/// The API server's token key pair (RSA keys are slow to make: one per test process).
struct TokenKeys {
    private_pem: String,
    public_pem: String,
}

fn token_keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        TokenKeys {
            private_pem: key.serialize_pem(),
            public_pem: key.public_key_pem(),
        }
    })
}

/// An upload pod, the proxy and the relay, until dropped.
pub struct Stack {
    root: tempfile::TempDir,
    server: Server,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    pub relay: Relay,
    /// A valid upload token for the claim.
    pub token: String,
}

impl Stack {
    pub fn start() -> Stack {
        let root = tempfile::tempdir().expect("tempdir");
        for dir in ["data", "dev", "etc/tls", "client"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("pod directories");
        }
        let write = |path: &str, text: &str| {
            std::fs::write(root.path().join(path), text).expect("write certificate")
        };
        // The upload pod: serving certificate of the upload CA, client CA to check the proxy.
        let upload_ca = Ca::new("cdi-uploadserver-signer");
        let client_ca = Ca::new("cdi-uploadserver-client-signer");
        let server_cert = upload_ca.server("cdi-upload-disk", &[UPLOAD_SERVER_NAME]);
        let proxy_client = client_ca.client(CLIENT_NAME);
        write("etc/tls/tls.crt", &server_cert.cert_pem);
        write("etc/tls/tls.key", &server_cert.key_pem);
        write("etc/tls/ca.crt", &client_ca.pem);
        // The proxy's own serving certificate, and its CA for the clients to trust.
        let proxy_ca = Ca::new("cdi-uploadproxy-ca");
        let proxy_cert = proxy_ca.server("cdi-uploadproxy", &["127.0.0.1", "localhost"]);
        write("client/proxy-ca.crt", &proxy_ca.pem);

        let server_port = free_port();
        let mut server = Server(Some(spawn_server(root.path(), server_port)));
        wait_for_listener(&mut server, root.path(), server_port);

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let keys = token_keys();
        let validator = Validator::from_public_pem(keys.public_pem.as_bytes()).expect("validator");
        let client = cdi_uploadproxy::client_config(
            proxy_client.cert_pem.as_bytes(),
            proxy_client.key_pem.as_bytes(),
            upload_ca.pem.as_bytes(),
        )
        .expect("proxy client TLS");
        let serving = cdi_uploadproxy::server_config(
            proxy_cert.cert_pem.as_bytes(),
            proxy_cert.key_pem.as_bytes(),
        )
        .expect("proxy serving TLS");
        let targets = Arc::new(MemoryTargets::new());
        targets.put_claim(ready_claim());
        targets.put_pod(upload_pod(server_port));
        let router = cdi_uploadproxy::app(AppState::new(AppConfig {
            validator: Reloadable::fixed(validator),
            targets,
            forwarder: Forwarder::new(
                Reloadable::fixed(client),
                ForwardTimeouts {
                    connect: Duration::from_secs(5),
                    ..ForwardTimeouts::default()
                },
            ),
            readiness: ReadinessPolicy {
                timeout: Duration::from_secs(2),
                interval: Duration::from_millis(50),
            },
            page_dir: Some(page_dir()),
        }));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let proxy_port = listener.local_addr().expect("proxy address").port();
        let (stop, stopped) = oneshot::channel::<()>();
        runtime.spawn(cdi_uploadproxy::serve(
            listener,
            Reloadable::fixed(serving),
            router,
            ServeLimits {
                shutdown_grace: Duration::from_millis(100),
                ..ServeLimits::default()
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let token = Issuer::from_rsa_pem(keys.private_pem.as_bytes())
            .expect("token key")
            .issue(&Payload::upload(CLAIM, NAMESPACE), SystemTime::now())
            .expect("token");
        Stack {
            root,
            server,
            runtime: Some(runtime),
            stop: Some(stop),
            relay: Relay::start(proxy_port),
            token,
        }
    }

    /// The URL clients use: the relay's.
    pub fn url(&self) -> String {
        self.relay.url()
    }

    /// The CA file that verifies the proxy's serving certificate.
    pub fn proxy_ca_file(&self) -> PathBuf {
        self.path("client/proxy-ca.crt")
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    /// Waits for the upload server to exit, as it does after its one upload: its exit code and
    /// termination message.
    pub fn wait_for_server_exit(&mut self) -> (i32, String) {
        let mut child = self.server.0.take().expect("server running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait for cdi-uploadserver") {
                let message =
                    std::fs::read_to_string(self.path("dev/termination-log")).unwrap_or_default();
                return (status.code().unwrap_or(-1), message);
            }
            assert!(
                Instant::now() < deadline,
                "cdi-uploadserver did not exit after the upload:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts the upload succeeded: the server exited 0 and the volume's `disk.img` is
    /// `expected` followed by zeros up to the claim's size.
    pub fn assert_volume_holds(&mut self, expected: &[u8]) {
        let (code, message) = self.wait_for_server_exit();
        assert_eq!(
            code,
            0,
            "cdi-uploadserver exited {code}: {message}\n{}",
            self.server_log()
        );
        let image = std::fs::read(self.path("data/disk.img")).expect("data/disk.img");
        assert!(
            image.len() >= expected.len(),
            "disk.img has {} bytes, the image {}",
            image.len(),
            expected.len()
        );
        if image[..expected.len()] != *expected {
            let first = image
                .iter()
                .zip(expected)
                .position(|(a, b)| a != b)
                .unwrap_or_default();
            panic!("disk.img differs from the expected image at byte {first}");
        }
        assert!(
            image[expected.len()..].iter().all(|&b| b == 0),
            "disk.img has data past the image"
        );
    }

    /// Nothing on the volume: no image, no partial file.
    pub fn assert_volume_empty(&self) {
        let left: Vec<String> = std::fs::read_dir(self.path("data"))
            .expect("data/")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "left on the volume: {left:?}");
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_millis(500));
        }
    }
}

/// The upload server's process, killed when dropped (a test that fails leaves none behind).
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for_listener(server: &mut Server, root: &Path, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let running = server
            .0
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none());
        assert!(
            Instant::now() < deadline && running,
            "cdi-uploadserver did not listen on {port}:\n{}",
            std::fs::read_to_string(root.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `uploadproxy/page`, the page the proxy serves.
pub fn page_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("page")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The upload server with the upload pod's environment, its log in `root/server.log`.
fn spawn_server(root: &Path, port: u16) -> Child {
    Command::new(workspace_binary("cdi-uploadserver", "cdi-uploadserver"))
        .env_clear()
        .env("CDI_ROOT", root)
        .env("RUST_LOG", "info")
        .env("TLS_KEY_FILE", "/etc/tls/tls.key")
        .env("TLS_CERT_FILE", "/etc/tls/tls.crt")
        .env("CLIENT_CERT_FILE", "/etc/tls/ca.crt")
        .env("CLIENT_NAME", CLIENT_NAME)
        .env("LISTEN_ADDRESS", "127.0.0.1")
        .env("LISTEN_PORT", port.to_string())
        .env("UPLOAD_IMAGE_SIZE", IMAGE_SIZE)
        .env("FILESYSTEM_OVERHEAD", "0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.join("server.log")).expect("server log"))
        .spawn()
        .expect("start cdi-uploadserver")
}

/// The claim as the controller leaves it once its upload pod is ready.
fn ready_claim() -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(CLAIM.into()),
            namespace: Some(NAMESPACE.into()),
            annotations: Some(BTreeMap::from([
                (annotations::UPLOAD_TARGET.to_owned(), String::new()),
                (annotations::POD_READY.to_owned(), "true".to_owned()),
            ])),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The claim's upload pod on 127.0.0.1, its port 8443 mapped to `port` as the stand-in
/// kubelet maps it.
fn upload_pod(port: u16) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("cdi-upload-disk".into()),
            namespace: Some(NAMESPACE.into()),
            annotations: Some(BTreeMap::from([(
                STANDIN_PORTS_ANNOTATION.to_owned(),
                format!("{{\"8443\":{port}}}"),
            )])),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            pod_ip: Some("127.0.0.1".into()),
            ..Default::default()
        }),
    }
}
