//! What every reconciler shares: the API client, settings, the event recorder, metrics, back-off,
//! and the wrapper every reconcile pass runs in.

use std::sync::Arc;
use std::time::Instant;

use cdi_crds::config::{CDI_CONFIG_NAME, CdiConfig};
use cdi_crds::storageprofile::StorageProfile;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::Error;
pub use crate::backoff::{FailureBackoff, WorkerBackoff};
use crate::cdiconfig::EffectiveConfig;
use crate::certs::UploadCertificates;
use crate::metrics::Metrics;
use crate::settings::Settings;

/// Shared state of the running controller.
#[derive(Clone)]
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Start-up settings.
    pub settings: Arc<Settings>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The upload servers' certificate authorities.
    pub upload_certs: Arc<UploadCertificates>,
    /// HTTPS client for worker metrics (self-signed certificates, short timeouts).
    pub scraper: reqwest::Client,
    /// Caches of the cluster-wide objects every reconcile reads.
    pub stores: Stores,
    /// Back-off between worker pods created for the same claim.
    pub worker_backoff: Arc<WorkerBackoff>,
    /// Back-off after failed reconciles, per controller and object.
    pub failures: Arc<FailureBackoff>,
    /// Checks the clone tokens cross-namespace clones carry (cdi-apiserver's public keys);
    /// without it such clones fail.
    pub clone_tokens: Option<Arc<cdi_token::Validator>>,
    recorder: Recorder,
}

/// Watch caches of the cluster-scoped objects reconcilers read on every pass.
#[derive(Clone, Debug)]
pub struct Stores {
    /// The CDIConfig singleton.
    pub config: Store<CdiConfig>,
    /// StorageClasses, for defaults and binding modes.
    pub storage_classes: Store<StorageClass>,
    /// StorageProfiles, for access and volume modes.
    pub storage_profiles: Store<StorageProfile>,
}

impl Stores {
    /// Starts watching; returns the caches and the future that keeps them filled (spawn it).
    pub fn start(
        client: &Client,
    ) -> (Stores, impl std::future::Future<Output = ()> + Send + use<>) {
        let (config, config_writer) = reflector::store();
        let (classes, classes_writer) = reflector::store();
        let (profiles, profiles_writer) = reflector::store();
        let cfg = watcher(
            Api::<CdiConfig>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(config_writer)
        .applied_objects()
        .for_each(|_| futures::future::ready(()));
        let sc = watcher(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(classes_writer)
        .applied_objects()
        .for_each(|_| futures::future::ready(()));
        let sp = watcher(
            Api::<StorageProfile>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(profiles_writer)
        .applied_objects()
        .for_each(|_| futures::future::ready(()));
        let stores = Stores {
            config,
            storage_classes: classes,
            storage_profiles: profiles,
        };
        (stores, async move {
            futures::join!(cfg, sc, sp);
        })
    }

    /// Waits until every cache has its first full list.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.config.wait_until_ready().await?;
        self.storage_classes.wait_until_ready().await?;
        self.storage_profiles.wait_until_ready().await
    }

    /// The effective CDIConfig settings.
    pub fn effective_config(&self) -> EffectiveConfig {
        let config = self.config.get(&ObjectRef::new(CDI_CONFIG_NAME));
        EffectiveConfig::from_config(config.as_deref())
    }

    /// The StorageClass named `name`.
    pub fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.storage_classes.get(&ObjectRef::new(name))
    }

    /// The StorageProfile named `name`.
    pub fn storage_profile(&self, name: &str) -> Option<Arc<StorageProfile>> {
        self.storage_profiles.get(&ObjectRef::new(name))
    }

    /// Every StorageClass.
    pub fn all_storage_classes(&self) -> Vec<Arc<StorageClass>> {
        self.storage_classes.state()
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// An event to publish: Normal or Warning, upstream's reason string, and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

impl EventSpec {
    pub fn normal(reason: &str, message: impl Into<String>) -> EventSpec {
        EventSpec {
            warning: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn warning(reason: &str, message: impl Into<String>) -> EventSpec {
        EventSpec {
            warning: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

impl Context {
    /// A context for `client` with the given settings and fresh metrics.
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        upload_certs: Arc<UploadCertificates>,
        stores: Stores,
    ) -> Context {
        let reporter = Reporter {
            controller: crate::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let scraper = reqwest::Client::builder()
            // Worker pods serve metrics with a certificate they made at start.
            .danger_accept_invalid_certs(true)
            .timeout(std::time::Duration::from_secs(2))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings: Arc::new(settings),
            metrics,
            upload_certs,
            scraper,
            stores,
            worker_backoff: Arc::default(),
            failures: Arc::default(),
            clone_tokens: None,
        }
    }

    /// Runs one reconcile `pass` of `controller` for the object `key` (e.g. `ns/name`): records
    /// its duration and any error in the metrics, and clears the object's failure back-off when
    /// it worked.
    pub async fn reconciled(
        &self,
        controller: &str,
        key: &str,
        pass: impl std::future::Future<Output = Result<Action, Error>>,
    ) -> Result<Action, Error> {
        let started = Instant::now();
        let result = pass.await;
        self.metrics.observe_reconcile(
            controller,
            started.elapsed(),
            result.as_ref().err().map(Error::metric_label),
        );
        if result.is_ok() {
            self.failures.succeeded(&format!("{controller}/{key}"));
        }
        result
    }

    /// The error policy of every controller: logs `error` for the object `key` and retries it
    /// after its back-off (1 s, doubling with each consecutive failure, at most 5 min).
    pub fn retry_after(&self, controller: &str, key: &str, error: &Error) -> Action {
        let wait = self.failures.failed(&format!("{controller}/{key}"));
        tracing::warn!(
            controller, object = key, %error, retry_in_s = wait.as_secs(),
            "Reconcile failed; retrying."
        );
        Action::requeue(wait)
    }

    /// Publishes `event` about `regarding`; failures are logged, never fatal.
    pub async fn publish(&self, regarding: &ObjectReference, event: &EventSpec) {
        let ev = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.clone(),
            note: Some(truncate(&event.message, 1000)),
            action: event.reason.clone(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, regarding).await {
            tracing::warn!(reason = %event.reason, error = %e, "Could not publish an event.");
        }
    }
}

/// The key an object's reconciles are tracked by: `namespace/name`, or `name` when
/// cluster-scoped.
pub fn object_key(object: &impl kube::ResourceExt) -> String {
    match object.namespace() {
        Some(ns) => format!("{ns}/{}", object.name_any()),
        None => object.name_any(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_owned()
}
