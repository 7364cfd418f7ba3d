//! The DataVolume webhooks without sockets: AdmissionReviews as kube-apiserver posts them, a
//! stub authorizer (which records the SubjectAccessReviews), issuer and DataSource reader.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use cdi_apiserver::authz::Decision;
use cdi_apiserver::webhook::{self, DataSources, MutateState};
use cdi_crds::DataSource;
use futures_util::future::BoxFuture;
use http::{Method, Request};
use serde_json::{Value, json};
use support::{Answer, StubAuthorizer, StubIssuer};
use tower::ServiceExt;

const TOKEN: &str = "cdi.kubevirt.io/storage.clone.token";

/// DataSources by `namespace/name`; `fail` makes every read fail.
#[derive(Default)]
struct StubDataSources {
    known: BTreeMap<String, DataSource>,
    fail: bool,
}

impl DataSources for StubDataSources {
    fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Option<DataSource>, kube::Error>> {
        let found = self.known.get(&format!("{namespace}/{name}")).cloned();
        let fail = self.fail;
        Box::pin(async move {
            if fail {
                Err(kube::Error::TlsRequired)
            } else {
                Ok(found)
            }
        })
    }
}

fn state(authorizer: Arc<StubAuthorizer>, data_sources: StubDataSources) -> MutateState {
    MutateState {
        issuer: Arc::new(StubIssuer::default()),
        authorizer,
        data_sources: Arc::new(data_sources),
    }
}

fn denying() -> Arc<StubAuthorizer> {
    StubAuthorizer::new(Answer::Decide(Decision::Denied { reason: None }))
}

fn data_volume(spec: Value, annotations: Option<Value>) -> Value {
    let mut dv = json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": {"name": "dv", "namespace": "target"},
        "spec": spec,
    });
    if let Some(annotations) = annotations {
        dv["metadata"]["annotations"] = annotations;
    }
    dv
}

fn clone_from(namespace: &str) -> Value {
    json!({"source": {"pvc": {"namespace": namespace, "name": "disk"}}, "storage": {}})
}

fn review(operation: &str, object: Value, old: Option<Value>) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "cdi.kubevirt.io", "version": "v1beta1", "kind": "DataVolume"},
            "resource": {"group": "cdi.kubevirt.io", "version": "v1beta1", "resource": "datavolumes"},
            "name": "dv",
            "namespace": "target",
            "operation": operation,
            "userInfo": {"username": "bob", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false,
        }
    })
}

/// Posts `body` to `path` and returns the AdmissionReview's `response`.
async fn post(state: MutateState, path: &str, body: &Value) -> Value {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("request");
    let response = webhook::router(state)
        .oneshot(request)
        .await
        .expect("infallible");
    let (status, review) = support::status_and_body(response).await;
    assert_eq!(status, 200, "a review is always answered with 200");
    assert_eq!(review["kind"], "AdmissionReview", "{review}");
    review["response"].clone()
}

/// The mutating webhook's response to creating `object`, with no DataSources.
async fn create(authorizer: Arc<StubAuthorizer>, object: Value) -> Value {
    let body = review("CREATE", object, None);
    post(
        state(authorizer, StubDataSources::default()),
        webhook::MUTATE_PATH,
        &body,
    )
    .await
}

/// The JSON Patch of a response, decoded.
fn patch_of(response: &Value) -> Value {
    let bytes: Vec<u8> = serde_json::from_value(response["patch"].clone()).expect("patch bytes");
    serde_json::from_slice(&bytes).expect("JSON patch")
}

#[tokio::test]
async fn cross_namespace_clone_without_permission_is_refused_after_both_reviews() {
    let authorizer = denying();
    let state = state(authorizer.clone(), StubDataSources::default());
    let body = review("CREATE", data_volume(clone_from("source"), None), None);

    let response = post(state, webhook::MUTATE_PATH, &body).await;

    assert_eq!(response["uid"], "u-1");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    let message = response["status"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("User \"bob\" may not clone PersistentVolumeClaim source/disk"),
        "{message}"
    );
    let asked: Vec<(Option<String>, Option<String>)> = authorizer
        .reviews()
        .iter()
        .map(|r| {
            let a = r.spec.resource_attributes.clone().unwrap_or_default();
            assert_eq!(a.namespace.as_deref(), Some("source"));
            assert_eq!(r.spec.user.as_deref(), Some("bob"));
            (a.resource, a.subresource)
        })
        .collect();
    assert_eq!(
        asked,
        [
            (Some("datavolumes".into()), Some("source".into())),
            (Some("pods".into()), None)
        ]
    );
}

