//! Where the proxy looks up claims and upload pods: the API server in production, a map in
//! tests.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;

/// A failed lookup (anything but "not found", which is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
#[error("reading {kind} {namespace}/{name}: {message}")]
pub struct LookupError {
    /// `PersistentVolumeClaim` or `Pod`.
    pub kind: &'static str,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// What went wrong.
    pub message: String,
}

/// Reads claims and pods by name.
pub trait UploadTargets: Send + Sync {
    /// The claim `namespace/name`, `None` if it does not exist.
    fn claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolumeClaim>, LookupError>>;

    /// The pod `namespace/name`, `None` if it does not exist.
    fn pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Pod>, LookupError>>;
}

/// Lookups through the API server (needs get on persistentvolumeclaims and pods).
#[derive(Clone)]
pub struct KubeTargets {
    client: kube::Client,
}

impl std::fmt::Debug for KubeTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeTargets")
    }
}

impl KubeTargets {
    /// Lookups with `client`.
    pub fn new(client: kube::Client) -> Self {
        KubeTargets { client }
    }
}

impl UploadTargets for KubeTargets {
    fn claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolumeClaim>, LookupError>> {
        Box::pin(async move {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
            api.get_opt(name)
                .await
                .map_err(|e| lookup_error("PersistentVolumeClaim", namespace, name, e))
        })
    }

    fn pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Pod>, LookupError>> {
        Box::pin(async move {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            api.get_opt(name)
                .await
                .map_err(|e| lookup_error("Pod", namespace, name, e))
        })
    }
}

fn lookup_error(kind: &'static str, namespace: &str, name: &str, e: kube::Error) -> LookupError {
    LookupError {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        message: e.to_string(),
    }
}

/// Claims and pods kept in memory, changeable while a request waits (tests).
#[derive(Debug, Default)]
pub struct MemoryTargets {
    claims: Mutex<BTreeMap<(String, String), PersistentVolumeClaim>>,
    pods: Mutex<BTreeMap<(String, String), Pod>>,
}

impl MemoryTargets {
    /// No claims, no pods.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a claim (keyed by its metadata's namespace and name).
    pub fn put_claim(&self, claim: PersistentVolumeClaim) {
        let key = key_of(&claim.metadata);
        lock(&self.claims).insert(key, claim);
    }

    /// Adds or replaces a pod (keyed by its metadata's namespace and name).
    pub fn put_pod(&self, pod: Pod) {
        let key = key_of(&pod.metadata);
        lock(&self.pods).insert(key, pod);
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UploadTargets for MemoryTargets {
    fn claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolumeClaim>, LookupError>> {
        let found = lock(&self.claims)
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Pod>, LookupError>> {
        let found = lock(&self.pods)
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned();
        Box::pin(async move { Ok(found) })
    }
}
