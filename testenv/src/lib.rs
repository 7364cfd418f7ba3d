//! A real Kubernetes control plane on loopback (etcd, kube-apiserver, kube-controller-manager)
//! and a kubelet stand-in that runs pods as local processes, for end-to-end tests.
//!
//! [`TestCluster::start`] gives a cluster: the one named by `CDI_TEST_KUBECONFIG` if set (kind,
//! k3s, a real cluster), else a fresh local control plane. See `testenv/README.md`.

pub mod aggregation;
pub mod binaries;
pub mod cluster;
pub mod control_plane;
pub mod crds;
pub mod kubelet;
pub mod pki;
pub mod process;
pub mod wait;
pub mod webhooks;

pub use cluster::TestCluster;
pub use control_plane::ControlPlane;
pub use kubelet::csi::{CSI_DRIVER, CSI_STORAGE_CLASS, PATH_ATTRIBUTE as CSI_PATH_ATTRIBUTE};
pub use kubelet::snapshot::SNAPSHOT_CLASS;
pub use kubelet::{KubeletStandIn, STANDIN_NODE, STORAGE_CLASS, STORAGE_CLASS_WFFC};

/// What went wrong while setting up or running the test environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("test environment: {0}")]
    Setup(String),
    #[error("test environment: {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("test environment: certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("test environment: Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("test environment: kubeconfig: {0}")]
    Kubeconfig(String),
}

impl Error {
    pub(crate) fn io(what: String, source: std::io::Error) -> Error {
        Error::Io { what, source }
    }
}

/// A kube client configuration from a kubeconfig file (its current context).
pub async fn kube_config(kubeconfig: &std::path::Path) -> Result<kube::Config, Error> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| Error::Kubeconfig(format!("{}: {e}", kubeconfig.display())))?;
    kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(format!("{}: {e}", kubeconfig.display())))
}
