//! Hostile and broken clients against the real `cdi-uploadserver`: malformed and lying
//! multipart forms, oversized request headers, and clients too slow to be served. Each must
//! get a clear answer (or be disconnected) without memory growing, without an image that looks
//! complete, and without keeping the server from the next, good, upload.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use cdi_testdata::raw::sparse_disk;
use cdi_testdata::rawtls::{read_until_closed, status_of, trickle};
use tokio::io::AsyncWriteExt;

use support::*;

const BOUNDARY: &str = "hostile-test-boundary";

/// Short timeouts, so slow clients are cut within a second or two.
const FAST: [(&str, &str); 3] = [
    ("CDI_UPLOAD_HANDSHAKE_TIMEOUT", "1"),
    ("CDI_UPLOAD_HEADER_TIMEOUT", "1"),
    ("CDI_UPLOAD_BODY_IDLE_TIMEOUT", "1"),
];

/// A raw image with the form's boundary written inside it, in every way that must not end
/// the part: without the line end before it, followed by neither `--` nor a line end, and
/// cut short of its last character.
fn image_with_boundary_inside() -> Vec<u8> {
    let mut raw = sparse_disk(21, 2 << 20, 65536);
    let inside = [
        format!("--{BOUNDARY}\r\n"),
        format!("\r\n--{BOUNDARY}!"),
        format!("\r\n--{BOUNDARY}x\r\n"),
        format!("\r\n--{}\r\n", &BOUNDARY[..BOUNDARY.len() - 1]),
        format!("\n--{BOUNDARY}--"),
        format!("\r\n-{BOUNDARY}--"),
    ];
    for (i, text) in inside.iter().enumerate() {
        let at = 8192 + i * 100_003;
        raw[at..at + text.len()].copy_from_slice(text.as_bytes());
    }
    let tail = raw.len() - 64;
    let last = format!("\r\n--{BOUNDARY}?");
    raw[tail..tail + last.len()].copy_from_slice(last.as_bytes());
    raw
}

fn part(name: &str, extra_headers: &str, data: &[u8]) -> Vec<u8> {
    let mut p = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{extra_headers}\r\n\r\n"
    )
    .into_bytes();
    p.extend_from_slice(data);
    p.extend_from_slice(b"\r\n");
    p
}

fn close() -> Vec<u8> {
    format!("--{BOUNDARY}--\r\n").into_bytes()
}

