//! The controller's Prometheus metrics, served as text on `/metrics` with `kubevirt_cdi_` names.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the per-controller reconcile metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// Labels of the reconcile error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub error: String,
}

/// Labels of `kubevirt_cdi_storageprofile_info`, as upstream's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageProfileLabels {
    pub storageclass: String,
    pub provisioner: String,
    pub complete: String,
    pub default: String,
    pub virtdefault: String,
    pub rwx: String,
    pub smartclone: String,
    pub degraded: String,
}

/// Labels of the DataVolume phase transition counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

/// Labels of `kubevirt_cdi_dataimportcron_outdated`, as upstream's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CronOutdatedLabels {
    pub namespace: String,
    pub cron_name: String,
    /// Waiting for a default storage class (upstream's alert ignores those).
    pub pending: String,
}

/// Labels of the per-cron metrics of ours.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CronLabels {
    pub namespace: String,
    pub cron_name: String,
}

/// Every metric the controller exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Reconciles run, per controller.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconciles that failed, per controller and error kind.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// How long reconciles took, per controller.
    pub reconcile_seconds: Family<ControllerLabels, Histogram>,
    /// DataVolumes that entered each phase.
    pub datavolume_phase_transitions: Family<PhaseLabels, Counter>,
    /// DataVolumes waiting for a default StorageClass.
    pub datavolume_pending: Gauge,
    /// One series per StorageProfile, value 1.
    pub storageprofile_info: Family<StorageProfileLabels, Gauge>,
    /// Worker pods created, per controller.
    pub pods_created: Family<ControllerLabels, Counter>,
    /// 1 while a DataImportCron's `UpToDate` condition is not True.
    pub dataimportcron_outdated: Family<CronOutdatedLabels, Gauge>,
    /// When each DataImportCron last polled its source (Unix seconds).
    pub dataimportcron_last_poll: Family<CronLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// How long DataImportCron imports took, from DataVolume creation to success.
    pub dataimportcron_import_seconds: Histogram,
    /// Requests DataImportCron polling sent to registries.
    pub dataimportcron_registry_requests: Counter,
    /// Polls DataImportCrons made (each one digest lookup).
    pub dataimportcron_polls: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kubevirt_cdi");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_seconds = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 4.0, 9))
        });
        let datavolume_phase_transitions = Family::<PhaseLabels, Counter>::default();
        let datavolume_pending = Gauge::default();
        let storageprofile_info = Family::<StorageProfileLabels, Gauge>::default();
        let pods_created = Family::<ControllerLabels, Counter>::default();
        let dataimportcron_outdated = Family::<CronOutdatedLabels, Gauge>::default();
        let dataimportcron_last_poll =
            Family::<CronLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let dataimportcron_import_seconds = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        let dataimportcron_registry_requests = Counter::default();
        let dataimportcron_polls = Counter::default();
        registry.register(
            "controller_reconcile",
            "Reconciles run by the controller",
            reconciles.clone(),
        );
        registry.register(
            "controller_reconcile_errors",
            "Reconciles that failed and were retried",
            reconcile_errors.clone(),
        );
        registry.register(
            "controller_reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_seconds.clone(),
        );
        registry.register(
            "datavolume_phase_transitions",
            "DataVolumes that entered a phase",
            datavolume_phase_transitions.clone(),
        );
        registry.register(
            "datavolume_pending",
            "DataVolumes pending for a default storage class",
            datavolume_pending.clone(),
        );
        registry.register(
            "storageprofile_info",
            "One series per StorageProfile describing it",
            storageprofile_info.clone(),
        );
        registry.register(
            "controller_worker_pods_created",
            "Worker pods the controller created",
            pods_created.clone(),
        );
        registry.register(
            "dataimportcron_outdated",
            "DataImportCrons whose newest import is not the source's newest digest",
            dataimportcron_outdated.clone(),
        );
        registry.register(
            "dataimportcron_last_poll_timestamp_seconds",
            "When each DataImportCron last polled its source",
            dataimportcron_last_poll.clone(),
        );
        registry.register(
            "dataimportcron_import_duration_seconds",
            "Time from a DataImportCron creating an import to its success",
            dataimportcron_import_seconds.clone(),
        );
        registry.register(
            "dataimportcron_registry_requests",
            "Requests DataImportCron polling sent to registries",
            dataimportcron_registry_requests.clone(),
        );
        registry.register(
            "dataimportcron_polls",
            "Digest lookups DataImportCrons made",
            dataimportcron_polls.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            reconciles,
            reconcile_errors,
            reconcile_seconds,
            datavolume_phase_transitions,
            datavolume_pending,
            storageprofile_info,
            pods_created,
            dataimportcron_outdated,
            dataimportcron_last_poll,
            dataimportcron_import_seconds,
            dataimportcron_registry_requests,
            dataimportcron_polls,
        }
    }

    /// Records one reconcile of `controller` that took `took` and ended with `error`.
    pub fn observe_reconcile(&self, controller: &str, took: Duration, error: Option<&str>) {
        let labels = ControllerLabels {
            controller: controller.into(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(error) = error {
            self.reconcile_errors
                .get_or_create(&ErrorLabels {
                    controller: controller.into(),
                    error: error.into(),
                })
                .inc();
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_metrics_have_kubevirt_cdi_names() {
        let m = Metrics::new();
        m.observe_reconcile("datavolume", Duration::from_millis(3), Some("kube"));
        let text = m.encode();
        assert!(
            text.contains("kubevirt_cdi_controller_reconcile_total{controller=\"datavolume\"} 1")
        );
        assert!(text.contains(
            "kubevirt_cdi_controller_reconcile_errors_total{controller=\"datavolume\",error=\"kube\"} 1"
        ));
        assert!(text.contains("kubevirt_cdi_controller_reconcile_duration_seconds_bucket"));
    }
}
