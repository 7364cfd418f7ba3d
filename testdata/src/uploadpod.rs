//! The upload pod as a process: the real `cdi-uploadserver` binary run with CDI's upload pod
//! environment, a temporary directory standing in for the pod's mounts (`CDI_ROOT`), and
//! certificates made here by [`crate::pki`].
//!
//! ```text
//!  <root>/etc/tls/{tls.crt,tls.key}   serving certificate of the server CA
//!  <root>/etc/tls/ca.crt              the client CA, which the server checks clients against
//!  <root>/client/{server-ca.crt,tls.crt,tls.key}   the proxy's side, for client processes
//!  <root>/data/disk.img               the image, once an upload succeeded
//!  <root>/dev/termination-log         the termination message
//!  <root>/server.log                  the server's stderr
//! ```
//!
//! The binary comes from the test: `env!("CARGO_BIN_EXE_cdi-uploadserver")` in the
//! upload server's own tests, [`crate::workspace::workspace_binary`] in other packages'.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pki::{Ca, Leaf};

/// The client name the upload server is told to accept: the proxy's certificate subject.
pub const CLIENT_NAME: &str = "client.upload-server.cdi.kubevirt.io";

/// How long a server may take to listen, and to exit after its upload.
const LISTEN_WITHIN: Duration = Duration::from_secs(20);
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// How to start an [`UploadPod`]; [`UploadPod::builder`] makes one.
#[derive(Clone, Debug)]
pub struct UploadPodBuilder {
    binary: PathBuf,
    image_size: String,
    server_names: Vec<String>,
    env: Vec<(String, String)>,
}

impl UploadPodBuilder {
    /// `UPLOAD_IMAGE_SIZE`, the claim's size as the server is told it (default `64Mi`).
    pub fn image_size(mut self, size: &str) -> Self {
        self.image_size = size.to_owned();
        self
    }

    /// The names (DNS names or IP addresses) the serving certificate is valid for (default
    /// `localhost` and `127.0.0.1`).
    pub fn server_names(mut self, names: &[&str]) -> Self {
        self.server_names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Another environment variable, set after (so overriding) the pod's own.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// [`UploadPodBuilder::env`] for each pair.
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        for (name, value) in vars {
            self = self.env(name, value);
        }
        self
    }

    /// Makes the mounts and certificates, starts the server and waits until it listens.
    pub fn start(self) -> UploadPod {
        let root = tempfile::tempdir().expect("tempdir");
        for dir in ["data", "dev", "etc/tls", "client"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("pod directories");
        }
        let server_ca = Ca::new("cdi-uploadserver-signer");
        let client_ca = Ca::new("cdi-uploadserver-client-signer");
        let names: Vec<&str> = self.server_names.iter().map(String::as_str).collect();
        let server = server_ca.server("cdi-upload-disk", &names);
        let client = client_ca.client(CLIENT_NAME);
        let write = |path: &str, text: &str| {
            std::fs::write(root.path().join(path), text).expect("write certificate")
        };
        write("etc/tls/tls.crt", &server.cert_pem);
        write("etc/tls/tls.key", &server.key_pem);
        write("etc/tls/ca.crt", &client_ca.pem);
        write("client/server-ca.crt", &server_ca.pem);
        write("client/tls.crt", &client.cert_pem);
        write("client/tls.key", &client.key_pem);
        let mut pod = UploadPod {
            root,
            server_ca,
            client_ca,
            client,
            port: free_port(),
            options: self,
            child: None,
        };
        pod.spawn();
        pod
    }
}

/// One upload pod: its mounts, certificates and server process (killed when dropped).
pub struct UploadPod {
    root: tempfile::TempDir,
    server_ca: Ca,
    client_ca: Ca,
    client: Leaf,
    port: u16,
    options: UploadPodBuilder,
    child: Option<Child>,
}

impl std::fmt::Debug for UploadPod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadPod")
            .field("root", &self.root.path())
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl UploadPod {
    /// A pod running `binary` (the `cdi-uploadserver` executable), to be configured and
    /// started.
    pub fn builder(binary: impl Into<PathBuf>) -> UploadPodBuilder {
        UploadPodBuilder {
            binary: binary.into(),
            image_size: "64Mi".to_owned(),
            server_names: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            env: Vec::new(),
        }
    }

    /// The server on the pod's port with the pod's environment; waits until it listens.
    fn spawn(&mut self) {
        let log = std::fs::File::create(self.path("server.log")).expect("server log");
        let child = Command::new(&self.options.binary)
            .env_clear()
            .env("CDI_ROOT", self.root.path())
            .env("RUST_LOG", "info")
            .env("TLS_KEY_FILE", "/etc/tls/tls.key")
            .env("TLS_CERT_FILE", "/etc/tls/tls.crt")
            .env("CLIENT_CERT_FILE", "/etc/tls/ca.crt")
            .env("CLIENT_NAME", CLIENT_NAME)
            .env("LISTEN_ADDRESS", "127.0.0.1")
            .env("LISTEN_PORT", self.port.to_string())
            .env("UPLOAD_IMAGE_SIZE", &self.options.image_size)
            .env("FILESYSTEM_OVERHEAD", "0")
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.options.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + LISTEN_WITHIN;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline && self.running(),
                "cdi-uploadserver did not listen on {}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and starts a new one on the same port and volume, as a restarted
    /// upload pod: whatever upload it had in memory is gone.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `relative` under the pod's root (`data/disk.img`, `dev/termination-log`, ...).
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    /// The pod's root, its `CDI_ROOT`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    /// The CA that signed the serving certificate, for clients to trust.
    pub fn server_ca(&self) -> &Ca {
        &self.server_ca
    }

    /// The CA the server checks client certificates against, to sign more clients.
    pub fn client_ca(&self) -> &Ca {
        &self.client_ca
    }

    /// The proxy's client certificate: [`CLIENT_NAME`], of the client CA.
    pub fn client(&self) -> &Leaf {
        &self.client
    }

    /// Whether the server is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Waits for the server to exit, as it does after its one upload: its exit code (-1 for a
    /// signal) and termination message.
    pub fn wait(&mut self) -> (i32, String) {
        let mut child = self.child.take().expect("cdi-uploadserver running");
        let deadline = Instant::now() + EXIT_WITHIN;
        loop {
            if let Some(status) = child.try_wait().expect("wait for cdi-uploadserver") {
                let message =
                    std::fs::read_to_string(self.path("dev/termination-log")).unwrap_or_default();
                return (status.code().unwrap_or(-1), message);
            }
            assert!(
                Instant::now() < deadline,
                "cdi-uploadserver did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("cdi-uploadserver running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// The volume's `disk.img`.
    pub fn image(&self) -> Vec<u8> {
        std::fs::read(self.path("data/disk.img")).expect("data/disk.img")
    }

    /// Asserts the volume holds only what the pod started with: no image, no partial file.
    pub fn assert_no_image(&self) {
        let left: Vec<String> = std::fs::read_dir(self.path("data"))
            .expect("data/")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "left on the volume: {left:?}");
    }
}

impl Drop for UploadPod {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