/// A form of `parts` and the closing boundary.
fn form(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut body = parts.concat();
    body.extend_from_slice(&close());
    body
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// POSTs `body` with `content_type`; the status and the text of the answer.
async fn post(
    pod: &Pod,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let mut req = pod.client().post(pod.url(path));
    if let Some(t) = content_type {
        req = req.header("content-type", t);
    }
    let r = req.body(body).send().await.expect("answer");
    (r.status().as_u16(), r.text().await.expect("text"))
}

/// A good form upload: answered 200, and the image is `raw`, byte for byte.
async fn good_upload(pod: &Pod, path: &str, raw: &[u8]) {
    let body = form(&[part("file", "; filename=\"disk.img\"", raw)]);
    let (status, text) = post(pod, path, Some(&form_type()), body).await;
    assert_eq!(status, 200, "{text}\n{}", pod.log());
}

fn assert_image(pod: &mut Pod, raw: &[u8]) {
    assert_eq!(pod.wait().0, 0, "{}", pod.log());
    let image = pod.image();
    assert!(
        image[..raw.len()] == raw[..],
        "the image differs from the upload"
    );
}

/// `mib` MiB of `byte`, generated as sent, after `head`.
fn endless(head: Vec<u8>, mib: usize, byte: u8) -> reqwest::Body {
    let pieces = std::iter::once(Ok::<_, std::io::Error>(Bytes::from(head)))
        .chain((0..mib).map(move |_| Ok(Bytes::from(vec![byte; 1 << 20]))));
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

// ---- hostile multipart ----

#[test]
fn form_without_a_form_content_type_or_boundary_is_refused_with_400() {
    let mut pod = Pod::start(&[]);
    let raw = sparse_disk(22, 1 << 20, 65536);
    let body = form(&[part("file", "", &raw)]);
    runtime().block_on(async {
        for (content_type, says) in [
            (None, "got none"),
            (
                Some("application/octet-stream"),
                "must be multipart/form-data",
            ),
            (Some("multipart/form-data"), "has no boundary"),
            (Some("multipart/form-data; boundary="), "is not 1 to 70"),
            (
                Some("multipart/form-data; boundary=\"unterminated"),
                "unterminated",
            ),
            (
                Some("multipart/form-data; boundary=other"),
                "no boundary in the first",
            ),
        ] {
            let (status, text) =
                post(&pod, "/v1beta1/upload-form", content_type, body.clone()).await;
            assert_eq!(status, 400, "{content_type:?}: {text}");
            assert!(text.contains(says), "{content_type:?}: {text}");
            pod.assert_no_image();
        }
        good_upload(&pod, "/v1beta1/upload-form", &raw).await;
    });
    assert_image(&mut pod, &raw);
}

#[test]
fn form_cut_short_anywhere_fails_and_leaves_no_image() {
    let mut pod = Pod::start(&[]);
    let raw = sparse_disk(23, 2 << 20, 65536);
    let note = part("note", "", b"just a note");
    let file = part("file", "; filename=\"disk.img\"", &raw);
    let file_head_len = file.len() - raw.len() - 2;
    let delimiter_after_file = format!("--{BOUNDARY}").into_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "never closed",
            [note.clone(), file.clone()].concat(),
            "inside a part",
        ),
        (
            "cut inside the file part",
            [note.clone(), file[..file.len() / 2].to_vec()].concat(),
            "inside a part",
        ),
        (
            "cut inside the part headers",
            [note.clone(), file[..file_head_len - 20].to_vec()].concat(),
            "inside a part's headers",
        ),
        (
            "cut after the boundary that ends the file",
            [note.clone(), file.clone(), delimiter_after_file].concat(),
            "right after a boundary",
        ),
        (
            "no part named file",
            form(std::slice::from_ref(&note)),
            "no part named \"file\"",
        ),
    ];
    runtime().block_on(async {
        for (path, (case, body, says)) in ["/v1beta1/upload-form", "/v1alpha1/upload-form-async"]
            .iter()
            .cycle()
            .zip(cases)
        {
            let (status, text) = post(&pod, path, Some(&form_type()), body).await;
            assert_eq!(status, 400, "{case} ({path}): {text}");
            assert!(text.contains(says), "{case}: {text}");
            // An async upload fails behind its answer, if it was answered: give it a moment.
            tokio::time::sleep(Duration::from_millis(100)).await;
            pod.assert_no_image();
        }
        good_upload(&pod, "/v1beta1/upload-form-async", &raw).await;
    });
    assert_image(&mut pod, &raw);
}

#[test]
fn second_part_named_file_is_refused() {
    let mut pod = Pod::start(&[]);
    let raw = sparse_disk(24, 1 << 20, 65536);
    let other = sparse_disk(25, 1 << 20, 65536);
    runtime().block_on(async {
        for path in ["/v1beta1/upload-form", "/v1beta1/upload-form-async"] {
            let body = form(&[part("file", "", &raw), part("file", "", &other)]);
            let (status, text) = post(&pod, path, Some(&form_type()), body).await;
            assert_eq!(status, 400, "{path}: {text}");
            assert!(text.contains("second part named \"file\""), "{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            pod.assert_no_image();
        }
        good_upload(&pod, "/v1beta1/upload-form", &raw).await;
    });
    assert_image(&mut pod, &raw);
}

#[test]
fn boundary_inside_the_data_does_not_end_the_part_and_the_image_is_identical() {
    let mut pod = Pod::start(&[]);
    let raw = image_with_boundary_inside();
    let body = form(&[
        part("note", "", format!("--{BOUNDARY}x").as_bytes()),
        part("file", "; filename=\"disk.img\"", &raw),
        part("after", "", b"trailing field"),
    ]);
    // Pieces of odd sizes, so the boundary's look-alikes straddle them.
    let pieces: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(4093)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    runtime().block_on(async {
        let (status, text) = post(
            &pod,
            "/v1beta1/upload-form",
            Some(&form_type()),
            reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)),
        )
        .await;
        assert_eq!(status, 200, "{text}\n{}", pod.log());
    });
    assert_image(&mut pod, &raw);
}

