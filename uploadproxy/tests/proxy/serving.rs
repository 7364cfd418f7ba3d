//! The proxy as a TLS server: health, CORS preflight, tus discovery, plain HTTP, certificate
//! hot reload, the page.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use cdi_uploadproxy::MemoryTargets;
use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "localhost")
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn healthz_and_readyz_answer_ok_over_tls() {
    let proxy = RunningProxy::start().await;
    let (reply, cert) = proxy.send(get("/healthz")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "OK");
    assert_eq!(cert, pki().proxy_cert.der);
    let (reply, _) = proxy.send(get("/readyz")).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn plain_http_is_refused_without_an_http_answer() {
    let proxy = RunningProxy::start().await;
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is closed");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn replaced_serving_certificate_is_used_by_new_connections() {
    let proxy = RunningProxy::start().await;
    let (_, before) = proxy.send(get("/healthz")).await;
    assert_eq!(before, pki().proxy_cert.der);

    let renewed = pki().proxy_ca.server("cdi-uploadproxy", &["localhost"]);
    proxy.replace_serving_cert(&renewed);
    let (reply, after) = proxy.send(get("/healthz")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(after, renewed.der, "the new certificate is served");
}

#[tokio::test]
async fn half_written_serving_certificate_keeps_the_old_one() {
    let proxy = RunningProxy::start().await;
    std::fs::write(
        proxy.dir.path().join("tls.crt"),
        "-----BEGIN CERTIFICATE-----\n",
    )
    .expect("write");
    let (reply, cert) = proxy.send(get("/healthz")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(cert, pki().proxy_cert.der);
}

#[tokio::test]
async fn cors_preflight_is_answered_without_a_token() {
    let request = Request::options("/v1beta1/upload")
        .header("origin", "https://console.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .body(Body::empty())
        .expect("request");
    let reply = oneshot(router(Arc::new(MemoryTargets::new())), request).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    let allowed = reply.headers["access-control-allow-headers"]
        .to_str()
        .expect("ascii");
    for header in [
        "Authorization",
        "Content-Type",
        "Upload-Offset",
        "Tus-Resumable",
    ] {
        assert!(allowed.contains(header), "{header} in {allowed}");
    }
    let methods = reply.headers["access-control-allow-methods"]
        .to_str()
        .expect("ascii");
    assert!(
        methods.contains("PATCH") && methods.contains("POST"),
        "{methods}"
    );
    assert!(reply.headers.get("tus-version").is_none(), "not a tus path");
}

#[tokio::test]
async fn tus_options_is_answered_by_the_proxy_with_the_protocol_headers() {
    for path in ["/v1beta1/upload-tus", "/v1beta1/upload-tus/0123abcd"] {
        let request = Request::options(path).body(Body::empty()).expect("request");
        let reply = oneshot(router(Arc::new(MemoryTargets::new())), request).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{path}");
        assert_eq!(reply.headers["tus-resumable"], "1.0.0");
        assert_eq!(reply.headers["tus-version"], "1.0.0");
        assert_eq!(
            reply.headers["tus-extension"],
            "creation,termination,checksum"
        );
        assert_eq!(reply.headers["tus-checksum-algorithm"], "sha1,sha256,md5");
        assert_eq!(reply.headers["access-control-allow-origin"], "*");
    }
}

#[tokio::test]
async fn refusals_carry_cors_headers_so_browsers_can_read_them() {
    let request = Request::post("/v1beta1/upload")
        .body(Body::empty())
        .expect("request");
    let reply = oneshot(router(Arc::new(MemoryTargets::new())), request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn unknown_paths_are_not_found() {
    let reply = oneshot(
        router(Arc::new(MemoryTargets::new())),
        get("/v1beta1/upload-archive"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn page_is_served_from_the_page_dir_and_absent_without_one() {
    let reply = oneshot(router(Arc::new(MemoryTargets::new())), get("/")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "no --page-dir");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("index.html"), "<h1>upload</h1>").expect("write");
    std::fs::create_dir(dir.path().join("static")).expect("mkdir");
    std::fs::write(dir.path().join("static/app.js"), "run()").expect("write");
    std::fs::write(dir.path().join("secret"), "no").expect("write");
    let page = || {
        cdi_uploadproxy::app(state(
            Arc::new(MemoryTargets::new()),
            Some(dir.path().to_path_buf()),
        ))
    };

    let index = oneshot(page(), get("/")).await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(index.text(), "<h1>upload</h1>");
    assert_eq!(index.headers["content-type"], "text/html; charset=utf-8");
    let policy = index.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(index.headers["referrer-policy"], "no-referrer");
    let script = oneshot(page(), get("/static/app.js")).await;
    assert_eq!(script.status, StatusCode::OK);
    assert_eq!(
        script.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    let missing = oneshot(page(), get("/static/missing.js")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let escape = oneshot(page(), get("/static/../secret")).await;
    assert_eq!(escape.status, StatusCode::NOT_FOUND);
    let escape = oneshot(page(), get("/static/%2e%2e/secret")).await;
    assert_eq!(escape.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tus_js_client_bundles_are_served_from_node_modules_and_nothing_else_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dist = dir.path().join("node_modules/tus-js-client/dist");
    std::fs::create_dir_all(&dist).expect("mkdir");
    std::fs::write(dist.join("tus.min.js"), "var tus={}").expect("write");
    std::fs::write(
        dir.path().join("node_modules/tus-js-client/package.json"),
        "{}",
    )
    .expect("write");
    std::fs::create_dir_all(dir.path().join("node_modules/other")).expect("mkdir");
    std::fs::write(dir.path().join("node_modules/other/index.js"), "no").expect("write");
    let page = || {
        cdi_uploadproxy::app(state(
            Arc::new(MemoryTargets::new()),
            Some(dir.path().to_path_buf()),
        ))
    };

    let bundle = oneshot(page(), get("/vendor/tus-js-client/tus.min.js")).await;
    assert_eq!(bundle.status, StatusCode::OK);
    assert_eq!(bundle.text(), "var tus={}");
    assert_eq!(
        bundle.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(bundle.headers["x-content-type-options"], "nosniff");
    for outside in [
        "/vendor/tus-js-client/../package.json",
        "/vendor/tus-js-client/%2e%2e/package.json",
        "/vendor/tus-js-client/%2e%2e/%2e%2e/other/index.js",
        "/vendor/tus-js-client/missing.js",
        "/vendor/other/index.js",
        "/node_modules/tus-js-client/dist/tus.min.js",
    ] {
        let reply = oneshot(page(), get(outside)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{outside}");
    }
    let no_dir = oneshot(
        router(Arc::new(MemoryTargets::new())),
        get("/vendor/tus-js-client/tus.min.js"),
    )
    .await;
    assert_eq!(no_dir.status, StatusCode::NOT_FOUND, "no --page-dir");
}

#[tokio::test]
async fn the_servers_digest_headers_are_readable_by_browser_scripts() {
    let reply = oneshot(router(Arc::new(MemoryTargets::new())), get("/healthz")).await;
    let exposed = reply.headers["access-control-expose-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    let exposed: Vec<&str> = exposed.split(',').map(str::trim).collect();
    for header in ["repr-digest", "x-cdi-checksum", "upload-offset", "location"] {
        assert!(exposed.contains(&header), "{header} in {exposed:?}");
    }
}
