//! What reaches the upload server, and what comes back.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use cdi_token::Payload;
use cdi_uploadproxy::MemoryTargets;
use cdi_uploadproxy::readiness::annotations;
use http::{Request, StatusCode};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::common::*;

/// A fake upload server and targets whose claim (`claim`) is ready and served by it.
async fn backend_for(claim: PersistentVolumeClaim) -> (FakeUploadServer, Arc<MemoryTargets>) {
    let backend = FakeUploadServer::start().await;
    let targets = Arc::new(MemoryTargets::new());
    targets.put_claim(claim);
    targets.put_pod(upload_pod(backend.port));
    (backend, targets)
}

#[tokio::test]
async fn streamed_64_mib_upload_reaches_the_upload_server_byte_for_byte_over_mtls() {
    const MIB: usize = 64;
    let proxy = RunningProxy::start().await;
    let backend = FakeUploadServer::start().await;
    proxy.targets.put_claim(ready_claim(&[]));
    proxy.targets.put_pod(upload_pod(backend.port));

    let request = Request::post("/v1beta1/upload-async")
        .header("authorization", bearer(&token()))
        .header("content-type", "application/octet-stream")
        .header("content-length", (MIB << 20).to_string())
        .body(streamed_body(MIB))
        .expect("request");
    let (reply, _) = proxy.send(request).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), format!("uploaded {} bytes", MIB << 20));
    assert_eq!(reply.headers["x-backend"], "fake", "response headers pass");
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    let seen = backend.seen();
    assert_eq!(seen.len(), 1);
    let upload = &seen[0];
    assert_eq!(upload.method, "POST");
    assert_eq!(upload.target, "/v1beta1/upload-async");
    assert_eq!(upload.body_len, (MIB << 20) as u64);
    assert_eq!(upload.body_sha256, streamed_sha256(MIB));
    assert_eq!(upload.headers["content-type"], "application/octet-stream");
    assert_eq!(upload.headers["content-length"], (MIB << 20).to_string());
    assert!(
        upload.headers.get("authorization").is_none(),
        "the token stays in the proxy"
    );
    assert_eq!(
        upload.client_cert,
        pki().client_cert.der,
        "the upload server saw the proxy's client certificate"
    );
}

#[tokio::test]
async fn body_reaches_the_upload_server_before_the_client_has_sent_it_all() {
    let (backend, targets) = backend_for(ready_claim(&[])).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let request = Request::post("/v1beta1/upload")
        .header("authorization", bearer(&token()))
        .body(body)
        .expect("request");
    let reply = tokio::spawn(oneshot(router(targets), request));

    tx.send(Ok(bytes::Bytes::from(vec![7u8; 1 << 20])))
        .await
        .expect("send");
    tokio::time::timeout(std::time::Duration::from_secs(10), backend.first_data())
        .await
        .expect("the first MiB was forwarded while the rest was not yet sent");
    tx.send(Ok(bytes::Bytes::from(vec![8u8; 1 << 20])))
        .await
        .expect("send");
    drop(tx);

    let reply = reply.await.expect("task");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(backend.seen()[0].body_len, 2 << 20);
}

#[tokio::test]
async fn chunked_upload_without_content_length_is_streamed_whole() {
    let (backend, targets) = backend_for(ready_claim(&[])).await;
    let request = Request::post("/v1beta1/upload")
        .header("authorization", bearer(&token()))
        .body(streamed_body(3))
        .expect("request");
    let reply = oneshot(router(targets), request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = backend.seen();
    assert_eq!(seen[0].body_len, 3 << 20);
    assert_eq!(seen[0].body_sha256, streamed_sha256(3));
}

#[tokio::test]
async fn head_on_upload_async_is_forwarded_for_virtctls_async_check() {
    let (backend, targets) = backend_for(ready_claim(&[])).await;
    let request = Request::head("/v1beta1/upload-async")
        .header("authorization", bearer(&token()))
        .body(Body::empty())
        .expect("request");
    let reply = oneshot(router(targets), request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(backend.seen()[0].method, "HEAD");
}

#[tokio::test]
async fn archive_claim_uploads_are_sent_to_upload_archive_of_their_version() {
    let archive = ready_claim(&[(annotations::CONTENT_TYPE, "archive")]);
    let (backend, targets) = backend_for(archive).await;
    for path in [
        "/v1beta1/upload",
        "/v1alpha1/upload-async",
        "/v1beta1/upload-form",
    ] {
        let request = Request::post(path)
            .header("authorization", bearer(&token()))
            .body(Body::from("tar bytes"))
            .expect("request");
        let reply = oneshot(router(Arc::clone(&targets)), request).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }
    let targets: Vec<String> = backend.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        [
            "/v1beta1/upload-archive",
            "/v1alpha1/upload-archive",
            "/v1beta1/upload-archive"
        ]
    );
}

#[tokio::test]
async fn tus_paths_of_an_archive_claim_pass_unchanged() {
    let archive = ready_claim(&[(annotations::CONTENT_TYPE, "archive")]);
    let (backend, targets) = backend_for(archive).await;
    let request = Request::head("/v1beta1/upload-tus/0123abcd")
        .header("authorization", bearer(&token()))
        .header("tus-resumable", "1.0.0")
        .body(Body::empty())
        .expect("request");
    let reply = oneshot(router(targets), request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(backend.seen()[0].target, "/v1beta1/upload-tus/0123abcd");
}

#[tokio::test]
async fn tus_creation_location_is_pointed_at_the_proxy() {
    let (backend, targets) = backend_for(ready_claim(&[])).await;
    let request = Request::post("/v1beta1/upload-tus")
        .header("authorization", bearer(&token()))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "1024")
        .header("upload-metadata", "filename ZGlzay5pbWc=")
        .body(Body::empty())
        .expect("request");
    let reply = oneshot(router(targets), request).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.headers["location"], "/v1beta1/upload-tus/0123abcd");
    let exposed = reply.headers["access-control-expose-headers"]
        .to_str()
        .expect("ascii");
    assert!(
        exposed.contains("Location") && exposed.contains("Upload-Offset"),
        "{exposed}"
    );
    let seen = &backend.seen()[0];
    assert_eq!(seen.headers["upload-length"], "1024");
    assert_eq!(seen.headers["upload-metadata"], "filename ZGlzay5pbWc=");
    assert_eq!(seen.headers["tus-resumable"], "1.0.0");
}

