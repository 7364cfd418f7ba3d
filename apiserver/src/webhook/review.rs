//! AdmissionReview v1 in and out, pure: reading the request kube-apiserver posts (and the
//! DataVolume in it), and building the allowed, patched and refused responses.

use std::collections::BTreeMap;

use cdi_crds::DataVolume;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::{DynamicObject, Status};

/// The request of an AdmissionReview, its object kept as JSON.
pub type Request = AdmissionRequest<DynamicObject>;

/// The only resource these webhooks admit.
pub const DATA_VOLUMES: (&str, &str, &str) = (cdi_crds::GROUP, cdi_crds::VERSION, "datavolumes");

/// Why a review could not be read; answered as a refusal (or, without a uid, a 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not an AdmissionReview: {0}")]
    NotAReview(#[source] serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("this webhook admits datavolumes.cdi.kubevirt.io/v1beta1 only, not {0}")]
    WrongResource(String),
    #[error("the request has no object")]
    NoObject,
    #[error("the {which} is not a DataVolume: {source}")]
    NotADataVolume {
        which: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Reads an AdmissionReview body. On failure, the request's uid is returned with the error
/// when it could be found, so that the refusal can still be matched to the request.
pub fn parse(body: &[u8]) -> Result<Request, (Option<String>, ReviewError)> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| (None, ReviewError::NotAReview(e)))?;
    let uid = value
        .pointer("/request/uid")
        .and_then(|u| u.as_str())
        .map(str::to_owned);
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(value).map_err(|e| (uid.clone(), ReviewError::NotAReview(e)))?;
    let request: Request = review
        .try_into()
        .map_err(|_| (uid.clone(), ReviewError::NoRequest))?;
    let resource = &request.resource;
    if (
        resource.group.as_str(),
        resource.version.as_str(),
        resource.resource.as_str(),
    ) != DATA_VOLUMES
    {
        let found = format!(
            "{}.{}/{}",
            resource.resource, resource.group, resource.version
        );
        return Err((uid, ReviewError::WrongResource(found)));
    }
    Ok(request)
}

/// The DataVolume being admitted (`object`), or the one being replaced (`old_object`).
pub fn data_volume(request: &Request, old: bool) -> Result<DataVolume, ReviewError> {
    let (object, which) = if old {
        (request.old_object.as_ref(), "oldObject")
    } else {
        (request.object.as_ref(), "object")
    };
    let object = object.ok_or(ReviewError::NoObject)?;
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(|source| ReviewError::NotADataVolume { which, source })
}

/// Admitted unchanged.
pub fn allow(request: &Request) -> AdmissionResponse {
    AdmissionResponse::from(request)
}

/// Admitted with `patch` applied.
pub fn allow_with_patch(request: &Request, patch: Patch) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    match response.clone().with_patch(patch) {
        Ok(patched) => patched,
        // A patch of strings always serialises; refuse rather than admit without it.
        Err(e) => refuse(
            request,
            Refusal::internal(format!("building the patch: {e}")),
        ),
    }
}

/// A refusal: the HTTP code and reason kube-apiserver answers the client with, and the message
/// it shows (after `admission webhook "…" denied the request: `).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    /// The requesting user lacks a permission (403).
    pub fn forbidden(message: impl Into<String>) -> Refusal {
        Refusal {
            code: 403,
            reason: "Forbidden",
            message: message.into(),
        }
    }

    /// The object breaks a rule (422, as kube-apiserver's own validation).
    pub fn invalid(message: impl Into<String>) -> Refusal {
        Refusal {
            code: 422,
            reason: "Invalid",
            message: message.into(),
        }
    }

    /// The request cannot be read (400).
    pub fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
        }
    }

    /// Something the object names does not exist (404).
    pub fn not_found(message: impl Into<String>) -> Refusal {
        Refusal {
            code: 404,
            reason: "NotFound",
            message: message.into(),
        }
    }

    /// A failure on our side (500); the object may be fine, a retry may succeed.
    pub fn internal(message: impl Into<String>) -> Refusal {
        Refusal {
            code: 500,
            reason: "InternalError",
            message: message.into(),
        }
    }
}

