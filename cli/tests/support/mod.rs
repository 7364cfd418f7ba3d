//! A real `cdi-uploadserver` for `cdictl upload` to talk to: certificates made here, the pod's
//! mounts in a temporary directory (`CDI_ROOT`), and (from `cdi-testdata`) a TCP relay that can
//! break connections.
//!
//! The server binary belongs to another package, so the first test to need it builds it with
//! `cdi_testdata::workspace::workspace_binary`, beside `cdictl`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cdi_testdata::pki::Ca;
use cdi_testdata::workspace::workspace_binary;

pub use cdi_testdata::relay::{AfterBudgets, Relay};

pub const CLIENT_NAME: &str = "client.upload-server.cdi.kubevirt.io";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One upload pod: its mounts, certificates (also as files for cdictl) and server process.
pub struct Pod {
    root: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Pod {
    pub fn start() -> Pod {
        let root = tempfile::tempdir().expect("tempdir");
        for d in ["data", "dev", "etc/tls", "client"] {
            std::fs::create_dir_all(root.path().join(d)).expect("dirs");
        }
        let server_ca = Ca::new("cdi-uploadserver-signer");
        let client_ca = Ca::new("cdi-uploadserver-client-signer");
        let server = server_ca.server("cdi-upload-disk", &["localhost", "127.0.0.1"]);
        let client = client_ca.client(CLIENT_NAME);
        let write = |p: &str, text: &str| std::fs::write(root.path().join(p), text).expect(p);
        write("etc/tls/tls.crt", &server.cert_pem);
        write("etc/tls/tls.key", &server.key_pem);
        write("etc/tls/ca.crt", &client_ca.pem);
        write("client/server-ca.crt", &server_ca.pem);
        write("client/tls.crt", &client.cert_pem);
        write("client/tls.key", &client.key_pem);
        let mut pod = Pod {
            root,
            port: free_port(),
            child: None,
        };
        pod.spawn();
        pod
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let child = Command::new(workspace_binary("cdi-uploadserver", "cdi-uploadserver"))
            .env_clear()
            .env("CDI_ROOT", self.root.path())
            .env("RUST_LOG", "info")
            .env("TLS_KEY_FILE", "/etc/tls/tls.key")
            .env("TLS_CERT_FILE", "/etc/tls/tls.crt")
            .env("CLIENT_CERT_FILE", "/etc/tls/ca.crt")
            .env("CLIENT_NAME", CLIENT_NAME)
            .env("LISTEN_ADDRESS", "127.0.0.1")
            .env("LISTEN_PORT", &port)
            .env("UPLOAD_IMAGE_SIZE", "64Mi")
            .env("FILESYSTEM_OVERHEAD", "0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("server.log")).expect("log"))
            .spawn()
            .expect("start cdi-uploadserver");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "server did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and starts a new one on the same port and volume, as a restarted
    /// upload pod: whatever upload it had in memory is gone.
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `--ca`, `--client-cert` and `--client-key` for this pod.
    pub fn tls_args(&self) -> Vec<String> {
        let p = |f: &str| self.path(f).to_string_lossy().into_owned();
        vec![
            "--ca".into(),
            p("client/server-ca.crt"),
            "--client-cert".into(),
            p("client/tls.crt"),
            "--client-key".into(),
            p("client/tls.key"),
        ]
    }

    /// Only the server's CA: no client certificate.
    pub fn ca_args(&self) -> Vec<String> {
        self.tls_args()[..2].to_vec()
    }

    /// Waits for the server to exit after its one upload: its exit code.
    pub fn wait(&mut self) -> i32 {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn image(&self) -> Vec<u8> {
        std::fs::read(self.path("data/disk.img")).expect("disk.img")
    }

    /// Nothing in the volume: no image, no partial file.
    pub fn assert_no_image(&self) {
        let left: Vec<_> = std::fs::read_dir(self.path("data"))
            .expect("data")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "left on the volume: {left:?}");
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs cdictl with its upload state under `state`, and no proxy from the environment.
pub fn cdictl(state: &Path, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cdictl"))
        .args(args)
        .env("XDG_STATE_HOME", state)
        .env("CDI_LOG", "warn")
        .env_remove("CDI_UPLOAD_TOKEN")
        .env("NO_PROXY", "*")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .expect("run cdictl")
}

/// The state files cdictl left.
pub fn state_files(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("cdictl/uploads"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}