#[tokio::test]
async fn tus_patch_with_query_token_forwards_upload_headers_but_no_token() {
    let (backend, targets) = backend_for(ready_claim(&[])).await;
    let request = Request::patch(format!("/v1beta1/upload-tus/0123abcd?token={}", token()))
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .header("repr-digest", "sha-256=:AAAA:")
        .header("x-cdi-checksum", "sha256:00ff")
        .header("x-cdi-content-type", "kubevirt")
        .header("cookie", "session=secret")
        .body(Body::from("0123456789"))
        .expect("request");
    let reply = oneshot(router(targets), request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = &backend.seen()[0];
    assert_eq!(seen.method, "PATCH");
    assert_eq!(
        seen.target, "/v1beta1/upload-tus/0123abcd",
        "no query, no token"
    );
    assert_eq!(seen.body_len, 10);
    for (name, value) in [
        ("tus-resumable", "1.0.0"),
        ("upload-offset", "0"),
        ("content-type", "application/offset+octet-stream"),
        ("repr-digest", "sha-256=:AAAA:"),
        ("x-cdi-checksum", "sha256:00ff"),
        ("x-cdi-content-type", "kubevirt"),
        ("host", "cdi-upload-disk.vms.svc:8443"),
    ] {
        assert_eq!(seen.headers[name], value, "{name}");
    }
    assert!(seen.headers.get("cookie").is_none());
    assert!(seen.headers.get("authorization").is_none());
}

#[tokio::test]
async fn upload_server_that_is_down_gives_502() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let targets = Arc::new(MemoryTargets::new());
    targets.put_claim(ready_claim(&[]));
    targets.put_pod(upload_pod(closed_port));
    let request = Request::post("/v1beta1/upload")
        .header("authorization", bearer(&token()))
        .body(Body::from("x"))
        .expect("request");
    let reply = oneshot(router(targets), request).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(
        reply.text().starts_with(&format!(
            "error in upload-proxy: connecting to cdi-upload-disk.vms.svc at 127.0.0.1:{closed_port}"
        )),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn upload_server_with_another_claims_certificate_gives_502() {
    // The fake server's certificate is for cdi-upload-disk.vms.svc, not cdi-upload-disk2.
    let backend = FakeUploadServer::start().await;
    let targets = Arc::new(MemoryTargets::new());
    let mut other = ready_claim(&[]);
    other.metadata.name = Some("disk2".into());
    targets.put_claim(other);
    let mut pod = upload_pod(backend.port);
    pod.metadata.name = Some("cdi-upload-disk2".into());
    targets.put_pod(pod);
    let token = token_at(&Payload::upload("disk2", NAMESPACE), SystemTime::now());
    let request = Request::post("/v1beta1/upload")
        .header("authorization", bearer(&token))
        .body(Body::from("x"))
        .expect("request");
    let reply = oneshot(router(targets), request).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert!(
        reply.text().contains("cdi-upload-disk2.vms.svc"),
        "{}",
        reply.text()
    );
    assert!(
        backend.seen().is_empty(),
        "nothing was sent to the wrong server"
    );
}

#[tokio::test]
async fn tokens_for_another_claim_never_reach_this_claims_upload_server() {
    let (backend, targets) = backend_for(ready_claim(&[])).await;
    // Another claim in the same namespace, and the same claim name in another namespace: the
    // token names the target, so neither may reach the upload server of `vms/disk`.
    for (claim, namespace) in [("disk2", NAMESPACE), (CLAIM, "other")] {
        let token = token_at(&Payload::upload(claim, namespace), SystemTime::now());
        for request in [
            Request::post("/v1beta1/upload")
                .header("authorization", bearer(&token))
                .body(Body::from("image bytes")),
            Request::patch("/v1beta1/upload-tus/0123abcd")
                .header("authorization", bearer(&token))
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", "0")
                .header("content-type", "application/offset+octet-stream")
                .body(Body::from("image bytes")),
        ] {
            let reply = oneshot(router(targets.clone()), request.expect("request")).await;
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                reply.text(),
                format!("rejecting Upload Request for PVC {claim} that doesn&#39;t exist"),
            );
        }
    }
    assert!(backend.seen().is_empty(), "{:?}", backend.seen().len());
}
