//! Hostile and slow clients of the proxy over TLS: oversized headers, clients that never send
//! a request or send it byte by byte, bodies that stop, and a slow but steady upload that the
//! timeouts must let through.

use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use cdi_testdata::rawtls::{paced, read_until_closed, trickle};
use cdi_uploadproxy::{ForwardTimeouts, ServeLimits};
use http::{Request, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::common::*;

/// A proxy whose timeouts are a second: handshake, headers, idle connection, idle body.
async fn fast_proxy() -> RunningProxy {
    RunningProxy::start_with(
        ServeLimits {
            tls_handshake: Duration::from_secs(1),
            header_read: Duration::from_secs(1),
            shutdown_grace: Duration::from_millis(100),
            ..ServeLimits::default()
        },
        ForwardTimeouts {
            connect: Duration::from_secs(5),
            idle: Duration::from_secs(1),
            ..ForwardTimeouts::default()
        },
    )
    .await
}

fn healthz() -> Request<Body> {
    Request::get("/healthz")
        .header("host", "localhost")
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn request_headers_over_the_limit_get_431_and_are_not_buffered() {
    let proxy = RunningProxy::start().await;
    let one_huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 << 10)
    );
    let answer = proxy.raw().request(one_huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-Header-{i}: value\r\n"));
    }
    many.push_str("\r\n");
    let answer = proxy.raw().request(many.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // A 64 MiB header line: the proxy stops reading long before its end.
    let mut tls = proxy.raw_tls().await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Endless: ")
        .await
        .expect("write");
    let line = vec![b'a'; 1 << 20];
    let mut sent = 0usize;
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_secs(5), tls.write_all(&line)).await {
            Ok(Ok(())) => sent += line.len(),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    assert!(sent < 16 << 20, "the proxy took {sent} bytes of one header");

    let (reply, _) = proxy.send(healthz()).await;
    assert_eq!(reply.status, StatusCode::OK, "the proxy still serves");
}

#[tokio::test]
async fn clients_that_never_finish_tls_or_never_send_a_request_are_disconnected() {
    let proxy = fast_proxy().await;
    proxy
        .raw()
        .assert_silent_clients_are_disconnected(Duration::from_millis(900), Duration::from_secs(4))
        .await;
}

#[tokio::test]
async fn headers_sent_byte_by_byte_are_cut_at_the_header_timeout() {
    let proxy = fast_proxy().await;
    let mut tls = proxy.raw_tls().await;
    let request = format!(
        "POST /v1beta1/upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Length: 10\r\n\r\n",
        bearer(&token())
    );
    let started = Instant::now();
    let cut = trickle(
        &mut tls,
        request.as_bytes(),
        Duration::from_millis(100),
        Duration::from_secs(3),
    )
    .await;
    if !cut {
        read_until_closed(&mut tls, Duration::from_secs(2)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn upload_body_that_stops_is_cut_at_the_idle_timeout_with_502() {
    let proxy = fast_proxy().await;
    let backend = FakeUploadServer::start().await;
    proxy.targets.put_claim(ready_claim(&[]));
    proxy.targets.put_pod(upload_pod(backend.port));
    let mut tls = proxy.raw_tls().await;
    let head = format!(
        "POST /v1beta1/upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        bearer(&token()),
        2 << 20
    );
    tls.write_all(head.as_bytes()).await.expect("head");
    tls.write_all(&vec![7u8; 1 << 20]).await.expect("first MiB");
    tls.flush().await.expect("flush");
    let started = Instant::now();
    let answer = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(
        answer.contains("the client sent no data for 1s"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    // The upload server notices the broken-off body on its own time.
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.seen().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].body_len < 2 << 20,
        "the upload server saw the body break off"
    );
}

#[tokio::test]
async fn slow_but_steady_upload_is_not_cut_by_the_timeouts() {
    let proxy = fast_proxy().await;
    let backend = FakeUploadServer::start().await;
    proxy.targets.put_claim(ready_claim(&[]));
    proxy.targets.put_pod(upload_pod(backend.port));
    // 12 pieces 400 ms apart: 4.8 s in all, longer than every timeout, never idle for 1 s.
    let pieces: Vec<Bytes> = (0..12u8).map(|i| Bytes::from(vec![i; 100_000])).collect();
    let sha = hex::encode(Sha256::digest(pieces.concat()));
    let stream = paced(pieces, Duration::from_millis(400));
    let request = Request::post("/v1beta1/upload")
        .header("host", "localhost")
        .header("authorization", bearer(&token()))
        .body(Body::from_stream(stream))
        .expect("request");
    let started = Instant::now();
    let (reply, _) = proxy.send(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(started.elapsed() >= Duration::from_secs(4));
    let seen = backend.seen();
    assert_eq!(seen[0].body_len, 1_200_000);
    assert_eq!(seen[0].body_sha256, sha);
}
