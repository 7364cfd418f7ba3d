//! Upstream's DataVolume admission rules as pure functions: cdi-apiserver's validating webhook
//! calls them on CREATE and UPDATE, and the controller can call the same ones on what it reads.
//!
//! ```text
//!  CREATE: validate(dv)           name length, then validate_spec
//!  UPDATE: validate_update(old, new), then validate(new)
//!  validate_spec: claim spec (pvc xor storage) ─► size ─► storage class ─► access modes
//!     ─► external population (dataSource/dataSourceRef) | source xor sourceRef
//!     ─► sourceRef (kind DataSource, name) | one source kind ─► content type ─► clone sources
//! ```
//!
//! The first broken rule is reported, in upstream's order, as a [`SpecError`] whose message
//! says what to change. Several of these rules are also CEL rules in the CRD (see
//! [`crate::cel`]); the webhook repeats them so that the message is the same whichever refuses,
//! and so that the controller can check objects admitted before the rules existed. Not
//! repeated here: the URL and checksum formats of the import sources (CEL only), and the checks
//! that need the API (an existing claim of the same name).

use k8s_openapi::api::core::v1::{
    TypedLocalObjectReference, TypedObjectReference, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::common::ContentType;
use crate::datavolume::{DataVolume, DataVolumeSourceRef, DataVolumeSpec};
use crate::source::DataVolumeSource;

/// The longest DataVolume (and storage class) name: a DNS-1123 subdomain.
pub const MAX_NAME_LENGTH: usize = 253;
/// The smallest size a DataVolume may ask for (KubeVirt refuses smaller disks).
pub const MIN_SIZE_BYTES: u64 = 1 << 20;
/// The access modes a claim may ask for.
pub const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// Which of the two claim specs a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimApi {
    /// `spec.pvc`, used as written.
    Pvc,
    /// `spec.storage`, completed by CDI.
    Storage,
}

impl std::fmt::Display for ClaimApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClaimApi::Pvc => "spec.pvc",
            ClaimApi::Storage => "spec.storage",
        })
    }
}

