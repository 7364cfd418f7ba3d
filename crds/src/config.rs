//! CDIConfig: cluster-wide CDI settings (the singleton is named `config`; the operator copies
//! `CDI.spec.config` into its spec) and the values the controller derives from them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements};
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::string_enum::string_enum;

/// The name of the one CDIConfig object CDI reads.
pub const CDI_CONFIG_NAME: &str = "config";

/// Cluster-wide settings for imports, uploads and clones.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cdi.kubevirt.io",
    version = "v1beta1",
    kind = "CDIConfig",
    root = "CdiConfig",
    plural = "cdiconfigs",
    status = "CdiConfigStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Cluster-wide CDI settings (one object, named config) and the values derived from them."
)]
#[serde(rename_all = "camelCase")]
pub struct CdiConfigSpec {
    /// Upload proxy URL to report instead of the one found from an Ingress or Route.
    #[serde(
        default,
        rename = "uploadProxyURLOverride",
        skip_serializing_if = "Option::is_none"
    )]
    pub upload_proxy_url_override: Option<String>,
    /// Proxy settings for importer pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_proxy: Option<ImportProxy>,
    /// StorageClass for scratch space; the target claim's class if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch_space_storage_class: Option<String>,
    /// Resources for every worker container (importer, uploader, cloner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_resource_requirements: Option<ResourceRequirements>,
    /// Feature gates to enable, e.g. `HonorWaitForFirstConsumer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_gates: Option<Vec<String>>,
    /// Whether the PVC webhook renders claims labelled `cdi.kubevirt.io/applyStorageProfile`
    /// (`Enabled`, the default, or `Disabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_pvc_rendering: Option<WebhookPvcRenderingPolicy>,
    /// Space kept free on Filesystem volumes, as a fraction (default "0.06").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem_overhead: Option<FilesystemOverhead>,
    /// Default for DataVolumes' `preallocation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preallocation: Option<bool>,
    /// Registries to reach without TLS verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_registries: Option<Vec<String>>,
    /// Deprecated and ignored (DataVolume garbage collection was removed upstream in v1.62).
    #[serde(
        default,
        rename = "dataVolumeTTLSeconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub data_volume_ttl_seconds: Option<i32>,
    /// TLS settings for the API server, upload proxy and upload server.
    #[serde(
        default,
        rename = "tlsSecurityProfile",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_security_profile: Option<TlsSecurityProfile>,
    /// Pull secrets for CDI's images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Log verbosity for CDI's components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_verbosity: Option<i32>,
}

/// The settings in effect, as computed by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CdiConfigStatus {
    /// The upload proxy URL clients should use.
    #[serde(
        default,
        rename = "uploadProxyURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub upload_proxy_url: Option<String>,
    /// The CA certificate of the upload proxy.
    #[serde(
        default,
        rename = "uploadProxyCA",
        skip_serializing_if = "Option::is_none"
    )]
    pub upload_proxy_ca: Option<String>,
    /// The proxy settings in effect for importer pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_proxy: Option<ImportProxy>,
    /// The StorageClass used for scratch space ("" means the target's class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch_space_storage_class: Option<String>,
    /// The resources in effect for worker containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pod_resource_requirements: Option<ResourceRequirements>,
    /// The filesystem overheads in effect, globally and per StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem_overhead: Option<FilesystemOverhead>,
    /// The preallocation default in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preallocation: Option<bool>,
    /// The pull secrets in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
}

string_enum! {
    /// Whether the PVC mutating webhook renders labelled claims.
    pub enum WebhookPvcRenderingPolicy: open {
        /// Render claims labelled `cdi.kubevirt.io/applyStorageProfile: "true"`.
        Enabled = "Enabled",
        /// Leave claims alone.
        Disabled = "Disabled",
    }
}

/// Proxy settings for importer pods (`http_proxy`, `https_proxy`, `no_proxy`, extra CA).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImportProxy {
    /// Proxy URL for http requests (`http://user:password@host:port`).
    #[serde(default, rename = "HTTPProxy", skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<String>,
    /// Proxy URL for https requests.
    #[serde(
        default,
        rename = "HTTPSProxy",
        skip_serializing_if = "Option::is_none"
    )]
    pub https_proxy: Option<String>,
    /// Comma-separated hosts and CIDRs to reach without the proxy.
    #[serde(default, rename = "noProxy", skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
    /// Name of a ConfigMap in CDI's namespace with the proxy's CA bundle.
    #[serde(
        default,
        rename = "trustedCAProxy",
        skip_serializing_if = "Option::is_none"
    )]
    pub trusted_ca_proxy: Option<String>,
}

/// Space kept free on Filesystem volumes for filesystem metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesystemOverhead {
    /// The fraction for every StorageClass not listed in `storageClass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<Percent>,
    /// Fractions per StorageClass name, overriding `global`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<BTreeMap<String, Percent>>,
}

/// A fraction written as a string: `"0"`, `"1"`, or `"0."` plus one to three digits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Percent(pub String);

impl Percent {
    /// The pattern upstream's CRD enforces.
    pub const PATTERN: &'static str = r"^(0(?:\.\d{1,3})?|1)$";
}

impl JsonSchema for Percent {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": Self::PATTERN,
        })
    }
}

/// TLS settings, in the shape of OpenShift's `TLSSecurityProfile`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSecurityProfile {
    /// `Old`, `Intermediate`, `Modern` or `Custom`.
    #[serde(rename = "type")]
    pub type_: TlsProfileType,
    /// Set (empty) with `type: Old`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<TlsProfileEmpty>,
    /// Set (empty) with `type: Intermediate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate: Option<TlsProfileEmpty>,
    /// Set (empty) with `type: Modern`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modern: Option<TlsProfileEmpty>,
    /// The ciphers and minimum version with `type: Custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<TlsProfileSpec>,
}

/// A predefined TLS profile; it has no parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsProfileEmpty {}

/// A custom TLS profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsProfileSpec {
    /// Cipher names (OpenSSL or IANA spelling).
    pub ciphers: Vec<String>,
    /// The lowest TLS version accepted.
    #[serde(rename = "minTLSVersion")]
    pub min_tls_version: TlsProtocolVersion,
}

string_enum! {
    /// A predefined TLS profile name.
    #[derive(Default)]
    pub enum TlsProfileType: closed {
        /// For old clients.
        Old = "Old",
        /// The usual choice.
        #[default]
        Intermediate = "Intermediate",
        /// TLS 1.3 only.
        Modern = "Modern",
        /// Ciphers and minimum version given in `custom`.
        Custom = "Custom",
    }
}

string_enum! {
    /// A TLS protocol version, as OpenShift names them.
    #[derive(Default)]
    pub enum TlsProtocolVersion: closed {
        /// TLS 1.0.
        Tls10 = "VersionTLS10",
        /// TLS 1.1.
        Tls11 = "VersionTLS11",
        /// TLS 1.2.
        #[default]
        Tls12 = "VersionTLS12",
        /// TLS 1.3.
        Tls13 = "VersionTLS13",
    }
}
