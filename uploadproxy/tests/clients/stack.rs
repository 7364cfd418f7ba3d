//! The whole upload path on 127.0.0.1, as in a cluster: a real `cdi-uploadserver` process (the
//! upload pod, its mounts in a temporary `CDI_ROOT`), the proxy in-process in front of it (mTLS
//! with a client certificate of the CA the server trusts, the claim and pod in
//! `MemoryTargets`, the page from `uploadproxy/page`), and a [`Relay`] in front of the proxy
//! that the clients talk to.
//!
//! ```text
//!  client ──TLS──► Relay (cuts) ──► cdi-uploadproxy (token) ──mTLS──► cdi-uploadserver ─► data/disk.img
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use cdi_testdata::pki::Ca;
use cdi_testdata::relay::Relay;
use cdi_testdata::uploadpod::UploadPod;
use cdi_testdata::workspace::workspace_binary;
use cdi_token::{Issuer, Payload, Validator};
use cdi_uploadproxy::{
    AppConfig, AppState, ForwardTimeouts, Forwarder, MemoryTargets, ReadinessPolicy, Reloadable,
    ServeLimits,
};
use tokio::sync::oneshot;

use crate::objects::{CLAIM, NAMESPACE, ready_claim, upload_pod};

/// The name the controller issues the upload server's certificate for.
const UPLOAD_SERVER_NAME: &str = "cdi-upload-disk.vms.svc";
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
    server: UploadPod,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    pub relay: Relay,
    /// A valid upload token for the claim.
    pub token: String,
}

impl Stack {
    pub fn start() -> Stack {
        // The upload pod: serving certificate of the upload CA, client CA to check the proxy.
        let server = UploadPod::builder(workspace_binary("cdi-uploadserver", "cdi-uploadserver"))
            .server_names(&[UPLOAD_SERVER_NAME])
            .image_size(IMAGE_SIZE)
            .start();
        let upload_ca = server.server_ca();
        let proxy_client = server.client();
        // The proxy's own serving certificate, and its CA for the clients to trust.
        let proxy_ca = Ca::new("cdi-uploadproxy-ca");
        let proxy_cert = proxy_ca.server("cdi-uploadproxy", &["127.0.0.1", "localhost"]);
        std::fs::write(server.path("client/proxy-ca.crt"), &proxy_ca.pem).expect("proxy CA");
        let server_port = server.port();

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
        targets.put_claim(ready_claim(&[]));
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
        self.server.path(relative)
    }

    pub fn server_log(&self) -> String {
        self.server.log()
    }

    /// Waits for the upload server to exit, as it does after its one upload: its exit code and
    /// termination message.
    pub fn wait_for_server_exit(&mut self) -> (i32, String) {
        self.server.wait()
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
        let image = self.server.image();
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
        self.server.assert_no_image();
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

/// `uploadproxy/page`, the page the proxy serves.
pub fn page_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("page")
}
