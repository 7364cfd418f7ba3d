//! Which requests get past the token check, and the status of those that do not.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use cdi_token::{GroupVersionResource, Issuer, Payload};
use cdi_uploadproxy::MemoryTargets;
use http::{Request, StatusCode};

use crate::common::*;

fn post(path: &str, authorization: Option<&str>) -> Request<Body> {
    let mut builder = Request::post(path);
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    builder.body(Body::empty()).expect("request")
}

/// A router with no claims: a request that passes the token check gets 503 ("doesn't exist").
fn no_claims() -> axum::Router {
    router(Arc::new(MemoryTargets::new()))
}

#[tokio::test]
async fn missing_authorization_header_is_refused_with_400() {
    for path in cdi_uploadproxy::routes::UPLOAD_PATHS {
        let reply = oneshot(no_claims(), post(path, None)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
    }
}

#[tokio::test]
async fn malformed_authorization_header_is_refused_with_400() {
    let token = token();
    for value in [
        format!("Basic {token}"),
        format!("Bearer{token}"),
        format!("Bearer {token} extra"),
        "Bearer ".to_owned(),
        "Bearer a=b".to_owned(),
    ] {
        let reply = oneshot(no_claims(), post("/v1beta1/upload", Some(&value))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{value:?}");
    }
}

#[tokio::test]
async fn bearer_scheme_in_any_case_is_accepted() {
    let value = format!("bEaReR   {}", token());
    let reply = oneshot(no_claims(), post("/v1beta1/upload", Some(&value))).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn forged_token_is_refused_with_401() {
    let forged = Issuer::from_rsa_pem(pki().other_token_private.as_bytes())
        .expect("key")
        .issue_upload(CLAIM, NAMESPACE, SystemTime::now())
        .expect("token");
    let reply = oneshot(no_claims(), post("/v1beta1/upload", Some(&bearer(&forged)))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn garbage_token_is_refused_with_401() {
    let reply = oneshot(
        no_claims(),
        post("/v1beta1/upload", Some("Bearer abc.def.ghi")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn expired_token_is_refused_with_401() {
    let six_minutes_ago = SystemTime::now() - Duration::from_secs(360);
    let expired = token_at(&Payload::upload(CLAIM, NAMESPACE), six_minutes_ago);
    let reply = oneshot(
        no_claims(),
        post("/v1beta1/upload", Some(&bearer(&expired))),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.text().contains("expired"), "{}", reply.text());
}

#[tokio::test]
async fn not_yet_valid_token_is_refused_with_401() {
    let in_a_minute = SystemTime::now() + Duration::from_secs(60);
    let early = token_at(&Payload::upload(CLAIM, NAMESPACE), in_a_minute);
    let reply = oneshot(no_claims(), post("/v1beta1/upload", Some(&bearer(&early)))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn clone_token_is_refused_with_400() {
    let clone = token_at(
        &Payload::clone_claim(CLAIM, NAMESPACE, "target", NAMESPACE),
        SystemTime::now(),
    );
    let reply = oneshot(no_claims(), post("/v1beta1/upload", Some(&bearer(&clone)))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn token_for_another_resource_is_refused_with_400() {
    let mut payload = Payload::upload(CLAIM, NAMESPACE);
    payload.resource = GroupVersionResource {
        group: String::new(),
        version: "v1".into(),
        resource: "pods".into(),
    };
    let reply = oneshot(
        no_claims(),
        post(
            "/v1beta1/upload",
            Some(&bearer(&token_at(&payload, SystemTime::now()))),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn token_without_claim_name_is_refused_with_400() {
    let nameless = token_at(&Payload::upload("", NAMESPACE), SystemTime::now());
    let reply = oneshot(
        no_claims(),
        post("/v1beta1/upload", Some(&bearer(&nameless))),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn query_token_is_accepted_on_tus_paths_only() {
    let query = format!("?token={}", token());
    for path in ["/v1beta1/upload-tus", "/v1beta1/upload-tus/abc"] {
        let reply = oneshot(no_claims(), post(&format!("{path}{query}"), None)).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: past the token check: {}",
            reply.text()
        );
    }
    let reply = oneshot(no_claims(), post(&format!("/v1beta1/upload{query}"), None)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tus_request_without_any_token_is_refused_with_400() {
    let reply = oneshot(no_claims(), post("/v1beta1/upload-tus", None)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}
