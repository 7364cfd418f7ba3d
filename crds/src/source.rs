//! Where a DataVolume's (or VolumeImportSource's) data comes from: the source kinds.
//!
//! Go-style structs of `Option`s rather than a Rust enum: the wire shape is
//! `source: {http: {url: ...}}`, and a struct keeps a manifest with zero or several kinds readable
//! (the CEL rules, not the parser, tell the user what is wrong with it).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cel::ValidationRule;
use crate::string_enum::string_enum;

/// The source of a DataVolume: exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = DataVolumeSource::RULES))]
pub struct DataVolumeSource {
    /// Download from an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<DataVolumeSourceHttp>,
    /// Download from an S3-compatible object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<DataVolumeSourceS3>,
    /// Download from Google Cloud Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<DataVolumeSourceGcs>,
    /// Pull a container disk image from a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<DataVolumeSourceRegistry>,
    /// Clone an existing PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<DataVolumeSourcePvc>,
    /// Wait for an upload through the upload proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<DataVolumeSourceUpload>,
    /// Create an empty disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blank: Option<DataVolumeBlankImage>,
    /// Import a disk from oVirt/RHV through ovirt-imageio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imageio: Option<DataVolumeSourceImageIo>,
    /// Import a disk from VMware through VDDK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vddk: Option<DataVolumeSourceVddk>,
    /// Restore from a VolumeSnapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<DataVolumeSourceSnapshot>,
}

impl DataVolumeSource {
    /// Exactly one kind must be set (upstream's webhook: "missing source" / "multiple sources").
    pub const RULES: &'static [ValidationRule] = &[
        ValidationRule {
            rule: "[has(self.http), has(self.s3), has(self.gcs), has(self.registry), \
                   has(self.pvc), has(self.upload), has(self.blank), has(self.imageio), \
                   has(self.vddk), has(self.snapshot)].filter(x, x).size() >= 1",
            message: "no source kind is set: set exactly one of http, s3, gcs, registry, pvc, \
                      snapshot, upload, blank, imageio or vddk",
        },
        ValidationRule {
            rule: "[has(self.http), has(self.s3), has(self.gcs), has(self.registry), \
                   has(self.pvc), has(self.upload), has(self.blank), has(self.imageio), \
                   has(self.vddk), has(self.snapshot)].filter(x, x).size() <= 1",
            message: "more than one source kind is set: keep exactly one of http, s3, gcs, \
                      registry, pvc, snapshot, upload, blank, imageio or vddk",
        },
    ];

    /// The name of the one kind that is set, as on the wire (`"http"`, `"blank"`, ...); `None`
    /// when no kind or several kinds are set.
    pub fn kind(&self) -> Option<&'static str> {
        let set = [
            ("http", self.http.is_some()),
            ("s3", self.s3.is_some()),
            ("gcs", self.gcs.is_some()),
            ("registry", self.registry.is_some()),
            ("pvc", self.pvc.is_some()),
            ("upload", self.upload.is_some()),
            ("blank", self.blank.is_some()),
            ("imageio", self.imageio.is_some()),
            ("vddk", self.vddk.is_some()),
            ("snapshot", self.snapshot.is_some()),
        ];
        let mut kinds = set.iter().filter(|(_, present)| *present);
        match (kinds.next(), kinds.next()) {
            (Some((name, _)), None) => Some(name),
            _ => None,
        }
    }
}

/// The sources a VolumeImportSource (the import populator) accepts: exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = ImportSourceType::RULES))]
pub struct ImportSourceType {
    /// Download from an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<DataVolumeSourceHttp>,
    /// Download from an S3-compatible object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<DataVolumeSourceS3>,
    /// Pull a container disk image from a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<DataVolumeSourceRegistry>,
    /// Download from Google Cloud Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<DataVolumeSourceGcs>,
    /// Create an empty disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blank: Option<DataVolumeBlankImage>,
    /// Import a disk from oVirt/RHV through ovirt-imageio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imageio: Option<DataVolumeSourceImageIo>,
    /// Import a disk from VMware through VDDK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vddk: Option<DataVolumeSourceVddk>,
}

