//! CDIConfig: the cluster-wide settings every reconciler reads ([`EffectiveConfig`], pure), and
//! the controller that fills in the singleton's status ([`reconcile`]).

pub mod reconcile;

use std::collections::BTreeMap;

use cdi_crds::config::{
    CdiConfig, CdiConfigSpec, CdiConfigStatus, FilesystemOverhead, ImportProxy, Percent,
    TlsProfileType, TlsSecurityProfile,
};
use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Upstream's default filesystem overhead.
pub const DEFAULT_FILESYSTEM_OVERHEAD: &str = "0.06";
/// The feature gate that makes worker pods wait for a WaitForFirstConsumer claim to be bound.
pub const HONOR_WAIT_FOR_FIRST_CONSUMER: &str = "HonorWaitForFirstConsumer";

/// Upstream's default worker pod resources: limits 750m CPU / 600M memory, requests 100m / 60M.
pub fn default_pod_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.into());
    ResourceRequirements {
        limits: Some(BTreeMap::from([
            ("cpu".into(), q("750m")),
            ("memory".into(), q("600M")),
        ])),
        requests: Some(BTreeMap::from([
            ("cpu".into(), q("100m")),
            ("memory".into(), q("60M")),
        ])),
        ..Default::default()
    }
}

/// The settings reconcilers use, from CDIConfig's spec with upstream's defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectiveConfig {
    overhead_global: f64,
    overhead_by_class: BTreeMap<String, f64>,
    /// Resources of every worker container.
    pub pod_resources: ResourceRequirements,
    /// Preallocate when the DataVolume does not say.
    pub preallocation: bool,
    /// Proxy for importer pods.
    pub import_proxy: Option<ImportProxy>,
    /// Image pull secrets for worker pods.
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Worker pods wait for WaitForFirstConsumer claims to be bound by a consumer.
    pub honor_wait_for_first_consumer: bool,
    /// StorageClass of scratch claims; the target's when `None`.
    pub scratch_storage_class: Option<String>,
    /// Ciphers the upload server offers (`TLS_CIPHERS`), from the TLS security profile.
    pub tls_ciphers: Vec<String>,
    /// Lowest TLS version the upload server accepts (`TLS_MIN_VERSION`).
    pub tls_min_version: String,
    /// Registry hosts (`host` or `host:port`) imported from without TLS verification.
    pub insecure_registries: Vec<String>,
}

impl Default for EffectiveConfig {
    fn default() -> EffectiveConfig {
        EffectiveConfig::from_spec(&CdiConfigSpec::default())
    }
}

impl EffectiveConfig {
    /// The effective settings of `config` (defaults when there is none yet).
    pub fn from_config(config: Option<&CdiConfig>) -> EffectiveConfig {
        config.map_or_else(EffectiveConfig::default, |c| {
            EffectiveConfig::from_spec(&c.spec)
        })
    }

