//! CDI's private payload, with upstream's JSON field names.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a token allows. Kept as a string on the wire; an operation this version does not know
/// is kept in `Other` so that it is refused as the wrong operation (400), not as a malformed
/// token (401).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Upload into the named claim.
    Upload,
    /// Clone from the named (source) claim into the target in [`params`].
    Clone,
    /// Any other value.
    Other(String),
}

impl Operation {
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Operation::Upload => "Upload",
            Operation::Clone => "Clone",
            Operation::Other(s) => s,
        }
    }
}

impl From<&str> for Operation {
    fn from(s: &str) -> Self {
        match s {
            "Upload" => Operation::Upload,
            "Clone" => Operation::Clone,
            other => Operation::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Operation::from(s.as_str()))
    }
}

/// Kubernetes' `GroupVersionResource` (`metav1`), whose fields are always written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionResource {
    /// API group; `""` for the core group.
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Plural resource name.
    #[serde(default)]
    pub resource: String,
}

impl GroupVersionResource {
    /// Core `v1` `persistentvolumeclaims`: the resource of every upload and clone token.
    pub fn persistent_volume_claims() -> Self {
        GroupVersionResource {
            group: String::new(),
            version: "v1".into(),
            resource: "persistentvolumeclaims".into(),
        }
    }

    /// `snapshot.storage.k8s.io` `v1` `volumesnapshots`: the resource of a clone token whose
    /// source is a VolumeSnapshot.
    pub fn volume_snapshots() -> Self {
        GroupVersionResource {
            group: "snapshot.storage.k8s.io".into(),
            version: "v1".into(),
            resource: "volumesnapshots".into(),
        }
    }
}

/// Keys of [`Payload::params`].
pub mod params {
    /// Clone tokens: namespace of the clone's target.
    pub const TARGET_NAMESPACE: &str = "targetNamespace";
    /// Clone tokens: name of the clone's target.
    pub const TARGET_NAME: &str = "targetName";
}

/// The data a token carries besides the registered claims. As upstream, empty strings and an
/// empty `params` are left out of the JSON; `resource` is always written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// What the token allows.
    #[serde(
        default = "empty_operation",
        skip_serializing_if = "is_empty_operation"
    )]
    pub operation: Operation,
    /// The claim the token is for (for clones: the source claim).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// That claim's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The kind of object `name` is.
    #[serde(default)]
    pub resource: GroupVersionResource,
    /// Extra parameters (clone tokens: [`params::TARGET_NAMESPACE`], [`params::TARGET_NAME`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

fn empty_operation() -> Operation {
    Operation::Other(String::new())
}

fn is_empty_operation(op: &Operation) -> bool {
    op.as_str().is_empty()
}

impl Payload {
    /// The payload of an upload token for claim `name` in `namespace`, as the API server
    /// issues it for an `UploadTokenRequest`.
    pub fn upload(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        Payload {
            operation: Operation::Upload,
            name: name.into(),
            namespace: namespace.into(),
            resource: GroupVersionResource::persistent_volume_claims(),
            params: BTreeMap::new(),
        }
    }

    /// The payload of a clone token: read claim `source_name` in `source_namespace`, to fill
    /// `target_name` in `target_namespace`.
    pub fn clone_claim(
        source_name: impl Into<String>,
        source_namespace: impl Into<String>,
        target_name: impl Into<String>,
        target_namespace: impl Into<String>,
    ) -> Self {
        Payload {
            operation: Operation::Clone,
            name: source_name.into(),
            namespace: source_namespace.into(),
            resource: GroupVersionResource::persistent_volume_claims(),
            params: BTreeMap::from([
                (params::TARGET_NAMESPACE.to_owned(), target_namespace.into()),
                (params::TARGET_NAME.to_owned(), target_name.into()),
            ]),
        }
    }

    /// The payload of the clone token the API server adds to a DataVolume: read `source`, to
    /// fill `target_name` in `target_namespace`. The token names the source and its resource
    /// (claims or snapshots), as upstream's does.
    pub fn clone_source(
        source: &crate::CloneSource,
        target_name: impl Into<String>,
        target_namespace: impl Into<String>,
    ) -> Self {
        let mut payload = Payload::clone_claim(
            source.name.clone(),
            source.namespace.clone(),
            target_name,
            target_namespace,
        );
        payload.resource = source.kind.resource();
        payload
    }

    /// A clone token's target as (namespace, name), when both parameters are present.
    pub fn clone_target(&self) -> Option<(&str, &str)> {
        let namespace = self.params.get(params::TARGET_NAMESPACE)?;
        let name = self.params.get(params::TARGET_NAME)?;
        Some((namespace, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upload_payload_has_upstreams_field_names() {
        let value = serde_json::to_value(Payload::upload("disk", "vms")).expect("serializes");
        assert_eq!(
            value,
            json!({
                "operation": "Upload",
                "name": "disk",
                "namespace": "vms",
                "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
            })
        );
    }

    #[test]
    fn clone_payload_carries_its_target_in_params() {
        let payload = Payload::clone_claim("src", "ns1", "dst", "ns2");
        let value = serde_json::to_value(&payload).expect("serializes");
        assert_eq!(value["operation"], "Clone");
        assert_eq!(
            value["params"],
            json!({"targetNamespace": "ns2", "targetName": "dst"})
        );
        assert_eq!(payload.clone_target(), Some(("ns2", "dst")));
        assert_eq!(Payload::upload("a", "b").clone_target(), None);
    }

    #[test]
    fn unknown_operation_and_missing_fields_are_kept_not_refused() {
        let payload: Payload =
            serde_json::from_value(json!({"operation": "Download"})).expect("deserializes");
        assert_eq!(payload.operation, Operation::Other("Download".into()));
        assert_eq!(payload.name, "");
        assert_eq!(payload.resource, GroupVersionResource::default());

        let payload: Payload = serde_json::from_value(json!({})).expect("deserializes");
        assert_eq!(payload.operation.as_str(), "");
    }
}
