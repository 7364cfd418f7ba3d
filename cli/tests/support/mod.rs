//! A real `cdi-uploadserver` for `cdictl upload` to talk to: certificates made here, the pod's
//! mounts in a temporary directory (`CDI_ROOT`), and a TCP relay that can break connections.
//!
//! The server binary belongs to another package, and Cargo only tells tests where their own
//! package's binaries are (`CARGO_BIN_EXE_*`; a dev-dependency's binaries are not built). So the
//! first test to need it runs `cargo build -p cdi-uploadserver --bin cdi-uploadserver` (a no-op
//! when it is current; Cargo releases its build lock before running tests) and uses it from the
//! directory `cdictl` was built in.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

pub const CLIENT_NAME: &str = "client.upload-server.cdi.kubevirt.io";

/// The `cdi-uploadserver` binary beside `cdictl`, built once per test run.
pub fn uploadserver_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_cdictl"))
            .parent()
            .expect("target dir")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "cdi-uploadserver",
            "--bin",
            "cdi-uploadserver",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build -p cdi-uploadserver failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("cdi-uploadserver")
    })
}

fn ca(name: &str) -> (rcgen::Issuer<'static, KeyPair>, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("key");
    let pem = p.self_signed(&key).expect("ca").pem();
    (rcgen::Issuer::new(p, key), pem)
}

fn leaf(
    issuer: &rcgen::Issuer<'static, KeyPair>,
    cn: &str,
    names: &[&str],
    client: bool,
) -> (String, String) {
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![if client {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

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
        let (server_issuer, server_ca) = ca("cdi-uploadserver-signer");
        let (client_issuer, client_ca) = ca("cdi-uploadserver-client-signer");
        let (server_cert, server_key) = leaf(
            &server_issuer,
            "cdi-upload-disk",
            &["localhost", "127.0.0.1"],
            false,
        );
        let (client_cert, client_key) = leaf(&client_issuer, CLIENT_NAME, &[], true);
        let write = |p: &str, text: &str| std::fs::write(root.path().join(p), text).expect(p);
        write("etc/tls/tls.crt", &server_cert);
        write("etc/tls/tls.key", &server_key);
        write("etc/tls/ca.crt", &client_ca);
        write("client/server-ca.crt", &server_ca);
        write("client/tls.crt", &client_cert);
        write("client/tls.key", &client_key);
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
        let child = Command::new(uploadserver_binary())
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

#[derive(Debug, Default)]
struct RelayPlan {
    /// Client-to-server bytes after which the next connections are cut, one per connection;
    /// connections after these are passed whole.
    budgets: VecDeque<u64>,
    /// Once the budgets are used up, refuse connections (accept and close at once).
    then_refuse: bool,
}

/// A TCP relay from 127.0.0.1:`port` to a server that cuts connections as planned.
pub struct Relay {
    pub port: u16,
    plan: Arc<Mutex<RelayPlan>>,
    cuts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let relay = Relay {
            port,
            plan: Arc::default(),
            cuts: Arc::default(),
            stop: Arc::default(),
        };
        let (plan, cuts, stop) = (
            Arc::clone(&relay.plan),
            Arc::clone(&relay.cuts),
            Arc::clone(&relay.stop),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let budget = {
                    let mut p = plan.lock().expect("plan");
                    match p.budgets.pop_front() {
                        Some(b) => Some(b),
                        None if p.then_refuse => {
                            drop(client);
                            continue;
                        }
                        None => None,
                    }
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                forward(client, server, budget, Arc::clone(&cuts));
            }
        });
        relay
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Cut the next connections after these many client bytes each.
    pub fn cut_after(&self, budgets: &[u64], then_refuse: bool) {
        let mut p = self.plan.lock().expect("plan");
        p.budgets = budgets.iter().copied().collect();
        p.then_refuse = then_refuse;
    }

    /// Pass every connection from now on.
    pub fn pass(&self) {
        *self.plan.lock().expect("plan") = RelayPlan::default();
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies both ways; the client's bytes stop (and both sockets close) after `budget`.
fn forward(client: TcpStream, server: TcpStream, budget: Option<u64>, cuts: Arc<AtomicUsize>) {
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut from = client;
        let mut to = server;
        let mut left = budget.unwrap_or(u64::MAX);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let pass = (n as u64).min(left) as usize;
            if to.write_all(&buf[..pass]).is_err() {
                break;
            }
            left -= pass as u64;
            if left == 0 {
                cuts.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let mut from = server2;
        let mut to = client2;
        let _ = std::io::copy(&mut from, &mut to);
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
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
