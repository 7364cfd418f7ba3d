//! Hostile and slow clients of the proxy over TLS: oversized headers, clients that never send
//! a request or send it byte by byte, bodies that stop, and a slow but steady upload that the
//! timeouts must let through.

use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use cdi_uploadproxy::{ForwardTimeouts, ServeLimits};
use http::{Request, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

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

/// Reads until the proxy closes the connection; panics if it is still open after `within`.
async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection is still open after {within:?}; read {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// Sends `request` as written on a fresh connection; the answer, up to the proxy's close.
async fn raw_request(proxy: &RunningProxy, request: &[u8]) -> String {
    let mut tls = proxy.raw_tls().await;
    let _ = tls.write_all(request).await;
    let _ = tls.flush().await;
    String::from_utf8_lossy(&read_until_closed(&mut tls, Duration::from_secs(20)).await)
        .into_owned()
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
    let answer = raw_request(&proxy, one_huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-Header-{i}: value\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw_request(&proxy, many.as_bytes()).await;
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
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    read_until_closed(&mut tcp, Duration::from_secs(4)).await;
    assert!(started.elapsed() >= Duration::from_millis(900));

    // TLS done, then silence.
    let mut tls = proxy.raw_tls().await;
    read_until_closed(&mut tls, Duration::from_secs(4)).await;

    // The HTTP/2 preface and an empty SETTINGS frame, then silence.
    let mut tls = proxy.raw_tls().await;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    read_until_closed(&mut tls, Duration::from_secs(4)).await;

    // A keep-alive connection left idle after its answer.
    let mut tls = proxy.raw_tls().await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let answer = read_until_closed(&mut tls, Duration::from_secs(4)).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"));
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
    let mut cut = false;
    for &b in request.as_bytes() {
        if tls.write_all(&[b]).await.is_err() || tls.flush().await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
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
    let stream = futures_util::stream::unfold(pieces.into_iter(), |mut rest| async move {
        let next = rest.next()?;
        tokio::time::sleep(Duration::from_millis(400)).await;
        Some((Ok::<_, std::io::Error>(next), rest))
    });
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