/// A DataVolume the admission rules refuse: the first broken rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("metadata.name is {0} characters long; at most {MAX_NAME_LENGTH} are allowed")]
    NameTooLong(usize),
    #[error(
        "no claim spec: set spec.storage (for example storage.resources.requests.storage: 10Gi) \
         or spec.pvc"
    )]
    NoClaimSpec,
    #[error(
        "duplicate storage definition: spec.storage and spec.pvc are both set; keep storage \
         (CDI fills in defaults) or pvc (used as written)"
    )]
    DuplicateClaimSpec,
    #[error("{0}.resources.requests.storage must be larger than zero")]
    SizeNotPositive(ClaimApi),
    #[error("{api}.resources.requests.storage is {size}; it must be at least 1Mi")]
    SizeBelowMinimum { api: ClaimApi, size: String },
    #[error("{api}.resources.requests.storage {size:?} is not a quantity (e.g. 10Gi)")]
    SizeNotAQuantity { api: ClaimApi, size: String },
    #[error(
        "{0}.resources.requests.storage is missing; only a clone (source.pvc, source.snapshot \
         or sourceRef) with spec.storage may leave it out, to take the source's size"
    )]
    SizeMissing(ClaimApi),
    #[error(
        "{api}.storageClassName is {len} characters long; at most {MAX_NAME_LENGTH} are allowed"
    )]
    StorageClassNameTooLong { api: ClaimApi, len: usize },
    #[error("spec.pvc.accessModes is empty: give exactly one access mode (e.g. ReadWriteOnce)")]
    NoAccessMode,
    #[error(
        "spec.pvc.accessModes has {0} entries: give exactly one (or use spec.storage, which \
         accepts several)"
    )]
    MultipleAccessModes(usize),
    #[error(
        "{api}.accessModes has {mode:?}; supported values: ReadOnlyMany, ReadWriteMany, \
         ReadWriteOnce, ReadWriteOncePod"
    )]
    UnsupportedAccessMode { api: ClaimApi, mode: String },
    #[error(
        "{0}.dataSource or dataSourceRef makes the claim externally populated, which cannot be \
         combined with spec.source or spec.sourceRef: remove one"
    )]
    ExternalPopulationWithSource(ClaimApi),
    #[error(
        "{0}.dataSource and dataSourceRef are both set but differ; they must name the same object"
    )]
    DataSourceMismatch(ClaimApi),
    #[error("{field} is incomplete: {missing}")]
    IncompleteDataSource { field: String, missing: String },
    #[error(
        "no data source: set spec.source (for example source.http.url or source.blank: {{}}), \
         spec.sourceRef (kind: DataSource), or a claim dataSourceRef"
    )]
    NoSource,
    #[error(
        "spec.source and spec.sourceRef are both set: keep one (sourceRef names a DataSource \
         that already says where the data comes from)"
    )]
    SourceAndSourceRef,
    #[error("spec.sourceRef.kind is missing: set it to DataSource")]
    SourceRefKindMissing,
    #[error(
        "spec.sourceRef.kind is {0:?}; only DataSource is supported (to clone a claim or \
         snapshot directly use source.pvc or source.snapshot)"
    )]
    SourceRefKindUnsupported(String),
    #[error("spec.sourceRef.name is missing: name the DataSource")]
    SourceRefNameMissing,
    #[error(
        "spec.source names no source kind: set one of http, s3, gcs, registry, pvc, upload, \
         blank, imageio, vddk, snapshot"
    )]
    NoSourceKind,
    #[error("spec.source has {} source kinds ({}); set exactly one", .0.len(), .0.join(", "))]
    MultipleSourceKinds(Vec<&'static str>),
    #[error("spec.contentType is {0:?}; it must be kubevirt (a disk image) or archive (a tar)")]
    UnsupportedContentType(String),
    #[error(
        "spec.contentType archive cannot be used with source.{0}, which always gives a disk image"
    )]
    ArchiveFromImageSource(&'static str),
    #[error("spec.source.{kind} needs both namespace and name (missing: {missing})")]
    CloneSourceIncomplete {
        kind: &'static str,
        missing: &'static str,
    },
    #[error(
        "spec cannot be changed after creation (only checkpoints and finalCheckpoint of a \
         multi-stage vddk or imageio import may); delete and recreate the DataVolume instead"
    )]
    SpecChanged,
}

impl SpecError {
    /// The field the error is about, as a JSON path.
    pub fn field(&self) -> String {
        match self {
            SpecError::NameTooLong(_) => "metadata.name".into(),
            SpecError::NoClaimSpec | SpecError::DuplicateClaimSpec => "spec".into(),
            SpecError::SizeNotPositive(api)
            | SpecError::SizeMissing(api)
            | SpecError::SizeBelowMinimum { api, .. }
            | SpecError::SizeNotAQuantity { api, .. } => {
                format!("{api}.resources.requests.storage")
            }
            SpecError::StorageClassNameTooLong { api, .. } => format!("{api}.storageClassName"),
            SpecError::NoAccessMode | SpecError::MultipleAccessModes(_) => {
                "spec.pvc.accessModes".into()
            }
            SpecError::UnsupportedAccessMode { api, .. } => format!("{api}.accessModes"),
            SpecError::ExternalPopulationWithSource(api) | SpecError::DataSourceMismatch(api) => {
                format!("{api}.dataSourceRef")
            }
            SpecError::IncompleteDataSource { field, .. } => field.clone(),
            SpecError::NoSource | SpecError::SourceAndSourceRef => "spec.source".into(),
            SpecError::SourceRefKindMissing | SpecError::SourceRefKindUnsupported(_) => {
                "spec.sourceRef.kind".into()
            }
            SpecError::SourceRefNameMissing => "spec.sourceRef.name".into(),
            SpecError::NoSourceKind | SpecError::MultipleSourceKinds(_) => "spec.source".into(),
            SpecError::UnsupportedContentType(_) | SpecError::ArchiveFromImageSource(_) => {
                "spec.contentType".into()
            }
            SpecError::CloneSourceIncomplete { kind, .. } => format!("spec.source.{kind}"),
            SpecError::SpecChanged => "spec".into(),
        }
    }
}