/// Refused with `refusal`.
pub fn refuse(request: &Request, refusal: Refusal) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request).deny(&refusal.message);
    response.result = Status::failure(&refusal.message, refusal.reason).with_code(refusal.code);
    response
}

/// Refused when the request could not be read; `uid` as found in the body, if at all.
pub fn refuse_unreadable(uid: Option<String>, refusal: Refusal) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid(&refusal.message);
    response.uid = uid.unwrap_or_default();
    response.result = Status::failure(&refusal.message, refusal.reason).with_code(refusal.code);
    response
}

/// The JSON Patch that sets annotation `key` to `value` on an object whose annotations are
/// `annotations`: one `add` of the whole map when the object has none (a pointer into an
/// absent map would fail), else an `add` of the key (which replaces an existing value).
pub fn annotation_patch(
    annotations: Option<&BTreeMap<String, String>>,
    key: &str,
    value: &str,
) -> Patch {
    let operation = match annotations {
        None => AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations"]),
            value: serde_json::json!({ key: value }),
        },
        Some(_) => AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", key]),
            value: serde_json::Value::String(value.to_owned()),
        },
    };
    Patch(vec![PatchOperation::Add(operation)])
}

/// The JSON Patch that removes annotation `key` (which must be present).
pub fn annotation_removal(key: &str) -> Patch {
    Patch(vec![PatchOperation::Remove(RemoveOperation {
        path: PointerBuf::from_tokens(["metadata", "annotations", key]),
    })])
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn review(resource: Value, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "cdi.kubevirt.io", "version": "v1beta1", "kind": "DataVolume"},
                "resource": resource,
                "name": "dv",
                "namespace": "target",
                "operation": "CREATE",
                "userInfo": {"username": "bob", "uid": "b-1", "groups": ["system:authenticated"]},
                "object": object,
                "oldObject": null,
                "dryRun": false,
            }
        }))
        .expect("serialises")
    }

    fn dv_resource() -> Value {
        json!({"group": "cdi.kubevirt.io", "version": "v1beta1", "resource": "datavolumes"})
    }

    fn dv_object() -> Value {
        json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": "dv", "namespace": "target"},
            "spec": {"source": {"pvc": {"namespace": "source", "name": "disk"}}, "storage": {}},
        })
    }

    #[test]
    fn datavolume_review_is_read_with_its_user_and_object() {
        let request = parse(&review(dv_resource(), dv_object())).expect("parses");
        assert_eq!(request.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(request.user_info.username.as_deref(), Some("bob"));
        assert_eq!(request.user_info.uid.as_deref(), Some("b-1"));
        let dv = data_volume(&request, false).expect("a DataVolume");
        let pvc = dv.spec.source.and_then(|s| s.pvc).expect("pvc source");
        assert_eq!(
            (pvc.namespace.as_str(), pvc.name.as_str()),
            ("source", "disk")
        );
        assert!(matches!(
            data_volume(&request, true),
            Err(ReviewError::NoObject)
        ));
    }

    #[test]
    fn review_of_another_resource_is_refused_with_its_uid() {
        let pods = json!({"group": "", "version": "v1", "resource": "pods"});
        let (uid, err) = parse(&review(pods, dv_object())).expect_err("not datavolumes");
        assert_eq!(uid.as_deref(), Some("705ab4f5-6393-11e8-b7cc-42010a800002"));
        assert_eq!(
            err.to_string(),
            "this webhook admits datavolumes.cdi.kubevirt.io/v1beta1 only, not pods./v1"
        );
    }

    #[test]
    fn unreadable_bodies_are_refused_without_or_with_the_uid_found() {
        let (uid, err) = parse(b"{not json").expect_err("not JSON");
        assert_eq!(uid, None);
        assert!(matches!(err, ReviewError::NotAReview(_)), "{err}");

        let (uid, err) = parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#)
            .expect_err("no request");
        assert_eq!(uid, None);
        assert!(matches!(err, ReviewError::NoRequest), "{err}");

        let mut value: Value =
            serde_json::from_slice(&review(dv_resource(), dv_object())).expect("json");
        value["request"]["spec_typo"] = json!(1);
        value["request"]["operation"] = json!("DESTROY");
        let (uid, _) = parse(&serde_json::to_vec(&value).expect("json")).expect_err("bad op");
        assert_eq!(uid.as_deref(), Some("705ab4f5-6393-11e8-b7cc-42010a800002"));
    }

    #[test]
    fn object_that_is_not_a_datavolume_is_an_error_naming_it() {
        let mut object = dv_object();
        object["spec"]["source"] = json!("http://example.com/disk.img");
        let request = parse(&review(dv_resource(), object)).expect("parses");
        let err = data_volume(&request, false).expect_err("bad spec");
        assert!(
            err.to_string()
                .starts_with("the object is not a DataVolume"),
            "{err}"
        );
    }

    #[test]
    fn refusal_carries_code_reason_and_message_and_echoes_the_uid() {
        let request = parse(&review(dv_resource(), dv_object())).expect("parses");
        let response = refuse(&request, Refusal::forbidden("no"));
        let body = serde_json::to_value(response.into_review()).expect("serialises");
        assert_eq!(
            body,
            json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                    "allowed": false,
                    "status": {"status": "Failure", "code": 403, "reason": "Forbidden", "message": "no"},
                },
            })
        );
    }

    #[test]
    fn patched_response_carries_the_json_patch() {
        let request = parse(&review(dv_resource(), dv_object())).expect("parses");
        let patch = annotation_patch(None, "cdi.kubevirt.io/storage.clone.token", "t");
        let response = allow_with_patch(&request, patch);
        let body = serde_json::to_value(response.clone().into_review()).expect("json");
        assert_eq!(body["response"]["allowed"], true);
        assert_eq!(body["response"]["patchType"], "JSONPatch");
        let patch: Value =
            serde_json::from_slice(response.patch.as_deref().expect("a patch")).expect("JSON");
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/metadata/annotations",
                    "value": {"cdi.kubevirt.io/storage.clone.token": "t"}}])
        );
    }

    #[test]
    fn annotation_patch_adds_the_map_when_absent_and_the_key_when_present() {
        let key = "cdi.kubevirt.io/storage.clone.token";
        let mut object = json!({"metadata": {"name": "dv"}});
        json_patch::patch(&mut object, &annotation_patch(None, key, "t1")).expect("applies");
        assert_eq!(object["metadata"]["annotations"], json!({key: "t1"}));

        let existing = BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        let mut object = json!({"metadata": {"annotations": {"a": "b"}}});
        let patch = annotation_patch(Some(&existing), key, "t2");
        assert_eq!(
            serde_json::to_value(&patch).expect("json"),
            json!([{"op": "add", "path": "/metadata/annotations/cdi.kubevirt.io~1storage.clone.token", "value": "t2"}])
        );
        json_patch::patch(&mut object, &patch).expect("applies");
        assert_eq!(
            object["metadata"]["annotations"],
            json!({"a": "b", key: "t2"})
        );

        // An existing token (a user's own) is replaced, not kept.
        let mut object = json!({"metadata": {"annotations": {key: "forged"}}});
        let existing = BTreeMap::from([(key.to_owned(), "forged".to_owned())]);
        json_patch::patch(&mut object, &annotation_patch(Some(&existing), key, "t3"))
            .expect("applies");
        assert_eq!(object["metadata"]["annotations"][key], "t3");

        json_patch::patch(&mut object, &annotation_removal(key)).expect("applies");
        assert_eq!(object["metadata"]["annotations"], json!({}));
    }
}
