//! DataSource: a named pointer to a PVC, a VolumeSnapshot or another DataSource, used by
//! DataVolumes through `sourceRef` (typically a "golden image" kept current by a DataImportCron).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;
use crate::source::{DataVolumeSourcePvc, DataVolumeSourceSnapshot};
use crate::string_enum::string_enum;

/// What a DataSource points at.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "cdi.kubevirt.io",
    version = "v1beta1",
    kind = "DataSource",
    plural = "datasources",
    namespaced,
    shortname = "das",
    category = "all",
    status = "DataSourceStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A named reference to the data a DataVolume can clone: a PVC, a VolumeSnapshot or \
           another DataSource (one level deep)."
)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceSpec {
    /// The object this DataSource points at.
    pub source: DataSourceSource,
}

/// One of a PVC, a snapshot or another DataSource (empty while nothing has been imported yet).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceSource {
    /// A PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<DataVolumeSourcePvc>,
    /// A VolumeSnapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<DataVolumeSourceSnapshot>,
    /// Another DataSource, which must itself point at a PVC or snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source: Option<DataSourceRefSourceDataSource>,
}

/// A reference from one DataSource to another.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceRefSourceDataSource {
    /// Namespace of the referenced DataSource.
    pub namespace: String,
    /// Name of the referenced DataSource.
    pub name: String,
}

/// What the controller resolved a DataSource to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceStatus {
    /// The PVC or snapshot the DataSource resolves to; cleared while it is not Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DataSourceSource>,
    /// The Ready condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<DataSourceCondition>>,
}

/// A DataSource condition (`type` is Ready).
pub type DataSourceCondition = Condition<DataSourceConditionType>;

string_enum! {
    /// The condition types a DataSource carries.
    pub enum DataSourceConditionType: open {
        /// The source exists and can be cloned.
        Ready = "Ready",
    }
}