#[tokio::test]
async fn permitted_cross_namespace_clone_gets_the_token_annotation() {
    let authorizer = StubAuthorizer::allowing();
    let state = state(authorizer.clone(), StubDataSources::default());
    let annotations = json!({"owner": "bob"});
    let body = review(
        "CREATE",
        data_volume(clone_from("source"), Some(annotations)),
        None,
    );

    let response = post(state, webhook::MUTATE_PATH, &body).await;

    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["patchType"], "JSONPatch");
    assert_eq!(
        patch_of(&response),
        json!([{"op": "add", "path": "/metadata/annotations/cdi.kubevirt.io~1storage.clone.token",
                "value": "clone:source/disk->target/dv"}])
    );
    assert_eq!(
        authorizer.reviews().len(),
        1,
        "the first allowed review decides"
    );
}

#[tokio::test]
async fn same_namespace_clone_gets_a_token_without_reviews() {
    let authorizer = denying();
    let state = state(authorizer.clone(), StubDataSources::default());
    let body = review("CREATE", data_volume(clone_from("target"), None), None);

    let response = post(state, webhook::MUTATE_PATH, &body).await;

    assert_eq!(response["allowed"], true);
    assert_eq!(
        patch_of(&response),
        json!([{"op": "add", "path": "/metadata/annotations",
                "value": {TOKEN: "clone:target/disk->target/dv"}}])
    );
    assert!(authorizer.reviews().is_empty());
}

#[tokio::test]
async fn import_is_admitted_unchanged_without_reviews() {
    let authorizer = denying();
    let state = state(authorizer.clone(), StubDataSources::default());
    let spec = json!({"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}});
    let body = review("CREATE", data_volume(spec, None), None);

    let response = post(state, webhook::MUTATE_PATH, &body).await;

    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
    assert!(authorizer.reviews().is_empty());
}

#[tokio::test]
async fn token_written_by_the_creator_is_removed_when_none_is_issued() {
    let forged = json!({TOKEN: "a token from elsewhere", "keep": "me"});
    let spec = json!({"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}});
    let response = create(denying(), data_volume(spec, Some(forged.clone()))).await;
    assert_eq!(response["allowed"], true);
    assert_eq!(
        patch_of(&response),
        json!([{"op": "remove", "path": "/metadata/annotations/cdi.kubevirt.io~1storage.clone.token"}])
    );

    // Pre-populated and denied: admitted, but not with the token it brought.
    let mut annotations = forged;
    annotations["cdi.kubevirt.io/storage.prePopulated"] = json!("dv");
    let response = create(
        denying(),
        data_volume(clone_from("source"), Some(annotations)),
    )
    .await;
    assert_eq!(response["allowed"], true);
    assert_eq!(patch_of(&response)[0]["op"], "remove");
}

#[tokio::test]
async fn data_source_reference_is_resolved_to_its_claim() {
    let authorizer = StubAuthorizer::allowing();
    let data_source: DataSource = serde_json::from_value(json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
        "metadata": {"name": "fedora", "namespace": "golden"},
        "spec": {"source": {"pvc": {"namespace": "golden", "name": "fedora-40"}}},
    }))
    .expect("DataSource");
    let sources = StubDataSources {
        known: BTreeMap::from([("golden/fedora".to_owned(), data_source)]),
        fail: false,
    };
    let spec = json!({"sourceRef": {"kind": "DataSource", "namespace": "golden", "name": "fedora"},
                      "storage": {}});
    let body = review("CREATE", data_volume(spec, None), None);

    let response = post(
        state(authorizer.clone(), sources),
        webhook::MUTATE_PATH,
        &body,
    )
    .await;

    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(
        patch_of(&response)[0]["value"][TOKEN],
        "clone:golden/fedora-40->target/dv"
    );
    let review = &authorizer.reviews()[0];
    let attributes = review
        .spec
        .resource_attributes
        .as_ref()
        .expect("attributes");
    assert_eq!(attributes.namespace.as_deref(), Some("golden"));
    assert_eq!(attributes.name.as_deref(), Some("fedora-40"));
}

#[tokio::test]
async fn missing_data_source_is_refused_unless_the_volume_is_pre_populated() {
    let spec = json!({"sourceRef": {"kind": "DataSource", "name": "fedora"}, "storage": {}});

    let response = create(StubAuthorizer::allowing(), data_volume(spec.clone(), None)).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 404);
    assert!(
        response["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("DataSource target/fedora, which does not exist")),
        "{response}"
    );

    let pre_populated = json!({"cdi.kubevirt.io/storage.prePopulated": "dv"});
    let response = create(
        StubAuthorizer::allowing(),
        data_volume(spec, Some(pre_populated)),
    )
    .await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "no token: {response}");
}

#[tokio::test]
async fn pre_populated_volume_is_admitted_without_token_when_denied() {
    let annotations = json!({"cdi.kubevirt.io/storage.checkStaticVolume": "true"});
    let response = create(
        denying(),
        data_volume(clone_from("source"), Some(annotations)),
    )
    .await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
}

#[tokio::test]
async fn failing_review_or_lookup_refuses_with_500() {
    let response = create(
        StubAuthorizer::new(Answer::Fail),
        data_volume(clone_from("source"), None),
    )
    .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 500);

    let spec = json!({"sourceRef": {"kind": "DataSource", "name": "fedora"}, "storage": {}});
    let body = review("CREATE", data_volume(spec, None), None);
    let sources = StubDataSources {
        fail: true,
        ..StubDataSources::default()
    };
    let response = post(
        state(StubAuthorizer::allowing(), sources),
        webhook::MUTATE_PATH,
        &body,
    )
    .await;
    assert_eq!(response["status"]["code"], 500);
}

