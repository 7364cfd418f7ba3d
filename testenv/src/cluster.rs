//! A cluster for one test: an external one named by `CDI_TEST_KUBECONFIG`, or a local control
//! plane with the kubelet stand-in.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use crate::{ControlPlane, Error, KubeletStandIn};

/// The environment variable naming an external cluster's kubeconfig.
pub const KUBECONFIG_ENV: &str = "CDI_TEST_KUBECONFIG";

/// A cluster to run end-to-end tests against. Dropping it stops the local control plane and
/// kubelet stand-in (an external cluster is left as it is, apart from the namespaces the test
/// deleted itself).
pub struct TestCluster {
    client: Client,
    kubeconfig: PathBuf,
    // Field order is drop order: the stand-in's processes die before the control plane.
    kubelet: Option<KubeletStandIn>,
    plane: Option<ControlPlane>,
    _root: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("kubeconfig", &self.kubeconfig)
            .field("local", &self.plane.is_some())
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// Connects to `CDI_TEST_KUBECONFIG` if it is set; otherwise starts a local control plane
    /// (building it once) and a kubelet stand-in that plays each image named in `binaries` with
    /// the given local binary (e.g. `"cdi-importer"` → `target/debug/cdi-importer`).
    pub async fn start(binaries: BTreeMap<String, PathBuf>) -> Result<TestCluster, Error> {
        if let Some(path) = std::env::var_os(KUBECONFIG_ENV).filter(|p| !p.is_empty()) {
            let kubeconfig = PathBuf::from(path);
            let client = Client::try_from(crate::kube_config(&kubeconfig).await?)?;
            return Ok(TestCluster {
                client,
                kubeconfig,
                kubelet: None,
                plane: None,
                _root: None,
            });
        }
        let plane = ControlPlane::start().await?;
        let client = Client::try_from(crate::kube_config(&plane.kubeconfig).await?)?;
        let root = tempfile::Builder::new()
            .prefix("cdi-standin-")
            .tempdir()
            .map_err(|e| Error::io("create the stand-in's directory".into(), e))?;
        let kubelet =
            KubeletStandIn::start(client.clone(), root.path().to_path_buf(), binaries).await?;
        Ok(TestCluster {
            client,
            kubeconfig: plane.kubeconfig.clone(),
            kubelet: Some(kubelet),
            plane: Some(plane),
            _root: Some(root),
        })
    }

    /// A client with cluster-admin rights.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The kubeconfig file, for processes under test (a controller run as a process).
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// Whether this is the local control plane (pods run in the stand-in) rather than an
    /// external cluster (pods run on real nodes from real images).
    pub fn is_local(&self) -> bool {
        self.plane.is_some()
    }

    /// The local control plane, if this is one.
    pub fn control_plane(&self) -> Option<&ControlPlane> {
        self.plane.as_ref()
    }

    /// The kubelet stand-in, if this is a local control plane.
    pub fn kubelet(&self) -> Option<&KubeletStandIn> {
        self.kubelet.as_ref()
    }

    /// Registers an aggregated API server listening on `127.0.0.1:port` (or `localhost`) for
    /// `group`/`version`, whose serving certificate is signed by `ca_pem` and names
    /// [`aggregation::server_name`]`(group)`, and waits until kube-apiserver reports it
    /// `Available` (about a second). Only on the local control plane: an external cluster's
    /// apiserver cannot reach a process on this machine.
    ///
    /// [`aggregation::server_name`]: crate::aggregation::server_name
    pub async fn register_aggregated_api(
        &self,
        group: &str,
        version: &str,
        port: u16,
        ca_pem: &str,
    ) -> Result<(), Error> {
        if !self.is_local() {
            return Err(Error::Setup(format!(
                "register_aggregated_api({group}/{version}): only the local control plane can \
                 reach an API server on this machine; deploy it in the cluster instead"
            )));
        }
        crate::aggregation::register(&self.client, group, version, port, ca_pem).await
    }

    /// Makes the cluster play a CSI driver that clones and snapshots (see
    /// [`KubeletStandIn::enable_csi`]): StorageClass [`CSI_STORAGE_CLASS`] (provisioner
    /// [`CSI_DRIVER`]), the `snapshot.storage.k8s.io/v1` API with VolumeSnapshotClass
    /// [`SNAPSHOT_CLASS`], and the provisioner, resizer and snapshotter behind them. Only on
    /// the local control plane: on another cluster, install a real CSI driver instead.
    ///
    /// [`CSI_STORAGE_CLASS`]: crate::CSI_STORAGE_CLASS
    /// [`CSI_DRIVER`]: crate::CSI_DRIVER
    /// [`SNAPSHOT_CLASS`]: crate::SNAPSHOT_CLASS
    pub async fn enable_csi_standin(&self) -> Result<(), Error> {
        match &self.kubelet {
            Some(kubelet) => kubelet.enable_csi().await,
            None => Err(Error::Setup(
                "enable_csi_standin: the CSI stand-in runs with the local control plane only; \
                 on another cluster, install a CSI driver with clone and snapshot support"
                    .into(),
            )),
        }
    }

    /// Restarts the local control plane's kube-apiserver ([`ControlPlane::restart_apiserver`]);
    /// an error on another cluster.
    pub async fn restart_apiserver(&mut self) -> Result<(), Error> {
        match self.plane.as_mut() {
            Some(plane) => plane.restart_apiserver().await,
            None => Err(Error::Setup(
                "restart_apiserver: only the local control plane can be restarted".into(),
            )),
        }
    }

    /// Creates a namespace with a generated name starting with `prefix` and returns its name.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String, Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = api.create(&PostParams::default(), &ns).await?;
        created
            .metadata
            .name
            .ok_or_else(|| Error::Setup("the apiserver returned a namespace without a name".into()))
    }

    /// Deletes a namespace (and so everything in it); waits for nothing.
    pub async fn delete_namespace(&self, name: &str) -> Result<(), Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