#[test]
fn closing_boundary_inside_the_data_is_refused_rather_than_committed_short() {
    let mut pod = Pod::start(&[]);
    let mut raw = sparse_disk(26, 1 << 20, 65536);
    let close_inside = format!("\r\n--{BOUNDARY}--\r\n");
    raw[100_000..100_000 + close_inside.len()].copy_from_slice(close_inside.as_bytes());
    runtime().block_on(async {
        let body = form(&[part("file", "", &raw)]);
        let (status, text) = post(&pod, "/v1beta1/upload-form", Some(&form_type()), body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("follow the closing boundary"), "{text}");
        pod.assert_no_image();
        // A part boundary inside the data starts a part without a name.
        let part_inside = format!("\r\n--{BOUNDARY}\r\n\r\n");
        raw[100_000..100_000 + part_inside.len()].copy_from_slice(part_inside.as_bytes());
        let body = form(&[part("file", "", &raw)]);
        let (status, text) = post(&pod, "/v1beta1/upload-form", Some(&form_type()), body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("no Content-Disposition"), "{text}");
        pod.assert_no_image();
        assert!(pod.running());
    });
}

#[test]
fn huge_part_header_and_endless_preamble_are_refused_without_being_buffered() {
    let mut pod = Pod::start(&[]);
    let raw = sparse_disk(27, 1 << 20, 65536);
    runtime().block_on(async {
        let before = pod.peak_rss_kib();
        let head =
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\nX-Junk: ")
                .into_bytes();
        let (status, text) = post(
            &pod,
            "/v1beta1/upload-form",
            Some(&form_type()),
            endless(head, 64, b'a'),
        )
        .await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("part's headers are longer than"), "{text}");
        let (status, text) = post(
            &pod,
            "/v1beta1/upload-form",
            Some(&form_type()),
            endless(Vec::new(), 64, b'-'),
        )
        .await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("no boundary in the first"), "{text}");
        let grown = pod.peak_rss_kib().saturating_sub(before);
        assert!(grown < 24 << 10, "peak memory grew by {grown} KiB");
        pod.assert_no_image();
        good_upload(&pod, "/v1beta1/upload-form", &raw).await;
    });
    assert_image(&mut pod, &raw);
}

#[test]
fn many_tiny_parts_before_the_file_are_skipped() {
    let mut pod = Pod::start(&[]);
    let raw = sparse_disk(28, 1 << 20, 65536);
    let mut parts: Vec<Vec<u8>> = (0..5000)
        .map(|i| part(&format!("f{i}"), "", b"x"))
        .collect();
    parts.push(part("file", "", &raw));
    runtime().block_on(async {
        let (status, text) = post(
            &pod,
            "/v1beta1/upload-form",
            Some(&form_type()),
            form(&parts),
        )
        .await;
        assert_eq!(status, 200, "{text}");
    });
    assert_image(&mut pod, &raw);
}

#[test]
fn transfer_encodings_and_nul_in_part_headers_are_refused_and_filenames_never_used() {
    let mut pod = Pod::start(&[]);
    let raw = sparse_disk(29, 1 << 20, 65536);
    runtime().block_on(async {
        for (headers, says) in [
            (
                "\r\nContent-Transfer-Encoding: base64",
                "Content-Transfer-Encoding",
            ),
            (
                "\r\nContent-Transfer-Encoding: quoted-printable",
                "Content-Transfer-Encoding",
            ),
            ("; filename=\"disk\0.img\"", "control character"),
        ] {
            let body = form(&[part("file", headers, &raw)]);
            let (status, text) =
                post(&pod, "/v1beta1/upload-form", Some(&form_type()), body).await;
            assert_eq!(status, 400, "{headers:?}: {text}");
            assert!(text.contains(says), "{headers:?}: {text}");
            pod.assert_no_image();
        }
        // A binary encoding is no encoding; the filename is only a name, never a path.
        let body = form(&[part(
            "file",
            "; filename=\"../../etc/tls/../../escaped/disk.img\"\r\nContent-Transfer-Encoding: binary",
            &raw,
        )]);
        let (status, text) = post(&pod, "/v1beta1/upload-form", Some(&form_type()), body).await;
        assert_eq!(status, 200, "{text}");
    });
    assert_image(&mut pod, &raw);
    let data: Vec<_> = std::fs::read_dir(pod.path("data"))
        .expect("data")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(data, ["disk.img"]);
    assert!(!pod.path("escaped").exists() && !pod.path("../escaped").exists());
}