/// The rules for a DataVolume being created (or, after [`validate_update`], updated).
pub fn validate(dv: &DataVolume) -> Result<(), SpecError> {
    let name_len = dv.metadata.name.as_deref().map_or(0, str::len);
    if name_len > MAX_NAME_LENGTH {
        return Err(SpecError::NameTooLong(name_len));
    }
    validate_spec(&dv.spec)
}

/// The spec rules, in upstream's order; the first broken one is returned.
pub fn validate_spec(spec: &DataVolumeSpec) -> Result<(), SpecError> {
    let claim = ClaimView::of(spec)?;
    check_size(spec, &claim)?;
    if let Some(len) = claim
        .storage_class_name
        .map(str::len)
        .filter(|len| *len > MAX_NAME_LENGTH)
    {
        return Err(SpecError::StorageClassNameTooLong {
            api: claim.api,
            len,
        });
    }
    check_access_modes(&claim)?;
    if claim.data_source.is_some() || claim.data_source_ref.is_some() {
        return check_external_population(spec, &claim);
    }
    match (&spec.source, &spec.source_ref) {
        (None, None) => Err(SpecError::NoSource),
        (Some(_), Some(_)) => Err(SpecError::SourceAndSourceRef),
        (None, Some(source_ref)) => check_source_ref(source_ref),
        (Some(source), None) => check_source(source, spec.content_type.as_ref()),
    }
}

/// On update the spec must stay as it was, except the checkpoints of a multi-stage (vddk or
/// imageio) import.
pub fn validate_update(old: &DataVolumeSpec, new: &DataVolumeSpec) -> Result<(), SpecError> {
    if old == new {
        return Ok(());
    }
    let multi_stage = new.checkpoints.as_ref().is_some_and(|c| !c.is_empty())
        && new
            .source
            .as_ref()
            .is_some_and(|s| s.vddk.is_some() || s.imageio.is_some());
    let without_checkpoints = |spec: &DataVolumeSpec| DataVolumeSpec {
        checkpoints: None,
        final_checkpoint: None,
        ..spec.clone()
    };
    if multi_stage && without_checkpoints(old) == without_checkpoints(new) {
        Ok(())
    } else {
        Err(SpecError::SpecChanged)
    }
}

/// The fields the rules read from whichever claim spec is set.
struct ClaimView<'a> {
    api: ClaimApi,
    size: Option<&'a Quantity>,
    storage_class_name: Option<&'a str>,
    access_modes: &'a [String],
    data_source: Option<&'a TypedLocalObjectReference>,
    data_source_ref: Option<&'a TypedObjectReference>,
}

