//! DataImportCron: polls a source (usually a registry image) on a schedule, imports each new
//! version as a DataVolume, points a DataSource at the newest one and garbage-collects old ones.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cel::ValidationRule;
use crate::common::{Condition, DataImportCronSourceFormat};
use crate::datavolume::DataVolumeTemplate;
use crate::source::DataVolumeSourcePvc;
use crate::string_enum::string_enum;

/// What to import, how often, and what to keep.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cdi.kubevirt.io",
    version = "v1beta1",
    kind = "DataImportCron",
    plural = "dataimportcrons",
    namespaced,
    shortname = "dic",
    shortname = "dics",
    category = "all",
    status = "DataImportCronStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Imports new versions of a disk image on a schedule and keeps a DataSource pointing at \
           the newest one.",
    printcolumn(
        name = "Format",
        type_ = "string",
        json_path = ".status.sourceFormat",
        description = "Whether imports are kept as PVCs or snapshots"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = DataImportCronSpec::RULES))]
pub struct DataImportCronSpec {
    /// The DataVolume to create for each new version; it must use `source` and must not set
    /// `sourceRef`, `contentType`, `checkpoints` or `finalCheckpoint`.
    pub template: DataVolumeTemplate,
    /// When to poll, in standard 5-field cron syntax; "" polls never (imports then happen only
    /// when the digest annotation is set from outside).
    pub schedule: String,
    /// `Outdated` (default): delete imports beyond `importsToKeep`; `Never`: keep them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garbage_collect: Option<DataImportCronGarbageCollect>,
    /// How many imports to keep when garbage-collecting (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imports_to_keep: Option<i32>,
    /// Name of the DataSource (same namespace) this cron keeps pointing at the newest import.
    pub managed_data_source: String,
    /// `All` (default): keep the DataVolumes and DataSource when the cron is deleted; `None`:
    /// delete them with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_policy: Option<DataImportCronRetentionPolicy>,
    /// ServiceAccount used to create the DataVolumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub service_account_name: Option<String>,
}

impl DataImportCronSpec {
    /// The checks upstream's DataImportCron webhook makes that CEL can express (the schedule's
    /// cron syntax is left to the controller).
    pub const RULES: &'static [ValidationRule] = &[
        ValidationRule {
            rule: "!has(self.template.spec.sourceRef) && !has(self.template.spec.contentType) && \
                   (!has(self.template.spec.checkpoints) || \
                   size(self.template.spec.checkpoints) == 0) && \
                   (!has(self.template.spec.finalCheckpoint) || \
                   !self.template.spec.finalCheckpoint)",
            message: "template.spec must not set sourceRef, contentType, checkpoints or \
                      finalCheckpoint: a DataImportCron imports disk images from \
                      template.spec.source",
        },
        ValidationRule {
            rule: "!has(self.importsToKeep) || self.importsToKeep >= 0",
            message: "importsToKeep must be 0 or more",
        },
        ValidationRule {
            rule: "!has(self.garbageCollect) || self.garbageCollect in ['Outdated', 'Never']",
            message: "garbageCollect must be Outdated (delete imports beyond importsToKeep) or \
                      Never",
        },
        ValidationRule {
            rule: "size(self.managedDataSource) > 0 && size(self.managedDataSource) <= 63",
            message: "managedDataSource must name the DataSource to keep current (1 to 63 \
                      characters)",
        },
    ];
}

string_enum! {
    /// Whether old imports are deleted.
    pub enum DataImportCronGarbageCollect: open {
        /// Never delete old imports.
        Never = "Never",
        /// Keep only the newest `importsToKeep` imports.
        Outdated = "Outdated",
    }
}

string_enum! {
    /// What happens to the created objects when the cron is deleted.
    pub enum DataImportCronRetentionPolicy: open {
        /// Delete the DataVolumes and DataSource with the cron.
        RetainNone = "None",
        /// Keep them.
        RetainAll = "All",
    }
}

/// What the cron last did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataImportCronStatus {
    /// The import in progress (at most one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_imports: Option<Vec<ImportStatus>>,
    /// The newest imported claim.
    #[serde(
        default,
        rename = "lastImportedPVC",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_imported_pvc: Option<DataVolumeSourcePvc>,
    /// When the source was last polled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_execution_timestamp: Option<Time>,
    /// When the last import finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_import_timestamp: Option<Time>,
    /// Whether imports are kept as `pvc` or `snapshot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_format: Option<DataImportCronSourceFormat>,
    /// The Progressing and UpToDate conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<DataImportCronCondition>>,
}

/// An import in progress. The field names are capitalised on the wire, as upstream's are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImportStatus {
    /// The DataVolume doing the import.
    #[serde(rename = "DataVolumeName")]
    pub data_volume_name: String,
    /// Digest of the image being imported.
    #[serde(rename = "Digest")]
    pub digest: String,
}

/// A DataImportCron condition (`type` is Progressing or UpToDate).
pub type DataImportCronCondition = Condition<DataImportCronConditionType>;

string_enum! {
    /// The condition types a DataImportCron carries.
    pub enum DataImportCronConditionType: open {
        /// An import is running.
        Progressing = "Progressing",
        /// The newest import matches the newest digest of the source.
        UpToDate = "UpToDate",
    }
}
