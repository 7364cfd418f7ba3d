//! DataVolume: a PersistentVolumeClaim plus where its data comes from.
//!
//! ```text
//!  spec.source | spec.sourceRef ──► importer / uploader / cloner pod ──► claim (spec.storage | spec.pvc)
//!                                          │
//!  status.phase, progress, restartCount, conditions ◄── controller
//! ```

use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::cel::ValidationRule;
use crate::common::{Condition, ContentType, DataVolumeCheckpoint};
use crate::source::DataVolumeSource;
use crate::storage::StorageSpec;
use crate::string_enum::string_enum;

/// What a DataVolume should contain and the claim it should be written to.
#[allow(
    clippy::duplicated_attributes,
    reason = "two printcolumn(...) lists both say type_ = \"string\"; they are not duplicates"
)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cdi.kubevirt.io",
    version = "v1beta1",
    kind = "DataVolume",
    plural = "datavolumes",
    namespaced,
    shortname = "dv",
    shortname = "dvs",
    category = "all",
    status = "DataVolumeStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A PersistentVolumeClaim together with the source that fills it: an http, s3, gcs or \
           registry import, an upload, a clone of a claim or snapshot, or a blank disk.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the DataVolume is in its life cycle"
    ),
    printcolumn(
        name = "Progress",
        type_ = "string",
        json_path = ".status.progress",
        description = "Percentage of the transfer done, or N/A"
    ),
    printcolumn(
        name = "Restarts",
        type_ = "integer",
        json_path = ".status.restartCount",
        description = "How many times the transfer pod has restarted"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = DataVolumeSpec::RULES))]
pub struct DataVolumeSpec {
    /// Where the data comes from. Exactly one of `source` and `sourceRef` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DataVolumeSource>,
    /// A DataSource that says where the data comes from, instead of `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<DataVolumeSourceRef>,
    /// A core PersistentVolumeClaimSpec used as written (no defaults, no size overhead).
    /// Exactly one of `pvc` and `storage` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PersistentVolumeClaimSpec>,
    /// The claim wanted, with CDI filling in what is left out (recommended over `pvc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// PriorityClass for the importer, cloner and uploader pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// ServiceAccount for the importer and uploader pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// `kubevirt` (a disk image; the default) or `archive` (a tar unpacked onto the volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<ContentType>,
    /// Stages of a multi-stage (warm) import, for the imageio and vddk sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<Vec<DataVolumeCheckpoint>>,
    /// True when the last entry of `checkpoints` is the final stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_checkpoint: Option<bool>,
    /// Allocate the whole volume up front; overrides the CDIConfig default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preallocation: Option<bool>,
}

impl DataVolumeSpec {
    /// Cross-field checks upstream's DataVolume webhook makes.
    pub const RULES: &'static [ValidationRule] = &[
        ValidationRule {
            rule: "has(self.source) || has(self.sourceRef)",
            message: "no data source: set source (for example source.http.url or source.blank: \
                      {}) or sourceRef (kind: DataSource)",
        },
        ValidationRule {
            rule: "!(has(self.source) && has(self.sourceRef))",
            message: "source and sourceRef are both set: keep one (sourceRef names a DataSource \
                      that already says where the data comes from)",
        },
        ValidationRule {
            rule: "has(self.pvc) || has(self.storage)",
            message: "no claim spec: set storage (for example storage.resources.requests.storage: \
                      10Gi) or pvc",
        },
        ValidationRule {
            rule: "!(has(self.pvc) && has(self.storage))",
            message: "pvc and storage are both set (duplicate storage definition): keep storage \
                      (CDI fills in defaults) or pvc (used as written)",
        },
        ValidationRule {
            rule: "!has(self.contentType) || self.contentType != 'archive' || \
                   !has(self.source) || !(has(self.source.registry) || \
                   has(self.source.imageio) || has(self.source.blank))",
            message: "contentType archive cannot be used with the registry, imageio or blank \
                      sources, which always give a disk image: remove contentType or set it to \
                      kubevirt",
        },
    ];
}

/// An indirect source: a DataSource that names the PVC or snapshot to clone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = DataVolumeSourceRef::RULES))]
pub struct DataVolumeSourceRef {
    /// The kind of the referenced object; only `DataSource` is supported.
    pub kind: String,
    /// Namespace of the DataSource; the DataVolume's own namespace if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the DataSource.
    pub name: String,
}

impl DataVolumeSourceRef {
    /// The only kind CDI resolves.
    pub const DATA_SOURCE_KIND: &'static str = "DataSource";

    /// Only DataSource references are resolved.
    pub const RULES: &'static [ValidationRule] = &[ValidationRule {
        rule: "self.kind == 'DataSource'",
        message: "sourceRef.kind must be DataSource, the only kind CDI resolves; to clone a PVC or \
                  snapshot directly use source.pvc or source.snapshot",
    }];
}

/// What the controller last observed of a DataVolume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeStatus {
    /// Name of the PersistentVolumeClaim that holds the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// Where the DataVolume is in its life cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DataVolumePhase>,
    /// Transfer progress as a percentage with a `%` sign (`"45.32%"`), or `"N/A"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// How many times the pod filling the claim has restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
    /// The Bound, Running and Ready conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<DataVolumeCondition>>,
}

