//! StorageProfile: CDI's per-StorageClass advice (access and volume modes, clone strategy), one
//! per StorageClass with the same name. The controller creates them; admins may override `spec`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cel::ValidationRule;
use crate::common::{CloneStrategy, Condition, DataImportCronSourceFormat, VolumeMode};
use crate::string_enum::string_enum;

/// Admin overrides for one StorageClass.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "cdi.kubevirt.io",
    version = "v1beta1",
    kind = "StorageProfile",
    plural = "storageprofiles",
    status = "StorageProfileStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "How CDI should use one StorageClass (same name): access and volume modes to fill into \
           claims, clone strategy, snapshot class."
)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfileSpec {
    /// How to clone volumes of this class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_strategy: Option<CloneStrategy>,
    /// Access/volume mode combinations to use, best first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub claim_property_sets: Option<Vec<ClaimPropertySet>>,
    /// Whether DataImportCrons keep imports of this class as PVCs or snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_import_cron_source_format: Option<DataImportCronSourceFormat>,
    /// VolumeSnapshotClass for snapshot clones; chosen by provisioner if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_class: Option<String>,
}

/// What the controller computed for the StorageClass (spec overrides applied).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfileStatus {
    /// The StorageClass this profile describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// The class's provisioner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioner: Option<String>,
    /// The clone strategy in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_strategy: Option<CloneStrategy>,
    /// The access/volume mode combinations in effect, best first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub claim_property_sets: Option<Vec<ClaimPropertySet>>,
    /// The DataImportCron source format in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_import_cron_source_format: Option<DataImportCronSourceFormat>,
    /// The VolumeSnapshotClass in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_class: Option<String>,
    /// The Recognized condition (is the provisioner in CDI's capability table?).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<StorageProfileCondition>>,
}

/// One access-mode/volume-mode combination the storage supports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimPropertySet {
    /// Access modes to put on the claim.
    #[schemars(length(max = 4), extend("x-kubernetes-validations" = ClaimPropertySet::ACCESS_MODE_RULES))]
    pub access_modes: Vec<String>,
    /// `Block` or `Filesystem`.
    #[schemars(schema_with = "crate::common::block_or_filesystem_schema")]
    pub volume_mode: VolumeMode,
}

impl ClaimPropertySet {
    /// Each access mode must be one Kubernetes knows.
    pub const ACCESS_MODE_RULES: &'static [ValidationRule] = &[ValidationRule {
        rule: "self.all(m, m in ['ReadWriteOnce', 'ReadOnlyMany', 'ReadWriteMany', \
               'ReadWriteOncePod'])",
        message: "unknown access mode: use ReadWriteOnce, ReadOnlyMany, ReadWriteMany or \
                  ReadWriteOncePod",
    }];
}

/// A StorageProfile condition (`type` is Recognized).
pub type StorageProfileCondition = Condition<StorageProfileConditionType>;

string_enum! {
    /// The condition types a StorageProfile carries.
    pub enum StorageProfileConditionType: open {
        /// CDI knows the provisioner's capabilities.
        Recognized = "Recognized",
    }
}
