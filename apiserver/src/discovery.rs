//! Discovery documents: what kube-apiserver's aggregator and kubectl read to learn that this
//! server serves `uploadtokenrequests` in `upload.cdi.kubevirt.io/v1beta1`, and what verbs it
//! takes. Pure functions; the router serves them as JSON.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
};

/// The API group served.
pub const GROUP: &str = cdi_crds::upload::UPLOAD_GROUP;
/// Its only version.
pub const VERSION: &str = cdi_crds::upload::UPLOAD_VERSION;
/// The one resource: create-only, nothing is stored.
pub const RESOURCE: &str = "uploadtokenrequests";
/// The resource's kind.
pub const KIND: &str = "UploadTokenRequest";

/// `upload.cdi.kubevirt.io/v1beta1`.
pub fn group_version() -> String {
    format!("{GROUP}/{VERSION}")
}

/// `/apis/upload.cdi.kubevirt.io`.
pub fn group_path() -> String {
    format!("/apis/{GROUP}")
}

/// `/apis/upload.cdi.kubevirt.io/v1beta1`.
pub fn version_path() -> String {
    format!("/apis/{GROUP}/{VERSION}")
}

/// `GET /apis/upload.cdi.kubevirt.io`: the group and its versions.
pub fn api_group() -> APIGroup {
    let version = GroupVersionForDiscovery {
        group_version: group_version(),
        version: VERSION.to_owned(),
    };
    APIGroup {
        name: GROUP.to_owned(),
        preferred_version: Some(version.clone()),
        // Clients anywhere reach us through kube-apiserver; an empty address means "the one
        // you used".
        server_address_by_client_cidrs: Some(vec![ServerAddressByClientCIDR {
            client_cidr: "0.0.0.0/0".to_owned(),
            server_address: String::new(),
        }]),
        versions: vec![version],
    }
}

/// `GET /apis`: the one group this server serves.
pub fn api_group_list() -> APIGroupList {
    APIGroupList {
        groups: vec![api_group()],
    }
}

/// `GET /apis/upload.cdi.kubevirt.io/v1beta1`: `uploadtokenrequests`, namespaced, `create` only.
pub fn api_resource_list() -> APIResourceList {
    APIResourceList {
        group_version: group_version(),
        resources: vec![APIResource {
            name: RESOURCE.to_owned(),
            singular_name: "uploadtokenrequest".to_owned(),
            namespaced: true,
            group: Some(GROUP.to_owned()),
            version: Some(VERSION.to_owned()),
            kind: KIND.to_owned(),
            verbs: vec!["create".to_owned()],
            short_names: Some(vec!["utr".to_owned(), "utrs".to_owned()]),
            ..APIResource::default()
        }],
    }
}

/// `GET /`: the paths this server answers, as kube-apiserver lists its own.
pub fn root_paths() -> serde_json::Value {
    serde_json::json!({
        "paths": ["/apis", group_path(), version_path(), "/healthz", "/livez", "/readyz"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_list_names_a_namespaced_create_only_resource() {
        let body = serde_json::to_value(api_resource_list()).expect("serialises");
        assert_eq!(
            body,
            json!({
                "apiVersion": "v1",
                "kind": "APIResourceList",
                "groupVersion": "upload.cdi.kubevirt.io/v1beta1",
                "resources": [{
                    "name": "uploadtokenrequests",
                    "singularName": "uploadtokenrequest",
                    "namespaced": true,
                    "group": "upload.cdi.kubevirt.io",
                    "version": "v1beta1",
                    "kind": "UploadTokenRequest",
                    "verbs": ["create"],
                    "shortNames": ["utr", "utrs"],
                }],
            })
        );
    }

    #[test]
    fn group_list_prefers_v1beta1() {
        let body = serde_json::to_value(api_group_list()).expect("serialises");
        let version =
            json!({"groupVersion": "upload.cdi.kubevirt.io/v1beta1", "version": "v1beta1"});
        assert_eq!(body["kind"], "APIGroupList");
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(body["groups"][0]["name"], "upload.cdi.kubevirt.io");
        assert_eq!(body["groups"][0]["versions"], json!([version]));
        assert_eq!(body["groups"][0]["preferredVersion"], version);
    }

    #[test]
    fn group_is_an_api_group_object() {
        let body = serde_json::to_value(api_group()).expect("serialises");
        assert_eq!(body["kind"], "APIGroup");
        assert_eq!(body["name"], "upload.cdi.kubevirt.io");
    }
}