/// The progress value written when the percentage is not known.
pub const PROGRESS_NOT_AVAILABLE: &str = "N/A";

/// A DataVolume condition (`type` is Bound, Running or Ready).
pub type DataVolumeCondition = Condition<DataVolumeConditionType>;

string_enum! {
    /// The condition types a DataVolume carries.
    pub enum DataVolumeConditionType: open {
        /// The claim is bound to a volume.
        Bound = "Bound",
        /// The transfer pod is running.
        Running = "Running",
        /// The data is in place (`phase` is Succeeded).
        Ready = "Ready",
    }
}

string_enum! {
    /// The phase of a DataVolume. Unknown values are kept (newer controllers add phases).
    #[derive(Default)]
    pub enum DataVolumePhase: open {
        /// No phase set yet.
        #[default]
        Unset = "",
        /// Waiting for the claim to be created or bound.
        Pending = "Pending",
        /// The claim is bound; the transfer has not been scheduled.
        PvcBound = "PVCBound",
        /// The importer pod has been created.
        ImportScheduled = "ImportScheduled",
        /// The importer is running.
        ImportInProgress = "ImportInProgress",
        /// A clone has been scheduled.
        CloneScheduled = "CloneScheduled",
        /// A host-assisted clone is running.
        CloneInProgress = "CloneInProgress",
        /// Snapshotting the source for a smart clone.
        SnapshotForSmartCloneInProgress = "SnapshotForSmartCloneInProgress",
        /// Restoring from a snapshot source.
        CloneFromSnapshotSourceInProgress = "CloneFromSnapshotSourceInProgress",
        /// Creating the claim of a smart clone.
        SmartClonePvcInProgress = "SmartClonePVCInProgress",
        /// A CSI volume clone is running.
        CsiCloneInProgress = "CSICloneInProgress",
        /// The claim is being expanded to its requested size.
        ExpansionInProgress = "ExpansionInProgress",
        /// The volume is being moved between namespaces.
        NamespaceTransferInProgress = "NamespaceTransferInProgress",
        /// The upload pod has been created.
        UploadScheduled = "UploadScheduled",
        /// The upload server is ready to receive data.
        UploadReady = "UploadReady",
        /// The claim waits for a consumer pod (WaitForFirstConsumer binding).
        WaitForFirstConsumer = "WaitForFirstConsumer",
        /// Waiting for a populator to start.
        PendingPopulation = "PendingPopulation",
        /// Preparing the claim (populator flow).
        PrepClaimInProgress = "PrepClaimInProgress",
        /// Rebinding the populated volume to the target claim.
        RebindInProgress = "RebindInProgress",
        /// A multi-stage import waits for its next checkpoint.
        Paused = "Paused",
        /// The data is in place.
        Succeeded = "Succeeded",
        /// The transfer failed for good.
        Failed = "Failed",
        /// The controller cannot tell.
        Unknown = "Unknown",
    }
}

/// A DataVolume as embedded in another object (a DataImportCron's `template`): the same fields
/// as [`DataVolume`], but `apiVersion`, `kind` and `metadata` are optional and kept as given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeTemplate {
    /// Usually absent; `cdi.kubevirt.io/v1beta1` if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Usually absent; `DataVolume` if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Labels and annotations for the DataVolumes made from this template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "embedded_metadata_schema")]
    pub metadata: Option<ObjectMeta>,
    /// The DataVolume spec to create.
    pub spec: DataVolumeSpec,
    /// Never set by CDI; present because upstream embeds the whole DataVolume type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DataVolumeStatus>,
}

/// Embedded object metadata: an object whose fields are kept as given (upstream's CRD declares it
/// as a bare `type: object`, which makes the API server drop the labels and annotations in it).
fn embedded_metadata_schema(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_phase_is_kept() {
        let status: DataVolumeStatus =
            serde_json::from_value(serde_json::json!({"phase": "SomeFuturePhase"}))
                .expect("any phase string parses");
        assert_eq!(
            status.phase,
            Some(DataVolumePhase::Other("SomeFuturePhase".into()))
        );
    }

    #[test]
    fn known_phases_map_to_variants() {
        assert_eq!(DataVolumePhase::from("PVCBound"), DataVolumePhase::PvcBound);
        assert_eq!(
            DataVolumePhase::from("CSICloneInProgress"),
            DataVolumePhase::CsiCloneInProgress
        );
        assert_eq!(DataVolumePhase::from(""), DataVolumePhase::Unset);
    }

    #[test]
    fn new_dv_serialises_with_api_version_and_kind() {
        let dv = DataVolume::new("disk", DataVolumeSpec::default());
        let value = serde_json::to_value(&dv).expect("serialises");
        assert_eq!(value["apiVersion"], "cdi.kubevirt.io/v1beta1");
        assert_eq!(value["kind"], "DataVolume");
        assert_eq!(value["spec"], serde_json::json!({}));
    }
}