impl ImportSourceType {
    /// Exactly one kind must be set.
    pub const RULES: &'static [ValidationRule] = &[
        ValidationRule {
            rule: "[has(self.http), has(self.s3), has(self.registry), has(self.gcs), \
                   has(self.blank), has(self.imageio), has(self.vddk)].filter(x, x).size() >= 1",
            message: "no source kind is set: set exactly one of http, s3, gcs, registry, blank, \
                      imageio or vddk",
        },
        ValidationRule {
            rule: "[has(self.http), has(self.s3), has(self.registry), has(self.gcs), \
                   has(self.blank), has(self.imageio), has(self.vddk)].filter(x, x).size() <= 1",
            message: "more than one source kind is set: keep exactly one of http, s3, gcs, \
                      registry, blank, imageio or vddk",
        },
    ];
}

/// An http(s) download, with optional basic auth, extra CAs, extra headers and checksum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = DataVolumeSourceHttp::RULES))]
pub struct DataVolumeSourceHttp {
    /// The http:// or https:// URL of the image.
    pub url: String,
    /// Name of a Secret with `accessKeyId` (user name) and `secretKey` (password) for basic auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// Name of a ConfigMap whose files are CA certificates to trust for this URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_config_map: Option<String>,
    /// Extra request headers, each `Name: value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_headers: Option<Vec<String>>,
    /// Names of Secrets, each holding one extra header (for headers that carry credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_extra_headers: Option<Vec<String>>,
    /// Expected digest of the bytes as served: `md5:`, `sha1:`, `sha256:` or `sha512:` then hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub checksum: Option<String>,
    /// Skip TLS certificate verification (for test servers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

impl DataVolumeSourceHttp {
    /// URL present and http(s); checksum well formed.
    pub const RULES: &'static [ValidationRule] = &[
        ValidationRule {
            rule: "size(self.url) > 0",
            message: "url is empty: set it to the http:// or https:// address of the image",
        },
        ValidationRule {
            rule: "size(self.url) == 0 || self.url.startsWith('http://') || \
                   self.url.startsWith('https://') || self.url.startsWith('HTTP://') || \
                   self.url.startsWith('HTTPS://')",
            message: "url must start with http:// or https://; use the s3, gcs or registry \
                      source for other schemes",
        },
        ValidationRule {
            rule: "!has(self.checksum) || self.checksum.matches('^(?i)(md5:[0-9a-f]{32}|\
                   sha1:[0-9a-f]{40}|sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$')",
            message: "checksum must be ALGORITHM:HEX with ALGORITHM md5, sha1, sha256 or sha512 \
                      and HEX the full digest (32, 40, 64 or 128 hex digits), e.g. sha256:<64 hex \
                      digits>",
        },
    ];
}

/// A download from an S3-compatible object store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceS3 {
    /// URL of the object.
    pub url: String,
    /// Name of a Secret with `accessKeyId` and `secretKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// Name of a ConfigMap whose files are CA certificates to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_config_map: Option<String>,
}

/// A download from Google Cloud Storage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceGcs {
    /// `gs://bucket/object` or an http(s) URL of the object.
    pub url: String,
    /// Name of a Secret holding a service-account key; anonymous access without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
}

string_enum! {
    /// How a registry image is pulled.
    pub enum RegistryPullMethod: open {
        /// The importer pod pulls the image itself (the default).
        Pod = "pod",
        /// The kubelet pulls the image as a container image (uses the node's cache).
        Node = "node",
    }
}

/// A container disk image in a registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = DataVolumeSourceRegistry::RULES))]
pub struct DataVolumeSourceRegistry {
    /// `docker://REGISTRY/IMAGE:TAG` or `oci-archive:PATH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Name of an OpenShift ImageStream to import from (needs `pullMethod: node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_stream: Option<String>,
    /// `pod` (default) or `node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_method: Option<RegistryPullMethod>,
    /// Name of a Secret with registry credentials (`accessKeyId`, `secretKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// Name of a ConfigMap whose files are CA certificates for the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_config_map: Option<String>,
    /// Which platform's image to pick from a multi-platform index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformOptions>,
}

impl DataVolumeSourceRegistry {
    /// Exactly one of url and imageStream; imageStream only with the node pull method.
    pub const RULES: &'static [ValidationRule] = &[
        ValidationRule {
            rule: "has(self.url) || has(self.imageStream)",
            message: "neither url nor imageStream is set: set url (docker://... or \
                      oci-archive:...) or imageStream",
        },
        ValidationRule {
            rule: "!(has(self.url) && has(self.imageStream))",
            message: "url and imageStream are both set: keep one of them",
        },
        ValidationRule {
            rule: "!has(self.imageStream) || (has(self.pullMethod) && self.pullMethod == 'node')",
            message: "imageStream needs pullMethod: node (the kubelet resolves image streams)",
        },
    ];
}