#[test]
fn form_whose_content_length_lies_fails_cleanly() {
    let mut pod = Pod::start(&FAST);
    let raw = sparse_disk(30, 256 << 10, 65536);
    let body = form(&[part("file", "", &raw)]);
    let request = |length: usize| {
        let mut r = format!(
            "POST /v1beta1/upload-form HTTP/1.1\r\nHost: localhost\r\nContent-Type: {}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
            form_type()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    };
    runtime().block_on(async {
        // Shorter: the form ends inside the file part.
        let answer = pod.raw_request(&request(body.len() - 100)).await;
        assert_eq!(status_of(&answer), 400, "{answer}");
        assert!(answer.contains("the form ended inside a part"), "{answer}");
        pod.assert_no_image();
        // Longer: the rest never comes, and the body goes idle.
        let started = Instant::now();
        let answer = pod.raw_request(&request(body.len() + 100)).await;
        assert_eq!(status_of(&answer), 400, "{answer}");
        assert!(answer.contains("no data for 1 s"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(5));
        pod.assert_no_image();
        good_upload(&pod, "/v1beta1/upload-form", &raw).await;
    });
    assert_image(&mut pod, &raw);
}

// ---- huge headers ----

#[test]
fn request_headers_over_the_limit_get_431_and_are_not_buffered() {
    let pod = Pod::start(&[]);
    runtime().block_on(async {
        let before = pod.peak_rss_kib();
        let one_huge = format!(
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
            "a".repeat(100 << 10)
        );
        let answer = pod.raw_request(one_huge.as_bytes()).await;
        assert_eq!(status_of(&answer), 431, "{answer}");
        let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
        for i in 0..500 {
            many.push_str(&format!("X-Header-{i}: value\r\n"));
        }
        many.push_str("\r\n");
        let answer = pod.raw_request(many.as_bytes()).await;
        assert_eq!(status_of(&answer), 431, "{answer}");

        // A 64 MiB header line: the server stops reading long before its end.
        let mut tls = pod.raw_tls().await;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Endless: ")
            .await
            .expect("write");
        let line = vec![b'a'; 1 << 20];
        let mut sent = 0usize;
        for _ in 0..64 {
            let write = tokio::time::timeout(Duration::from_secs(5), tls.write_all(&line)).await;
            match write {
                Ok(Ok(())) => sent += line.len(),
                // Refused (reset, closed) or no longer read at all.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        assert!(
            sent < 16 << 20,
            "the server took {sent} bytes of one header"
        );
        drop(tls);

        // HTTP/2 too (reqwest negotiates it).
        let r = pod
            .client()
            .get(pod.url("/healthz"))
            .header("x-big", "a".repeat(100 << 10))
            .send()
            .await;
        assert!(
            r.as_ref().map_or(true, |r| r.status() == 431),
            "HTTP/2: {r:?}"
        );
        let grown = pod.peak_rss_kib().saturating_sub(before);
        assert!(grown < 24 << 10, "peak memory grew by {grown} KiB");
        let ok = pod
            .client()
            .get(pod.url("/healthz"))
            .send()
            .await
            .expect("ok");
        assert_eq!(ok.status(), 200);
    });
}

// ---- slow clients ----

#[test]
fn clients_that_never_finish_tls_or_never_send_a_request_are_disconnected() {
    let pod = Pod::start(&FAST);
    runtime().block_on(pod.raw().assert_silent_clients_are_disconnected(
        Duration::from_millis(900),
        Duration::from_secs(4),
    ));
}

#[test]
fn headers_sent_byte_by_byte_are_cut_at_the_header_timeout() {
    let pod = Pod::start(&FAST);
    runtime().block_on(async {
        let mut tls = pod.raw_tls().await;
        let request =
            b"POST /v1beta1/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n";
        let started = Instant::now();
        let cut = trickle(
            &mut tls,
            request,
            Duration::from_millis(100),
            Duration::from_secs(3),
        )
        .await;
        if !cut {
            read_until_closed(&mut tls, Duration::from_secs(2)).await;
        }
        assert!(started.elapsed() < Duration::from_secs(4));
    });
    pod.assert_no_image();
}

/// A body that sends `first` and then nothing, while its sender is kept.
fn stalling_body(
    first: Vec<u8>,
) -> (
    reqwest::Body,
    tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    tx.try_send(Ok(Bytes::from(first))).expect("first piece");
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (reqwest::Body::wrap_stream(stream), tx)
}

#[test]
fn body_that_stops_mid_upload_fails_at_the_idle_timeout_and_leaves_nothing() {
    let mut pod = Pod::start(&FAST);
    let raw = sparse_disk(31, 2 << 20, 65536);
    runtime().block_on(async {
        // A plain upload stalled after 1 MiB.
        let (body, _keep) = stalling_body(raw[..1 << 20].to_vec());
        let started = Instant::now();
        let (status, text) = post(&pod, "/v1beta1/upload", None, body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("no data for 1 s"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(5));
        pod.assert_no_image();
        // A form stalled inside a part before the file: no upload started, none held.
        let (body, _keep) = stalling_body(part("note", "", b"half a no")[..60].to_vec());
        let (status, text) = post(&pod, "/v1beta1/upload-form", Some(&form_type()), body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("no data for 1 s"), "{text}");
        // A form stalled inside the file.
        let file = part("file", "", &raw);
        let (body, _keep) = stalling_body(file[..file.len() / 2].to_vec());
        let (status, text) =
            post(&pod, "/v1beta1/upload-form-async", Some(&form_type()), body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("no data for 1 s"), "{text}");
        pod.assert_no_image();
        good_upload(&pod, "/v1beta1/upload-form", &raw).await;
    });
    assert_image(&mut pod, &raw);
}

#[test]
fn stalled_tus_patch_keeps_a_consistent_offset_and_resumes_to_an_identical_image() {
    let mut pod = Pod::start(&FAST);
    let raw = sparse_disk(32, 4 << 20, 65536);
    let rt = runtime();
    let location = tus_create(&rt, &pod, raw.len(), None);
    rt.block_on(async {
        let (body, _keep) = stalling_body(raw[..(3 << 20) / 2].to_vec());
        let r = pod
            .client()
            .patch(pod.url(&location))
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", "0")
            .header("content-type", "application/offset+octet-stream")
            .body(body)
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 400);
        let said: u64 = r.headers()["upload-offset"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("number");
        assert!(r.text().await.expect("text").contains("no data for 1 s"));
        let offset = tus_offset(&pod, &location).await;
        assert_eq!(offset, said, "HEAD and the failed PATCH agree");
        assert!(offset <= (3 << 20) / 2);
        // The upload lives on: its partial target stays, but nothing that looks complete.
        assert!(!pod.path("data/disk.img").exists());
        let r = tus_patch(
            &pod,
            &location,
            raw[offset as usize..].to_vec(),
            offset,
            None,
        )
        .await;
        assert_eq!(r.status(), 204, "{}", pod.log());
    });
    assert_image(&mut pod, &raw);
}

#[test]
fn slow_but_steady_upload_is_not_cut_by_the_timeouts() {
    let mut pod = Pod::start(&FAST);
    let raw = sparse_disk(33, 256 << 10, 65536);
    let mut body = part("file", "", &raw);
    body.extend_from_slice(&part("after", "", &[b'n'; 512 << 10]));
    body.extend_from_slice(&close());
    // 12 pieces 400 ms apart: 4.8 s in all, never idle for the 1 s timeout; the trailing
    // field alone takes longer than that too.
    let pieces: Vec<Bytes> = body
        .chunks(body.len() / 11)
        .map(Bytes::copy_from_slice)
        .collect();
    runtime().block_on(async {
        let (status, text) = post(
            &pod,
            "/v1beta1/upload-form",
            Some(&form_type()),
            paced_body(pieces, Duration::from_millis(400)),
        )
        .await;
        assert_eq!(status, 200, "{text}");
    });
    assert_image(&mut pod, &raw);
}
