//! CDI's mount paths. `CDI_ROOT` (set by the test kubelet stand-in) prefixes every absolute
//! contract path, so the same binary runs in a pod and in a test directory.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    /// Filesystem volume mount; the image is `disk.img` in it.
    pub data_dir: PathBuf,
    /// Block volume device; its presence means Block mode.
    pub block_device: PathBuf,
    pub scratch: PathBuf,
    pub extra_headers: PathBuf,
    pub termination_log: PathBuf,
    /// Where the metrics server listens.
    pub metrics_addr: String,
}

impl Paths {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Paths {
        let root = PathBuf::from(env("CDI_ROOT").unwrap_or_else(|| "/".into()));
        let at = |p: &str| root.join(p.trim_start_matches('/'));
        Paths {
            data_dir: at("/data"),
            block_device: at("/dev/cdi-block-volume"),
            scratch: at("/scratch"),
            extra_headers: at("/extraheaders"),
            termination_log: at("/dev/termination-log"),
            metrics_addr: env("CDI_METRICS_ADDR").unwrap_or_else(|| "0.0.0.0:8443".into()),
            root,
        }
    }

    /// A container path from an env var (e.g. `IMPORTER_CERT_DIR=/certs`), under the root.
    pub fn container(&self, path: &str) -> PathBuf {
        if Path::new(path).is_absolute() {
            self.root.join(path.trim_start_matches('/'))
        } else {
            PathBuf::from(path)
        }
    }

    pub fn data_file(&self) -> PathBuf {
        self.data_dir.join("disk.img")
    }

    pub fn is_block(&self) -> bool {
        self.block_device.exists()
    }
}
