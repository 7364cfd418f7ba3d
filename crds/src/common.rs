//! Small types shared by several CDI resources: content type, conditions, checkpoints, clone
//! strategy, volume modes.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::cel::{VALIDATIONS_KEY, ValidationRule};
use crate::string_enum::{string_enum, string_schema};

string_enum! {
    /// What the imported bytes are (`spec.contentType`). Absent means `kubevirt`.
    pub enum ContentType: custom {
        /// A disk image (raw, qcow2, ... possibly compressed), written as the volume's disk.
        Kubevirt = "kubevirt",
        /// A tar archive, unpacked onto a Filesystem volume.
        Archive = "archive",
    }
}

impl ContentType {
    /// Rules on every `contentType` field. Upstream restricts the DataVolume field with an
    /// OpenAPI `enum`; a rule gives a message that also says what each value means.
    pub const RULES: &'static [ValidationRule] = &[ValidationRule {
        rule: "self in ['kubevirt', 'archive']",
        message: "contentType must be 'kubevirt' (a disk image, the default) or 'archive' (a tar \
                  unpacked onto a Filesystem volume)",
    }];
}

impl JsonSchema for ContentType {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "ContentType".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let mut schema = string_schema(None);
        schema.insert(
            VALIDATIONS_KEY.into(),
            serde_json::to_value(Self::RULES).unwrap_or_default(),
        );
        schema
    }
}

string_enum! {
    /// The status of a condition, as Kubernetes core `ConditionStatus`.
    pub enum ConditionStatus: open {
        /// The condition holds.
        True = "True",
        /// The condition does not hold.
        False = "False",
        /// Not known yet.
        Unknown = "Unknown",
    }
}

/// A condition as CDI writes them: core-style, with a heartbeat time as well as a transition time.
///
/// Upstream has one Go struct per resource (`DataVolumeCondition`, `DataSourceCondition` with an
/// inlined `ConditionState`, ...); they share this wire shape, so one generic type covers them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition<T> {
    /// Which condition this is.
    #[serde(rename = "type")]
    pub type_: T,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// When the controller last confirmed this condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<Time>,
    /// A CamelCase word for why the condition has its current status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A sentence for humans about the current status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One stage of a multi-stage (warm) import: the snapshot copied in this stage and the one
/// copied before it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeCheckpoint {
    /// Identifier of the snapshot copied by the previous stage ("" for the first).
    pub previous: String,
    /// Identifier of the snapshot this stage copies.
    pub current: String,
}

string_enum! {
    /// How CDI copies a volume when cloning.
    pub enum CloneStrategy: open {
        /// Host-assisted: a source pod streams the data to an upload pod.
        Copy = "copy",
        /// Through a VolumeSnapshot of the source.
        Snapshot = "snapshot",
        /// Through the CSI driver's volume cloning.
        CsiClone = "csi-clone",
    }
}

string_enum! {
    /// What a DataImportCron keeps its imported images as.
    pub enum DataImportCronSourceFormat: open {
        /// VolumeSnapshots.
        Snapshot = "snapshot",
        /// PersistentVolumeClaims.
        Pvc = "pvc",
    }
}

string_enum! {
    /// A volume mode, as core `PersistentVolumeMode`, plus CDI's `FromStorageProfile`.
    #[derive(Default)]
    pub enum VolumeMode: open {
        /// A mounted filesystem; the image is the file `disk.img` on it.
        #[default]
        Filesystem = "Filesystem",
        /// A raw block device.
        Block = "Block",
        /// Let CDI choose from the StorageProfile (`storage` API only).
        FromStorageProfile = "FromStorageProfile",
    }
}

/// Schema for a required volume mode that must be Block or Filesystem (StorageProfile claim
/// property sets, where upstream's CRD restricts the values).
pub(crate) fn block_or_filesystem_schema(_: &mut SchemaGenerator) -> Schema {
    string_schema(Some(&["Block", "Filesystem"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_schema_carries_its_rule() {
        let schema = schemars::schema_for!(ContentType);
        let rules = schema.get(VALIDATIONS_KEY).and_then(|v| v.as_array());
        assert_eq!(rules.map(Vec::len), Some(1));
    }

    #[test]
    fn condition_reads_core_style_json() {
        let condition: Condition<String> = serde_json::from_value(serde_json::json!({
            "type": "Ready",
            "status": "True",
            "lastTransitionTime": "2026-01-02T03:04:05Z",
            "reason": "Completed",
        }))
        .expect("valid condition");
        assert_eq!(condition.status, ConditionStatus::True);
        assert_eq!(condition.reason.as_deref(), Some("Completed"));
        assert_eq!(condition.message, None);
    }
}
