//! UploadTokenRequest (`upload.cdi.kubevirt.io/v1beta1`): asks for a short-lived token that
//! authorises one upload to one PVC through the upload proxy.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{NamespaceResourceScope, Resource};
use serde::{Deserialize, Serialize};

/// The API group of [`UploadTokenRequest`].
pub const UPLOAD_GROUP: &str = "upload.cdi.kubevirt.io";
/// The API version of [`UploadTokenRequest`].
pub const UPLOAD_VERSION: &str = "v1beta1";

/// A request for an upload token: `create` one with `spec.pvcName` set, and the response carries
/// `status.token`, to be sent as `Authorization: Bearer <token>` to the upload proxy.
///
/// This is **not a CustomResourceDefinition**: upstream serves the group from its aggregated API
/// server (cdi-apiserver), which answers `create` and stores nothing. So this type has no CRD YAML
/// and no schema; it implements [`kube::Resource`] so that `Api<UploadTokenRequest>` can post it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct UploadTokenRequest {
    /// Name and namespace (the PVC's namespace).
    pub metadata: ObjectMeta,
    /// The PVC the token is for.
    pub spec: UploadTokenRequestSpec,
    /// Filled in by the server.
    #[serde(default)]
    pub status: Option<UploadTokenRequestStatus>,
}

impl UploadTokenRequest {
    /// A request named `name` for the PVC `pvc_name` (in the request's namespace).
    pub fn new(name: &str, pvc_name: &str) -> Self {
        Self {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: UploadTokenRequestSpec {
                pvc_name: pvc_name.to_owned(),
            },
            status: None,
        }
    }
}

/// Which PVC the token authorises uploads to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadTokenRequestSpec {
    /// Name of the PVC, in the request's namespace.
    pub pvc_name: String,
}

/// The issued token. `Debug` prints `<redacted>` instead of the token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadTokenRequestStatus {
    /// The bearer token (a signed JWT). Treat it as a credential: never log it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl fmt::Debug for UploadTokenRequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadTokenRequestStatus")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Serialize for UploadTokenRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The wire form: the fields plus `apiVersion` and `kind`.
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            api_version: &'a str,
            kind: &'a str,
            metadata: &'a ObjectMeta,
            spec: &'a UploadTokenRequestSpec,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<&'a UploadTokenRequestStatus>,
        }
        Wire {
            api_version: "upload.cdi.kubevirt.io/v1beta1",
            kind: "UploadTokenRequest",
            metadata: &self.metadata,
            spec: &self.spec,
            status: self.status.as_ref(),
        }
        .serialize(serializer)
    }
}

impl Resource for UploadTokenRequest {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "UploadTokenRequest".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        UPLOAD_GROUP.into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        UPLOAD_VERSION.into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "uploadtokenrequests".into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_serialises_with_group_version_and_kind() {
        let request = UploadTokenRequest::new("token-for-disk", "disk");
        let value = serde_json::to_value(&request).expect("serialises");
        assert_eq!(
            value,
            serde_json::json!({
                "apiVersion": "upload.cdi.kubevirt.io/v1beta1",
                "kind": "UploadTokenRequest",
                "metadata": {"name": "token-for-disk"},
                "spec": {"pvcName": "disk"},
            })
        );
    }

    #[test]
    fn response_token_is_read() {
        let response: UploadTokenRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "upload.cdi.kubevirt.io/v1beta1",
            "kind": "UploadTokenRequest",
            "metadata": {"name": "t", "namespace": "ns"},
            "spec": {"pvcName": "disk"},
            "status": {"token": "eyJhbGciOi..."},
        }))
        .expect("valid response");
        assert_eq!(
            response.status.and_then(|s| s.token).as_deref(),
            Some("eyJhbGciOi...")
        );
    }

    #[test]
    fn debug_output_redacts_the_token() {
        let status = UploadTokenRequestStatus {
            token: Some("secret-jwt".into()),
        };
        let printed = format!("{status:?}");
        assert!(!printed.contains("secret-jwt"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }

    #[test]
    fn url_path_is_in_the_upload_group() {
        assert_eq!(
            UploadTokenRequest::url_path(&(), Some("ns")),
            "/apis/upload.cdi.kubevirt.io/v1beta1/namespaces/ns/uploadtokenrequests"
        );
    }
}