    /// The effective settings of `spec`. Invalid overhead values (which the CRD's pattern
    /// refuses anyway) fall back to the default.
    pub fn from_spec(spec: &CdiConfigSpec) -> EffectiveConfig {
        let default_overhead = parse_percent(DEFAULT_FILESYSTEM_OVERHEAD).unwrap_or(0.06);
        let overhead = spec.filesystem_overhead.clone().unwrap_or_default();
        let overhead_global = overhead
            .global
            .as_ref()
            .and_then(|p| parse_percent(&p.0))
            .unwrap_or(default_overhead);
        let overhead_by_class = overhead
            .storage_class
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(class, p)| parse_percent(&p.0).map(|v| (class, v)))
            .collect();
        let tls = tls_settings(spec.tls_security_profile.as_ref());
        EffectiveConfig {
            overhead_global,
            overhead_by_class,
            pod_resources: spec
                .pod_resource_requirements
                .clone()
                .unwrap_or_else(default_pod_resources),
            preallocation: spec.preallocation.unwrap_or(false),
            import_proxy: spec.import_proxy.clone(),
            image_pull_secrets: spec.image_pull_secrets.clone().unwrap_or_default(),
            // The released CDI CR enables the gate; with no gates listed we do the same.
            honor_wait_for_first_consumer: spec
                .feature_gates
                .as_ref()
                .is_none_or(|gates| gates.iter().any(|g| g == HONOR_WAIT_FOR_FIRST_CONSUMER)),
            scratch_storage_class: spec.scratch_space_storage_class.clone(),
            tls_ciphers: tls.0,
            tls_min_version: tls.1,
            insecure_registries: spec.insecure_registries.clone().unwrap_or_default(),
        }
    }

    /// Whether the registry of `url` (`docker://HOST[:PORT]/...`) is listed as insecure.
    pub fn is_insecure_registry(&self, url: &str) -> bool {
        let rest = url.strip_prefix("docker://").unwrap_or(url);
        let host = rest.split('/').next().unwrap_or_default();
        self.insecure_registries
            .iter()
            .any(|r| r.trim_end_matches('/').eq_ignore_ascii_case(host))
    }

    /// The filesystem overhead of claims of `storage_class`, as a fraction.
    pub fn filesystem_overhead(&self, storage_class: Option<&str>) -> f64 {
        storage_class
            .and_then(|c| self.overhead_by_class.get(c))
            .copied()
            .unwrap_or(self.overhead_global)
    }

    /// The overhead as the importer's `FILESYSTEM_OVERHEAD` wants it: `"0.06"`, `"0"`.
    pub fn filesystem_overhead_env(&self, storage_class: Option<&str>) -> String {
        format_fraction(self.filesystem_overhead(storage_class))
    }
}

/// The status the controller writes for `spec`: `existing_classes` are the StorageClass names
/// (an unknown scratch class is reported as `""`, as upstream does).
pub fn status_for(
    spec: &CdiConfigSpec,
    existing_classes: &[String],
    upload_proxy_url: Option<String>,
) -> CdiConfigStatus {
    let effective = EffectiveConfig::from_spec(spec);
    let overhead = FilesystemOverhead {
        global: Some(Percent(format_fraction(effective.overhead_global))),
        storage_class: Some(
            existing_classes
                .iter()
                .map(|c| {
                    (
                        c.clone(),
                        Percent(format_fraction(effective.filesystem_overhead(Some(c)))),
                    )
                })
                .collect(),
        ),
    };
    CdiConfigStatus {
        upload_proxy_url: spec.upload_proxy_url_override.clone().or(upload_proxy_url),
        upload_proxy_ca: None,
        import_proxy: spec.import_proxy.clone(),
        scratch_space_storage_class: Some(
            spec.scratch_space_storage_class
                .clone()
                .filter(|c| existing_classes.contains(c))
                .unwrap_or_default(),
        ),
        default_pod_resource_requirements: Some(effective.pod_resources.clone()),
        filesystem_overhead: Some(overhead),
        preallocation: Some(effective.preallocation),
        image_pull_secrets: spec.image_pull_secrets.clone(),
    }
}

/// OpenShift's Intermediate profile, upstream's default for the upload server.
const INTERMEDIATE_CIPHERS: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
];
/// OpenShift's Modern profile: TLS 1.3 only.
const MODERN_CIPHERS: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Ciphers and minimum version of a TLS security profile (Intermediate when none).
fn tls_settings(profile: Option<&TlsSecurityProfile>) -> (Vec<String>, String) {
    let owned = |list: &[&str]| list.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
    match profile.map(|p| (&p.type_, p.custom.as_ref())) {
        Some((TlsProfileType::Modern, _)) => (owned(MODERN_CIPHERS), "VersionTLS13".into()),
        // Old also allows TLS 1.0 ciphers we never offer; rustls speaks 1.2 and 1.3 only.
        Some((TlsProfileType::Old, _)) => (owned(INTERMEDIATE_CIPHERS), "VersionTLS10".into()),
        Some((TlsProfileType::Custom, Some(custom))) => (
            custom.ciphers.clone(),
            custom.min_tls_version.as_str().to_owned(),
        ),
        _ => (owned(INTERMEDIATE_CIPHERS), "VersionTLS12".into()),
    }
}