impl<'a> ClaimView<'a> {
    fn of(spec: &'a DataVolumeSpec) -> Result<ClaimView<'a>, SpecError> {
        match (&spec.pvc, &spec.storage) {
            (None, None) => Err(SpecError::NoClaimSpec),
            (Some(_), Some(_)) => Err(SpecError::DuplicateClaimSpec),
            (Some(pvc), None) => Ok(ClaimView {
                api: ClaimApi::Pvc,
                size: storage_request(pvc.resources.as_ref()),
                storage_class_name: pvc.storage_class_name.as_deref(),
                access_modes: pvc.access_modes.as_deref().unwrap_or_default(),
                data_source: pvc.data_source.as_ref(),
                data_source_ref: pvc.data_source_ref.as_ref(),
            }),
            (None, Some(storage)) => Ok(ClaimView {
                api: ClaimApi::Storage,
                size: storage_request(storage.resources.as_ref()),
                storage_class_name: storage.storage_class_name.as_deref(),
                access_modes: storage.access_modes.as_deref().unwrap_or_default(),
                data_source: storage.data_source.as_ref(),
                data_source_ref: storage.data_source_ref.as_ref(),
            }),
        }
    }
}

/// `requests.storage` of a claim's resources.
fn storage_request(resources: Option<&VolumeResourceRequirements>) -> Option<&Quantity> {
    resources
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
}

/// Whether the DataVolume clones (and so may take its size from the source).
fn is_clone(spec: &DataVolumeSpec) -> bool {
    spec.source_ref.is_some()
        || spec
            .source
            .as_ref()
            .is_some_and(|s| s.pvc.is_some() || s.snapshot.is_some())
}

fn check_size(spec: &DataVolumeSpec, claim: &ClaimView<'_>) -> Result<(), SpecError> {
    let api = claim.api;
    let Some(Quantity(size)) = claim.size else {
        return if api == ClaimApi::Storage && is_clone(spec) {
            Ok(())
        } else {
            Err(SpecError::SizeMissing(api))
        };
    };
    if size.trim_start().starts_with('-') {
        return Err(SpecError::SizeNotPositive(api));
    }
    match cdi_quantity::parse_bytes(size) {
        None => Err(SpecError::SizeNotAQuantity {
            api,
            size: size.clone(),
        }),
        Some(0) => Err(SpecError::SizeNotPositive(api)),
        Some(bytes) if bytes < MIN_SIZE_BYTES => Err(SpecError::SizeBelowMinimum {
            api,
            size: size.clone(),
        }),
        Some(_) => Ok(()),
    }
}

fn check_access_modes(claim: &ClaimView<'_>) -> Result<(), SpecError> {
    if claim.api == ClaimApi::Pvc {
        match claim.access_modes.len() {
            0 => return Err(SpecError::NoAccessMode),
            1 => {}
            n => return Err(SpecError::MultipleAccessModes(n)),
        }
    }
    match claim
        .access_modes
        .iter()
        .find(|m| !ACCESS_MODES.contains(&m.as_str()))
    {
        Some(mode) => Err(SpecError::UnsupportedAccessMode {
            api: claim.api,
            mode: mode.clone(),
        }),
        None => Ok(()),
    }
}

fn check_external_population(
    spec: &DataVolumeSpec,
    claim: &ClaimView<'_>,
) -> Result<(), SpecError> {
    let api = claim.api;
    if spec.source.is_some() || spec.source_ref.is_some() {
        return Err(SpecError::ExternalPopulationWithSource(api));
    }
    if let (Some(source), Some(reference)) = (claim.data_source, claim.data_source_ref) {
        let same = source.api_group == reference.api_group
            && source.kind == reference.kind
            && source.name == reference.name
            && reference.namespace.as_deref().unwrap_or("").is_empty();
        if !same {
            return Err(SpecError::DataSourceMismatch(api));
        }
    }
    if let Some(source) = claim.data_source {
        check_reference(
            format!("{api}.dataSource"),
            &source.api_group,
            &source.kind,
            &source.name,
        )?;
    }
    if let Some(reference) = claim.data_source_ref {
        let field = format!("{api}.dataSourceRef");
        if !reference.namespace.as_deref().unwrap_or("").is_empty() {
            return Err(SpecError::IncompleteDataSource {
                field,
                missing: "namespace is not supported (the object must be in the DataVolume's \
                          namespace)"
                    .into(),
            });
        }
        check_reference(
            field,
            &reference.api_group,
            &reference.kind,
            &reference.name,
        )?;
    }
    Ok(())
}

/// A claim's `dataSource` or `dataSourceRef` names its object fully: name, kind, and an API
/// group unless it is a claim.
fn check_reference(
    field: String,
    api_group: &Option<String>,
    kind: &str,
    name: &str,
) -> Result<(), SpecError> {
    let missing = if name.is_empty() {
        "name is required"
    } else if kind.is_empty() {
        "kind is required"
    } else if api_group.as_deref().unwrap_or("").is_empty() && kind != "PersistentVolumeClaim" {
        "apiGroup is required when kind is not PersistentVolumeClaim"
    } else {
        return Ok(());
    };
    Err(SpecError::IncompleteDataSource {
        field,
        missing: missing.into(),
    })
}

fn check_source_ref(source_ref: &DataVolumeSourceRef) -> Result<(), SpecError> {
    if source_ref.kind.is_empty() {
        return Err(SpecError::SourceRefKindMissing);
    }
    if source_ref.kind != DataVolumeSourceRef::DATA_SOURCE_KIND {
        return Err(SpecError::SourceRefKindUnsupported(source_ref.kind.clone()));
    }
    if source_ref.name.is_empty() {
        return Err(SpecError::SourceRefNameMissing);
    }
    Ok(())
}

/// The source kinds set, by their field names.
fn source_kinds(source: &DataVolumeSource) -> Vec<&'static str> {
    [
        ("http", source.http.is_some()),
        ("s3", source.s3.is_some()),
        ("gcs", source.gcs.is_some()),
        ("registry", source.registry.is_some()),
        ("pvc", source.pvc.is_some()),
        ("upload", source.upload.is_some()),
        ("blank", source.blank.is_some()),
        ("imageio", source.imageio.is_some()),
        ("vddk", source.vddk.is_some()),
        ("snapshot", source.snapshot.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

fn check_source(
    source: &DataVolumeSource,
    content_type: Option<&ContentType>,
) -> Result<(), SpecError> {
    let kinds = source_kinds(source);
    match kinds.len() {
        0 => return Err(SpecError::NoSourceKind),
        1 => {}
        _ => return Err(SpecError::MultipleSourceKinds(kinds)),
    }
    let archive = match content_type {
        None | Some(ContentType::Kubevirt) => false,
        Some(ContentType::Archive) => true,
        Some(other) => return Err(SpecError::UnsupportedContentType(other.as_str().to_owned())),
    };
    if archive {
        for (kind, set) in [
            ("blank", source.blank.is_some()),
            ("registry", source.registry.is_some()),
            ("imageio", source.imageio.is_some()),
        ] {
            if set {
                return Err(SpecError::ArchiveFromImageSource(kind));
            }
        }
    }
    let clone_sources = [
        ("pvc", source.pvc.as_ref().map(|p| (&p.namespace, &p.name))),
        (
            "snapshot",
            source.snapshot.as_ref().map(|s| (&s.namespace, &s.name)),
        ),
    ];
    for (kind, names) in clone_sources {
        let Some((namespace, name)) = names else {
            continue;
        };
        let missing = match (namespace.is_empty(), name.is_empty()) {
            (false, false) => continue,
            (true, true) => "namespace and name",
            (true, false) => "namespace",
            (false, true) => "name",
        };
        return Err(SpecError::CloneSourceIncomplete { kind, missing });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn spec(value: Value) -> DataVolumeSpec {
        serde_json::from_value(value).expect("a DataVolumeSpec")
    }

    fn storage(size: &str) -> Value {
        json!({"resources": {"requests": {"storage": size}}})
    }

    fn pvc_api(size: &str) -> Value {
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}})
    }

    /// Each case: a name, the spec, and the error (or `None` for a valid spec).
    #[test]
    fn spec_rules_in_upstreams_order() {
        let blank = json!({"blank": {}});
        let clone = json!({"pvc": {"namespace": "golden", "name": "fedora"}});
        let cases: Vec<(&str, Value, Option<SpecError>)> = vec![
            ("blank with storage", json!({"source": blank, "storage": storage("1Gi")}), None),
            ("blank with pvc", json!({"source": blank, "pvc": pvc_api("1Gi")}), None),
            (
                "clone with storage and no size",
                json!({"source": clone, "storage": {}}),
                None,
            ),
            (
                "sourceRef with storage and no size",
                json!({"sourceRef": {"kind": "DataSource", "name": "fedora"}, "storage": {}}),
                None,
            ),
            (
                "snapshot clone",
                json!({"source": {"snapshot": {"namespace": "s", "name": "snap"}}, "storage": {}}),
                None,
            ),
            (
                "externally populated",
                json!({"storage": {"resources": {"requests": {"storage": "1Gi"}},
                    "dataSourceRef": {"apiGroup": "cdi.kubevirt.io", "kind": "VolumeImportSource", "name": "x"}}}),
                None,
            ),
            ("no claim spec", json!({"source": blank}), Some(SpecError::NoClaimSpec)),
            (
                "pvc and storage",
                json!({"source": blank, "pvc": pvc_api("1Gi"), "storage": storage("1Gi")}),
                Some(SpecError::DuplicateClaimSpec),
            ),
            (
                "zero size",
                json!({"source": blank, "storage": storage("0")}),
                Some(SpecError::SizeNotPositive(ClaimApi::Storage)),
            ),
            (
                "negative size",
                json!({"source": blank, "pvc": pvc_api("-1Gi")}),
                Some(SpecError::SizeNotPositive(ClaimApi::Pvc)),
            ),
            (
                "size below 1Mi",
                json!({"source": blank, "storage": storage("1023Ki")}),
                Some(SpecError::SizeBelowMinimum { api: ClaimApi::Storage, size: "1023Ki".into() }),
            ),
            (
                "size not a quantity",
                json!({"source": blank, "storage": storage("lots")}),
                Some(SpecError::SizeNotAQuantity { api: ClaimApi::Storage, size: "lots".into() }),
            ),
            (
                "import without size",
                json!({"source": blank, "storage": {}}),
                Some(SpecError::SizeMissing(ClaimApi::Storage)),
            ),
            (
                "clone with pvc api and no size",
                json!({"source": clone, "pvc": {"accessModes": ["ReadWriteOnce"]}}),
                Some(SpecError::SizeMissing(ClaimApi::Pvc)),
            ),
            (
                "storage class name too long",
                json!({"source": blank, "storage": {"resources": {"requests": {"storage": "1Gi"}},
                    "storageClassName": "s".repeat(254)}}),
                Some(SpecError::StorageClassNameTooLong { api: ClaimApi::Storage, len: 254 }),
            ),
            (
                "pvc without access mode",
                json!({"source": blank, "pvc": {"resources": {"requests": {"storage": "1Gi"}}}}),
                Some(SpecError::NoAccessMode),
            ),
            (
                "pvc with two access modes",
                json!({"source": blank, "pvc": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                    "resources": {"requests": {"storage": "1Gi"}}}}),
                Some(SpecError::MultipleAccessModes(2)),
            ),
            (
                "storage with an unknown access mode",
                json!({"source": blank, "storage": {"accessModes": ["ReadWriteOnce", "WriteOnly"],
                    "resources": {"requests": {"storage": "1Gi"}}}}),
                Some(SpecError::UnsupportedAccessMode { api: ClaimApi::Storage, mode: "WriteOnly".into() }),
            ),
            (
                "external population with a source",
                json!({"source": blank, "storage": {"resources": {"requests": {"storage": "1Gi"}},
                    "dataSource": {"kind": "PersistentVolumeClaim", "name": "x"}}}),
                Some(SpecError::ExternalPopulationWithSource(ClaimApi::Storage)),
            ),
            (
                "dataSourceRef in another namespace",
                json!({"storage": {"resources": {"requests": {"storage": "1Gi"}},
                    "dataSourceRef": {"kind": "PersistentVolumeClaim", "name": "x", "namespace": "y"}}}),
                Some(SpecError::IncompleteDataSource {
                    field: "spec.storage.dataSourceRef".into(),
                    missing: "namespace is not supported (the object must be in the DataVolume's namespace)".into(),
                }),
            ),
            (
                "dataSource of a populator kind without apiGroup",
                json!({"storage": {"resources": {"requests": {"storage": "1Gi"}},
                    "dataSource": {"kind": "VolumeImportSource", "name": "x"}}}),
                Some(SpecError::IncompleteDataSource {
                    field: "spec.storage.dataSource".into(),
                    missing: "apiGroup is required when kind is not PersistentVolumeClaim".into(),
                }),
            ),
            ("no source", json!({"storage": storage("1Gi")}), Some(SpecError::NoSource)),
            (
                "source and sourceRef",
                json!({"source": blank, "sourceRef": {"kind": "DataSource", "name": "x"},
                    "storage": storage("1Gi")}),
                Some(SpecError::SourceAndSourceRef),
            ),
            (
                "sourceRef without kind",
                json!({"sourceRef": {"kind": "", "name": "x"}, "storage": {}}),
                Some(SpecError::SourceRefKindMissing),
            ),
            (
                "sourceRef to a PVC",
                json!({"sourceRef": {"kind": "PersistentVolumeClaim", "name": "x"}, "storage": {}}),
                Some(SpecError::SourceRefKindUnsupported("PersistentVolumeClaim".into())),
            ),
            (
                "sourceRef without name",
                json!({"sourceRef": {"kind": "DataSource", "name": ""}, "storage": {}}),
                Some(SpecError::SourceRefNameMissing),
            ),
            (
                "empty source",
                json!({"source": {}, "storage": storage("1Gi")}),
                Some(SpecError::NoSourceKind),
            ),
            (
                "two source kinds",
                json!({"source": {"blank": {}, "upload": {}}, "storage": storage("1Gi")}),
                Some(SpecError::MultipleSourceKinds(vec!["upload", "blank"])),
            ),
            (
                "unknown content type",
                json!({"source": blank, "contentType": "iso", "storage": storage("1Gi")}),
                Some(SpecError::UnsupportedContentType("iso".into())),
            ),
            (
                "blank archive",
                json!({"source": blank, "contentType": "archive", "storage": storage("1Gi")}),
                Some(SpecError::ArchiveFromImageSource("blank")),
            ),
            (
                "pvc source without namespace",
                json!({"source": {"pvc": {"namespace": "", "name": "fedora"}}, "storage": {}}),
                Some(SpecError::CloneSourceIncomplete { kind: "pvc", missing: "namespace" }),
            ),
            (
                "snapshot source without name",
                json!({"source": {"snapshot": {"namespace": "s", "name": ""}}, "storage": {}}),
                Some(SpecError::CloneSourceIncomplete { kind: "snapshot", missing: "name" }),
            ),
        ];
        for (case, value, expected) in cases {
            assert_eq!(validate_spec(&spec(value)).err(), expected, "{case}");
        }
    }

