//! What the controller benchmarks share: the binaries built beside the example, and the
//! controller run as a process against a test cluster.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Binary `name` of the profile the running example was built with (`cargo build` it first).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(|examples| examples.parent())
        .ok_or_else(|| anyhow::anyhow!("no target dir above {}", exe.display()))?;
    let path = target.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: cargo build (with the example's profile) the package that has it",
        path.display()
    );
    Ok(path)
}

/// The controller, running; stopped with [`BenchController::stop`].
pub struct BenchController {
    pub child: Child,
    /// Its metrics and probes port on 127.0.0.1.
    pub port: u16,
    pub log: PathBuf,
}

impl BenchController {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        cdi_testenv::process::stop(&mut self.child, Duration::from_secs(5));
    }
}

/// Starts the controller of this build against `cluster` (namespace `cdi_ns`) with `extra`
/// flags, logging warnings to a file in the temporary directory, and waits until it is ready.
pub async fn start_controller(
    cluster: &cdi_testenv::TestCluster,
    cdi_ns: &str,
    extra: &[&str],
) -> anyhow::Result<BenchController> {
    let port = cdi_testenv::process::free_port()?;
    let log = std::env::temp_dir().join(format!(
        "cdi-bench-controller-{}-{port}.log",
        std::process::id()
    ));
    let mut cmd = Command::new(sibling_binary("cdi-controller")?);
    cmd.arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["--importer-image", "cdi-importer"])
        .args(["--uploadserver-image", "cdi-uploadserver"])
        .args(["--namespace", cdi_ns])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let child = cdi_testenv::process::spawn_tied(cmd)?;
    let ready = format!("http://127.0.0.1:{port}/readyz");
    cdi_testenv::wait::eventually(
        "the controller to be ready",
        Duration::from_secs(60),
        || async { http_ok(&ready).await.then_some(()) },
    )
    .await?;
    Ok(BenchController { child, port, log })
}

/// Whether `url` answers 2xx.
pub async fn http_ok(url: &str) -> bool {
    match reqwest::get(url).await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// The body at `url`, if it answers.
pub async fn http_text(url: &str) -> Option<String> {
    reqwest::get(url).await.ok()?.text().await.ok()
}
