//! CDI: the operator's custom resource, one per cluster, describing how CDI is installed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration};
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::common::{CloneStrategy, Condition};
use crate::config::CdiConfigSpec;
use crate::string_enum::{string_enum, string_schema};

/// How CDI is installed and configured.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cdi.kubevirt.io",
    version = "v1beta1",
    kind = "CDI",
    root = "Cdi",
    plural = "cdis",
    shortname = "cdi",
    shortname = "cdis",
    status = "CdiStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "The CDI installation: component placement, replicas, certificates and the \
           configuration copied into CDIConfig.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase")
)]
#[serde(rename_all = "camelCase")]
pub struct CdiSpec {
    /// Pull policy for CDI's images: `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// What uninstalling does when DataVolumes still exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uninstall_strategy: Option<UninstallStrategy>,
    /// Placement and replicas of the control-plane components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra: Option<ComponentConfig>,
    /// Placement of worker pods (importer, uploader, cloner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<NodePlacement>,
    /// Patches and flags applied to the resources the operator deploys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customize_components: Option<CustomizeComponents>,
    /// Clone strategy for every StorageClass, overriding StorageProfiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "clone_strategy_override_schema")]
    pub clone_strategy_override: Option<CloneStrategy>,
    /// Settings copied into the CDIConfig object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<CdiConfigSpec>,
    /// Lifetimes of the certificates the operator issues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_config: Option<CdiCertConfig>,
    /// PriorityClass of the control-plane pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class: Option<String>,
}

/// Upstream restricts the override (but not StorageProfile's field) to the three strategies.
fn clone_strategy_override_schema(_: &mut SchemaGenerator) -> Schema {
    string_schema(Some(CloneStrategy::KNOWN))
}

string_enum! {
    /// A container image pull policy.
    pub enum PullPolicy: closed {
        /// Pull every time.
        Always = "Always",
        /// Pull when the image is missing.
        IfNotPresent = "IfNotPresent",
        /// Never pull.
        Never = "Never",
    }
}

string_enum! {
    /// What uninstalling CDI does with existing workloads.
    pub enum UninstallStrategy: closed {
        /// Delete DataVolumes and the rest.
        RemoveWorkloads = "RemoveWorkloads",
        /// Refuse to uninstall while DataVolumes exist.
        BlockUninstallIfWorkloadsExist = "BlockUninstallIfWorkloadsExist",
    }
}

/// Where pods run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePlacement {
    /// Node labels the pods require.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Affinity rules for the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
}

/// Placement and replica counts of the control-plane components.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentConfig {
    /// Node labels the pods require.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Affinity rules for the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Replicas of the controller deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_replicas: Option<i32>,
    /// Replicas of the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server_replicas: Option<i32>,
    /// Replicas of the upload proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_proxy_replicas: Option<i32>,
}

/// Patches and flags for the operator's resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomizeComponents {
    /// Patches applied to named resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub patches: Option<Vec<CustomizeComponentsPatch>>,
    /// Command-line flags for the components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Flags>,
}

/// One patch to a resource the operator deploys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomizeComponentsPatch {
    /// Name of the resource.
    #[schemars(length(min = 1))]
    pub resource_name: String,
    /// Kind of the resource.
    #[schemars(length(min = 1))]
    pub resource_type: String,
    /// The patch document.
    pub patch: String,
    /// `json`, `merge` or `strategic`.
    #[serde(rename = "type")]
    pub type_: PatchType,
}

string_enum! {
    /// The kind of a patch.
    #[derive(Default)]
    pub enum PatchType: open {
        /// RFC 6902 JSON patch.
        #[default]
        Json = "json",
        /// RFC 7386 merge patch.
        Merge = "merge",
        /// Kubernetes strategic merge patch.
        Strategic = "strategic",
    }
}

/// Flags replacing a component's command-line flags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Flags {
    /// Flags of the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<BTreeMap<String, String>>,
    /// Flags of the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<BTreeMap<String, String>>,
    /// Flags of the upload proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_proxy: Option<BTreeMap<String, String>>,
}

/// Certificate lifetimes for the CA, servers and clients.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CdiCertConfig {
    /// The CA; old CAs stay in the bundle while valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CertConfig>,
    /// Server certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<CertConfig>,
    /// Client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<CertConfig>,
}

/// A certificate's lifetime and renewal margin, as Go durations (`"48h"`, `"90m"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertConfig {
    /// How long an issued certificate is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// How long before expiry a certificate is renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
}

/// The operator's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CdiStatus {
    /// Deploying, Deployed, Upgrading, Deleting, Deleted or Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CdiPhase>,
    /// Available, Progressing, Degraded (and Upgradeable) conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition<String>>>,
    /// The operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_version: Option<String>,
    /// The version being deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// The version deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_version: Option<String>,
}

string_enum! {
    /// The operator's deployment phase.
    pub enum CdiPhase: open {
        /// Not set yet.
        Empty = "",
        /// Installing.
        Deploying = "Deploying",
        /// Installed.
        Deployed = "Deployed",
        /// Uninstalling.
        Deleting = "Deleting",
        /// Uninstalled.
        Deleted = "Deleted",
        /// Something failed.
        Error = "Error",
        /// Moving to a new version.
        Upgrading = "Upgrading",
    }
}