/// Runtime requirements used to pick an image from a multi-platform index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformOptions {
    /// CPU architecture, as in OCI image indexes (`amd64`, `arm64`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
}

/// An existing PersistentVolumeClaim to clone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourcePvc {
    /// Namespace of the source claim.
    pub namespace: String,
    /// Name of the source claim.
    pub name: String,
}

/// An existing VolumeSnapshot to restore from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSourceSnapshot {
    /// Namespace of the source snapshot.
    pub namespace: String,
    /// Name of the source snapshot.
    pub name: String,
}

/// An upload source; it has no parameters (the upload goes through the upload proxy).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DataVolumeSourceUpload {}

/// A blank disk; it has no parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DataVolumeBlankImage {}

/// A disk exported by oVirt/RHV through ovirt-imageio.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = DataVolumeSourceImageIo::RULES))]
pub struct DataVolumeSourceImageIo {
    /// URL of the ovirt-engine API.
    pub url: String,
    /// ID of the disk to import.
    #[serde(rename = "diskId")]
    pub disk_id: String,
    /// Name of a Secret with the engine credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// Name of a ConfigMap with the engine's CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_config_map: Option<String>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

impl DataVolumeSourceImageIo {
    /// The engine needs credentials and a way to trust it.
    pub const RULES: &'static [ValidationRule] = &[
        ValidationRule {
            rule: "has(self.secretRef) && size(self.secretRef) > 0",
            message: "secretRef is required: name the Secret with the ovirt-engine credentials",
        },
        ValidationRule {
            rule: "size(self.diskId) > 0",
            message: "diskId is empty: set it to the ID of the disk to import",
        },
        ValidationRule {
            rule: "(has(self.certConfigMap) && size(self.certConfigMap) > 0) || \
                   (has(self.insecureSkipVerify) && self.insecureSkipVerify)",
            message: "set certConfigMap (a ConfigMap with the engine's CA certificate) or \
                      insecureSkipVerify: true",
        },
    ];
}

/// A VMware disk read through VDDK.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = DataVolumeSourceVddk::RULES))]
pub struct DataVolumeSourceVddk {
    /// URL of the vCenter or ESXi host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// UUID of the virtual machine the disk belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Path of the disk file on the datastore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backing_file: Option<String>,
    /// Certificate thumbprint of the vCenter or ESXi host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    /// Name of a Secret with the vCenter/ESXi user name and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// Name of a ConfigMap with CA certificates for the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_config_map: Option<String>,
    /// Image that carries the VDDK library (overrides the cluster-wide setting).
    #[serde(
        default,
        rename = "initImageURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub init_image_url: Option<String>,
    /// Name of a ConfigMap with extra VDDK arguments (key `vddk-config-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_args: Option<String>,
}

impl DataVolumeSourceVddk {
    /// The fields the VDDK importer cannot start without.
    pub const RULES: &'static [ValidationRule] = &[
        ValidationRule {
            rule: "has(self.secretRef) && size(self.secretRef) > 0",
            message: "secretRef is required: name the Secret with the vCenter/ESXi credentials",
        },
        ValidationRule {
            rule: "has(self.uuid) && size(self.uuid) > 0",
            message: "uuid is required: set the UUID of the virtual machine that owns the disk",
        },
        ValidationRule {
            rule: "has(self.backingFile) && size(self.backingFile) > 0",
            message: "backingFile is required: set the datastore path of the disk to import",
        },
        ValidationRule {
            rule: "has(self.thumbprint) && size(self.thumbprint) > 0",
            message: "thumbprint is required: set the certificate thumbprint of the vCenter or \
                      ESXi host",
        },
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_the_single_kind_set() {
        let source = DataVolumeSource {
            blank: Some(DataVolumeBlankImage {}),
            ..Default::default()
        };
        assert_eq!(source.kind(), Some("blank"));
    }

    #[test]
    fn kind_is_none_for_zero_or_several_kinds() {
        assert_eq!(DataVolumeSource::default().kind(), None);
        let two = DataVolumeSource {
            blank: Some(DataVolumeBlankImage {}),
            upload: Some(DataVolumeSourceUpload {}),
            ..Default::default()
        };
        assert_eq!(two.kind(), None);
    }

    #[test]
    fn empty_kinds_serialise_as_empty_objects() {
        let source = DataVolumeSource {
            upload: Some(DataVolumeSourceUpload {}),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&source).ok(),
            Some(serde_json::json!({"upload": {}}))
        );
    }
}
