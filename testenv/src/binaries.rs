//! Builds kube-apiserver and kube-controller-manager from the Go module in `kube/`, once, and
//! caches them under `target/kube/<version>-<hash of go.mod and go.sum>/`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Error;

/// The Kubernetes release the test control plane runs; `kube/go.mod` pins the same one.
pub const KUBE_VERSION: &str = "v1.32.13";

/// Paths of the control-plane binaries.
#[derive(Debug, Clone)]
pub struct KubeBinaries {
    pub apiserver: PathBuf,
    pub controller_manager: PathBuf,
    pub etcd: PathBuf,
}

fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kube")
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// The cache key: the version plus a digest of the module files, so editing them rebuilds.
fn cache_key() -> Result<String, Error> {
    let mut hash = Sha256::new();
    for name in ["go.mod", "go.sum"] {
        let path = module_dir().join(name);
        hash.update(
            std::fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?,
        );
    }
    Ok(format!(
        "{KUBE_VERSION}-{}",
        &hex::encode(hash.finalize())[..12]
    ))
}

/// Finds `name` on PATH.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Returns the binaries, building them first if the cache does not have them.
///
/// `CDI_KUBE_BIN_DIR` points at a directory that already holds `kube-apiserver` and
/// `kube-controller-manager` (skips the build). Concurrent callers (several test binaries)
/// wait on a file lock while one builds.
pub fn ensure() -> Result<KubeBinaries, Error> {
    let etcd = which("etcd").ok_or_else(|| {
        Error::Setup("etcd is not on PATH; install it with `apt-get install -y etcd-server`".into())
    })?;
    let dir = match std::env::var_os("CDI_KUBE_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("kube").join(cache_key()?),
    };
    let bins = KubeBinaries {
        apiserver: dir.join("kube-apiserver"),
        controller_manager: dir.join("kube-controller-manager"),
        etcd,
    };
    if bins.apiserver.is_file() && bins.controller_manager.is_file() {
        return Ok(bins);
    }
    if std::env::var_os("CDI_KUBE_BIN_DIR").is_some() {
        return Err(Error::Setup(format!(
            "CDI_KUBE_BIN_DIR={} lacks kube-apiserver or kube-controller-manager",
            dir.display()
        )));
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    let lock_path = parent.join(".build.lock");
    let lock = File::create(&lock_path)
        .map_err(|e| Error::io(format!("create {}", lock_path.display()), e))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io(format!("lock {}", lock_path.display()), e.into()))?;
    if bins.apiserver.is_file() && bins.controller_manager.is_file() {
        return Ok(bins); // another process built them while we waited
    }
    build(&dir)?;
    Ok(bins)
}

fn build(dir: &Path) -> Result<(), Error> {
    let go = which("go").ok_or_else(|| {
        Error::Setup("Go is not on PATH; the test control plane is built with Go >= 1.24 (see testenv/README.md)".into())
    })?;
    let staging = PathBuf::from(format!("{}.partial", dir.display()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(|e| Error::io(format!("create {}", staging.display()), e))?;
    eprintln!(
        "testenv: building kube-apiserver and kube-controller-manager {KUBE_VERSION} with Go into {} \
         (about 6 minutes on 2 cores, once)",
        dir.display()
    );
    let mut out = staging.clone().into_os_string();
    out.push("/");
    let status = Command::new(go)
        .current_dir(module_dir())
        .args(["build", "-trimpath", "-ldflags=-s -w", "-o"])
        .arg(&out)
        .args([
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
        ])
        .status()
        .map_err(|e| Error::io("run go build".into(), e))?;
    if !status.success() {
        return Err(Error::Setup(format!(
            "go build of the control plane failed ({status}); its output is above"
        )));
    }
    std::fs::rename(&staging, dir).map_err(|e| {
        Error::io(
            format!("move {} to {}", staging.display(), dir.display()),
            e,
        )
    })
}