#[tokio::test]
async fn update_is_not_mutated() {
    let dv = data_volume(clone_from("source"), None);
    let body = review("UPDATE", dv.clone(), Some(dv));
    let authorizer = denying();
    let response = post(
        state(authorizer.clone(), StubDataSources::default()),
        webhook::MUTATE_PATH,
        &body,
    )
    .await;
    assert_eq!(response["allowed"], true);
    assert!(authorizer.reviews().is_empty());
}

#[tokio::test]
async fn validating_webhook_refuses_an_invalid_spec_and_a_changed_one() {
    let state = || state(denying(), StubDataSources::default());
    let sized = |size: &str| json!({"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": size}}}});

    let body = review("CREATE", data_volume(sized("1Gi"), None), None);
    let response = post(state(), webhook::VALIDATE_PATH, &body).await;
    assert_eq!(response["allowed"], true, "{response}");

    let body = review("CREATE", data_volume(sized("512Ki"), None), None);
    let response = post(state(), webhook::VALIDATE_PATH, &body).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    assert_eq!(
        response["status"]["message"],
        "spec.storage.resources.requests.storage is 512Ki; it must be at least 1Mi"
    );

    let body = review(
        "UPDATE",
        data_volume(sized("2Gi"), None),
        Some(data_volume(sized("1Gi"), None)),
    );
    let response = post(state(), webhook::VALIDATE_PATH, &body).await;
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("spec cannot be changed after creation")),
        "{response}"
    );

    // A label change of a DataVolume admitted under older rules is still allowed.
    let mut relabelled = data_volume(sized("512Ki"), None);
    relabelled["metadata"]["labels"] = json!({"app": "x"});
    let body = review(
        "UPDATE",
        relabelled,
        Some(data_volume(sized("512Ki"), None)),
    );
    let response = post(state(), webhook::VALIDATE_PATH, &body).await;
    assert_eq!(response["allowed"], true, "{response}");
}

#[tokio::test]
async fn review_of_another_resource_or_garbage_is_refused_in_a_review() {
    let mut body = review("CREATE", data_volume(clone_from("source"), None), None);
    body["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "pods"});
    let response = post(
        state(StubAuthorizer::allowing(), StubDataSources::default()),
        webhook::MUTATE_PATH,
        &body,
    )
    .await;
    assert_eq!(response["uid"], "u-1");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);

    let response = post(
        state(StubAuthorizer::allowing(), StubDataSources::default()),
        webhook::VALIDATE_PATH,
        &json!({"hello": "world"}),
    )
    .await;
    assert_eq!(response["allowed"], false);
}