/// The upload proxy's URL from an Ingress that routes to Service `service`: the host of its
/// first rule with a path to that Service (upstream derives `uploadProxyURL` the same way).
pub fn upload_proxy_url_from_ingresses(ingresses: &[Ingress], service: &str) -> Option<String> {
    ingresses.iter().find_map(|ing| {
        let spec = ing.spec.as_ref()?;
        let default_backend = spec
            .default_backend
            .as_ref()
            .and_then(|b| b.service.as_ref())
            .is_some_and(|s| s.name == service);
        spec.rules.iter().flatten().find_map(|rule| {
            let routes = rule.http.as_ref().is_some_and(|http| {
                http.paths.iter().any(|p| {
                    p.backend
                        .service
                        .as_ref()
                        .is_some_and(|s| s.name == service)
                })
            });
            (routes || default_backend)
                .then(|| rule.host.clone())
                .flatten()
        })
    })
}

fn parse_percent(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    (0.0..=1.0).contains(&v).then_some(v)
}

/// `0.06` → `"0.06"`, `0.0` → `"0"`, `1.0` → `"1"`: at most three decimals, as the CRD's
/// pattern allows.
fn format_fraction(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_upstream() {
        let c = EffectiveConfig::default();
        assert_eq!(c.filesystem_overhead(None), 0.06);
        assert_eq!(c.filesystem_overhead_env(Some("any")), "0.06");
        assert!(!c.preallocation);
        assert!(c.honor_wait_for_first_consumer);
        assert_eq!(c.pod_resources, default_pod_resources());
    }

    #[test]
    fn per_class_overhead_overrides_global() {
        let spec = CdiConfigSpec {
            filesystem_overhead: Some(FilesystemOverhead {
                global: Some(Percent("0.1".into())),
                storage_class: Some(BTreeMap::from([("fast".into(), Percent("0".into()))])),
            }),
            ..Default::default()
        };
        let c = EffectiveConfig::from_spec(&spec);
        assert_eq!(c.filesystem_overhead(Some("fast")), 0.0);
        assert_eq!(c.filesystem_overhead_env(Some("fast")), "0");
        assert_eq!(c.filesystem_overhead(Some("slow")), 0.1);
        assert_eq!(c.filesystem_overhead_env(None), "0.1");
    }

    #[test]
    fn listing_gates_without_honor_wffc_turns_it_off() {
        let spec = CdiConfigSpec {
            feature_gates: Some(vec!["DataVolumeClaimAdoption".into()]),
            ..Default::default()
        };
        assert!(!EffectiveConfig::from_spec(&spec).honor_wait_for_first_consumer);
    }

    #[test]
    fn upload_proxy_url_comes_from_the_ingress_routing_to_the_proxy() {
        let ingress = |host: &str, service: &str| -> Ingress {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "x"},
                "spec": {"rules": [{"host": host, "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": service, "port": {"number": 443}}}}]}}]}
            }))
            .expect("an Ingress")
        };
        let list = [
            ingress("other.example", "web"),
            ingress("upload.example", "cdi-uploadproxy"),
        ];
        assert_eq!(
            upload_proxy_url_from_ingresses(&list, "cdi-uploadproxy").as_deref(),
            Some("upload.example")
        );
        assert_eq!(
            upload_proxy_url_from_ingresses(&list[..1], "cdi-uploadproxy"),
            None
        );
    }

    #[test]
    fn status_reports_overheads_per_class_and_drops_an_unknown_scratch_class() {
        let spec = CdiConfigSpec {
            scratch_space_storage_class: Some("missing".into()),
            upload_proxy_url_override: Some("https://upload.example".into()),
            ..Default::default()
        };
        let status = status_for(&spec, &["a".into(), "b".into()], None);
        assert_eq!(status.scratch_space_storage_class.as_deref(), Some(""));
        assert_eq!(
            status.upload_proxy_url.as_deref(),
            Some("https://upload.example")
        );
        let overhead = status.filesystem_overhead.expect("set");
        assert_eq!(overhead.global, Some(Percent("0.06".into())));
        assert_eq!(
            overhead.storage_class.expect("set").get("b"),
            Some(&Percent("0.06".into()))
        );
        assert_eq!(
            status.default_pod_resource_requirements,
            Some(default_pod_resources())
        );
        assert_eq!(status.preallocation, Some(false));
    }
}
