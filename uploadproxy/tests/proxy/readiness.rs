//! 503 answers while a claim cannot take an upload, and the wait for one that becomes ready.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use cdi_uploadproxy::MemoryTargets;
use cdi_uploadproxy::readiness::annotations;
use http::{Request, StatusCode};

use crate::common::*;

fn upload_request() -> Request<Body> {
    Request::post("/v1beta1/upload")
        .header("authorization", bearer(&token()))
        .body(Body::empty())
        .expect("request")
}

async fn reply_with(claim: Option<k8s_openapi::api::core::v1::PersistentVolumeClaim>) -> Reply {
    let targets = Arc::new(MemoryTargets::new());
    if let Some(claim) = claim {
        targets.put_claim(claim);
    }
    oneshot(router(targets), upload_request()).await
}

#[tokio::test]
async fn missing_claim_is_refused_with_503() {
    let reply = reply_with(None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.text(),
        "rejecting Upload Request for PVC disk that doesn&#39;t exist"
    );
}

#[tokio::test]
async fn claim_that_is_not_an_upload_target_is_refused_with_503() {
    let mut plain = ready_claim(&[]);
    if let Some(a) = plain.metadata.annotations.as_mut() {
        a.remove(annotations::UPLOAD_TARGET);
    }
    let reply = reply_with(Some(plain)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.text(), "PVC disk is not an upload target");
}

#[tokio::test]
async fn finished_claim_is_refused_with_503() {
    let done = ready_claim(&[(annotations::POD_PHASE, "Succeeded")]);
    let reply = reply_with(Some(done)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.text(),
        "rejecting Upload Request for PVC disk that already finished uploading"
    );
}

#[tokio::test]
async fn claim_whose_pod_never_gets_ready_is_refused_with_503_after_the_wait() {
    let started = std::time::Instant::now();
    let reply = reply_with(Some(claim(&[(annotations::POD_READY, "false")]))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.text().contains("did not become ready"),
        "{}",
        reply.text()
    );
    assert!(started.elapsed() >= Duration::from_millis(250), "it waited");
}

#[tokio::test]
async fn unknown_content_type_is_refused_with_503() {
    let reply = reply_with(Some(ready_claim(&[(annotations::CONTENT_TYPE, "iso")]))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.text().contains("upload content-type iso is invalid"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn ready_claim_without_upload_pod_fails_with_502() {
    let reply = reply_with(Some(ready_claim(&[]))).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        reply.text(),
        "error in upload-proxy: upload pod cdi-upload-disk does not exist"
    );
}

#[tokio::test]
async fn claim_that_becomes_ready_while_polled_is_forwarded() {
    let backend = FakeUploadServer::start().await;
    let targets = Arc::new(MemoryTargets::new());
    targets.put_claim(claim(&[]));
    targets.put_pod(upload_pod(backend.port));
    let later = Arc::clone(&targets);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(120)).await;
        later.put_claim(ready_claim(&[]));
    });
    let reply = oneshot(router(targets), upload_request()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(backend.seen().len(), 1);
}

#[tokio::test]
async fn claim_names_in_messages_are_html_escaped() {
    // A claim name cannot hold these characters, but a token can name anything.
    let payload = cdi_token::Payload::upload("<b>", NAMESPACE);
    let request = Request::post("/v1beta1/upload")
        .header(
            "authorization",
            bearer(&token_at(&payload, std::time::SystemTime::now())),
        )
        .body(Body::empty())
        .expect("request");
    let reply = oneshot(router(Arc::new(MemoryTargets::new())), request).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.text().contains("PVC &lt;b&gt; that"),
        "{}",
        reply.text()
    );
    assert_eq!(reply.headers["x-content-type-options"], "nosniff");
}