    #[test]
    fn every_refusal_names_its_field_in_its_message_or_field() {
        let err = validate_spec(&spec(
            json!({"source": {"blank": {}}, "storage": storage("1Ki")}),
        ))
        .expect_err("too small");
        assert_eq!(err.field(), "spec.storage.resources.requests.storage");
        assert_eq!(
            err.to_string(),
            "spec.storage.resources.requests.storage is 1Ki; it must be at least 1Mi"
        );
    }

    #[test]
    fn name_longer_than_a_dns_subdomain_is_refused() {
        let mut dv = DataVolume::new(
            &"d".repeat(254),
            spec(json!({"source": {"blank": {}}, "storage": storage("1Gi")})),
        );
        assert_eq!(validate(&dv), Err(SpecError::NameTooLong(254)));
        dv.metadata.name = Some("d".repeat(253));
        assert_eq!(validate(&dv), Ok(()));
    }

    #[test]
    fn spec_is_immutable_except_multi_stage_checkpoints() {
        let blank = spec(json!({"source": {"blank": {}}, "storage": storage("1Gi")}));
        let bigger = spec(json!({"source": {"blank": {}}, "storage": storage("2Gi")}));
        assert_eq!(validate_update(&blank, &blank.clone()), Ok(()));
        assert_eq!(
            validate_update(&blank, &bigger),
            Err(SpecError::SpecChanged)
        );

        let vddk = json!({"url": "https://vc", "uuid": "u", "backingFile": "[ds] vm.vmdk",
            "thumbprint": "t", "secretRef": "s"});
        let stage = |checkpoints: Value, last: bool| {
            spec(json!({"source": {"vddk": vddk}, "storage": storage("1Gi"),
                "checkpoints": checkpoints, "finalCheckpoint": last}))
        };
        let first = stage(json!([{"previous": "", "current": "a"}]), false);
        let second = stage(
            json!([{"previous": "", "current": "a"}, {"previous": "a", "current": "b"}]),
            true,
        );
        assert_eq!(validate_update(&first, &second), Ok(()));

        let mut moved = second.clone();
        if let Some(source) = moved.source.as_mut().and_then(|s| s.vddk.as_mut()) {
            source.url = Some("https://elsewhere".into());
        }
        assert_eq!(validate_update(&first, &moved), Err(SpecError::SpecChanged));
        // Checkpoints of a source that is not multi-stage are spec like any other field.
        let blank_with_checkpoints =
            spec(json!({"source": {"blank": {}}, "storage": storage("1Gi"),
            "checkpoints": [{"previous": "", "current": "a"}]}));
        assert_eq!(
            validate_update(&blank, &blank_with_checkpoints),
            Err(SpecError::SpecChanged)
        );
    }
}
