//! The real `cdi-uploadserver` binary (the pod harness is in `support/`): each upload route,
//! digests, the client certificate check, one upload at a time, the deadline, and tus resumes.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use cdi_testdata::qcow2::{Cluster, Qcow2Builder};
use cdi_testdata::raw::{Rng, sparse_disk, text};
use sha2::{Digest, Sha256};

use support::*;

fn qcow2_image(seed: u64) -> Qcow2Builder {
    let mut rng = Rng::new(seed);
    let mut b = Qcow2Builder::new(16, 16 << 20);
    for g in 0..256u64 {
        match rng.below(4) {
            0 => {
                b.clusters
                    .insert(g, Cluster::Compressed(text(&mut rng, 65536)));
            }
            1 => {
                let mut d = vec![0u8; 65536];
                rng.fill(&mut d);
                b.clusters.insert(g, Cluster::Data(d));
            }
            _ => {}
        }
    }
    b
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn repr_digest(data: &[u8]) -> String {
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
    )
}

#[test]
fn qcow2_upload_is_converted_while_streaming_and_the_server_exits_complete() {
    let mut pod = Pod::start(&[]);
    let b = qcow2_image(1);
    let body = b.build();
    let rt = runtime();
    let response = rt.block_on(async {
        pod.client()
            .post(pod.url("/v1beta1/upload"))
            .header("content-type", "application/octet-stream")
            .body(body.clone())
            .send()
            .await
            .expect("upload")
    });
    assert_eq!(response.status(), 200, "{}", pod.log());
    assert_eq!(
        response.headers()["repr-digest"].to_str().expect("ascii"),
        repr_digest(&body)
    );
    let (code, message) = pod.wait();
    assert_eq!(code, 0);
    assert_eq!(
        message,
        r#"{"preallocationApplied":false,"message":"Upload Complete"}"#
    );
    let image = pod.image();
    assert_eq!(image.len(), 64 << 20, "grown to the claim's size");
    assert_eq!(&image[..16 << 20], &b.expected_raw()[..]);
    assert!(image[16 << 20..].iter().all(|&x| x == 0));
}

#[test]
fn async_upload_answers_head_and_completes_behind_the_response() {
    let mut pod = Pod::start(&[]);
    let raw = sparse_disk(2, 8 << 20, 65536);
    let rt = runtime();
    rt.block_on(async {
        let c = pod.client();
        let head = c
            .head(pod.url("/v1beta1/upload-async"))
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), 200);
        let r = c
            .post(pod.url("/v1beta1/upload-async"))
            .body(gzip(&raw))
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 200, "{}", pod.log());
    });
    assert_eq!(pod.wait().0, 0);
    assert_eq!(&pod.image()[..raw.len()], &raw[..]);
}

#[test]
fn form_upload_takes_the_part_named_file_and_skips_the_others() {
    let mut pod = Pod::start(&[]);
    let raw = sparse_disk(3, 4 << 20, 65536);
    let boundary = "cdi-test-boundary";
    let mut body = Vec::new();
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nnot the image\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"disk.raw\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .expect("write");
    body.extend_from_slice(&raw);
    write!(body, "\r\n--{boundary}--\r\n").expect("write");
    let rt = runtime();
    let status = rt.block_on(async {
        pod.client()
            .post(pod.url("/v1alpha1/upload-form"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .expect("upload")
            .status()
    });
    assert_eq!(status, 200, "{}", pod.log());
    assert_eq!(pod.wait().0, 0);
    assert_eq!(&pod.image()[..raw.len()], &raw[..]);
}

#[test]
fn archive_upload_is_unpacked_into_the_volume() {
    let mut pod = Pod::start(&[]);
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "dir/hello.txt", &b"hello"[..])
        .expect("append");
    let archive = gzip(&tar.into_inner().expect("tar"));
    let rt = runtime();
    let status = rt.block_on(async {
        pod.client()
            .post(pod.url("/v1beta1/upload-archive"))
            .body(archive)
            .send()
            .await
            .expect("upload")
            .status()
    });
    assert_eq!(status, 200, "{}", pod.log());
    assert_eq!(pod.wait().0, 0);
    assert_eq!(
        std::fs::read(pod.path("data/dir/hello.txt")).expect("file"),
        b"hello"
    );
}

#[test]
fn digest_mismatch_fails_with_400_leaves_nothing_and_a_retry_can_succeed() {
    let mut pod = Pod::start(&[]);
    let raw = sparse_disk(4, 4 << 20, 65536);
    let rt = runtime();
    rt.block_on(async {
        let c = pod.client();
        let r = c
            .post(pod.url("/v1beta1/upload"))
            .header("repr-digest", repr_digest(b"something else"))
            .body(raw.clone())
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 400);
        let text = r.text().await.expect("text");
        assert!(text.contains("checksum mismatch"), "{text}");
        pod.assert_no_image();
        let r = c
            .post(pod.url("/v1beta1/upload"))
            .header("x-cdi-checksum", format!("sha256:{}", sha256_hex(&raw)))
            .body(raw.clone())
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 200, "{}", pod.log());
        assert_eq!(
            r.headers()["x-cdi-checksum"].to_str().expect("ascii"),
            format!("sha256:{}", sha256_hex(&raw))
        );
    });
    assert_eq!(pod.wait().0, 0);
}

#[test]
fn image_larger_than_the_claim_is_refused_with_400_before_anything_is_written() {
    let mut pod = Pod::start(&[("UPLOAD_IMAGE_SIZE", "4Mi")]);
    let rt = runtime();
    rt.block_on(async {
        let r = pod
            .client()
            .post(pod.url("/v1beta1/upload"))
            .body(vec![7u8; 6 << 20])
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 400);
        let text = r.text().await.expect("text");
        assert!(
            text.contains("effective image size is larger than the reported available storage"),
            "{text}"
        );
    });
    pod.assert_no_image();
    assert!(pod.running(), "a refused upload does not end the server");
}

#[test]
fn uploads_need_the_proxys_client_certificate_but_probes_do_not() {
    let pod = Pod::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let anonymous = pod.client_with(None);
        let health = anonymous
            .get(pod.url("/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200);
        assert_eq!(health.text().await.expect("text"), "OK");
        let r = anonymous
            .post(pod.url("/v1beta1/upload"))
            .body("x")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 401);
        let wrong = pod.client_with(Some(&pod.pki.wrong_name));
        let r = wrong
            .post(pod.url("/v1beta1/upload"))
            .body("x")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 401);
        assert!(r.text().await.expect("text").contains("someone.else"));
        // A certificate from another CA does not get through the handshake.
        let other = pod.client_with(Some(&pod.pki.other_ca_client));
        assert!(
            other
                .post(pod.url("/v1beta1/upload"))
                .body("x")
                .send()
                .await
                .is_err()
        );
        // Plain HTTP is not served.
        let plain = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/healthz", pod.port()))
            .send()
            .await;
        assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200));
        let method = pod
            .client()
            .get(pod.url("/v1beta1/upload"))
            .send()
            .await
            .expect("get");
        assert_eq!(method.status(), 404);
    });
    pod.assert_no_image();
}

#[test]
fn a_second_upload_while_one_is_running_gets_503() {
    let mut pod = Pod::start(&[]);
    let raw = sparse_disk(5, 4 << 20, 65536);
    let rt = runtime();
    rt.block_on(async {
        let c = pod.client();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let stream = tokio_stream(rx);
        let first = tokio::spawn({
            let c = c.clone();
            let url = pod.url("/v1beta1/upload");
            async move {
                c.post(url)
                    .body(reqwest::Body::wrap_stream(stream))
                    .send()
                    .await
            }
        });
        tx.send(Ok(Bytes::copy_from_slice(&raw[..1 << 20])))
            .await
            .expect("send");
        // Wait until the first upload's bytes reach the data path.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = c.get(pod.url("/metrics")).send().await.expect("metrics");
            let text = metrics.text().await.expect("text");
            if text.contains("kubevirt_cdi_upload_source_bytes_total{ownerUID=\"\"} 1048576") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the first upload never started: {text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = c
            .post(pod.url("/v1beta1/upload"))
            .body("x")
            .send()
            .await
            .expect("second");
        assert_eq!(r.status(), 503);
        assert!(
            r.text()
                .await
                .expect("text")
                .contains("already in progress")
        );
        tx.send(Ok(Bytes::copy_from_slice(&raw[1 << 20..])))
            .await
            .expect("send");
        drop(tx);
        let r = first.await.expect("join").expect("first");
        assert_eq!(r.status(), 200, "{}", pod.log());
    });
    assert_eq!(pod.wait().0, 0);
    assert_eq!(&pod.image()[..raw.len()], &raw[..]);
}

#[test]
fn an_idle_server_exits_at_its_deadline_for_fresh_certificates() {
    let deadline = std::time::SystemTime::now() + Duration::from_secs(2);
    let secs = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .expect("epoch")
        .as_secs();
    let mut pod = Pod::start(&[("DEADLINE", &rfc3339(secs))]);
    let (code, message) = pod.wait();
    assert_eq!(code, 0);
    assert_eq!(
        message,
        r#"{"deadlinePassed":true,"preallocationApplied":false,"message":"Deadline Passed"}"#
    );
    pod.assert_no_image();
}

/// RFC 3339 in UTC from Unix seconds.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A stream over a channel's receiver.
fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// ---- tus ----

#[test]
fn tus_upload_cut_several_times_resumes_to_an_identical_image() {
    let mut pod = Pod::start(&[]);
    let b = qcow2_image(7);
    let data = gzip(&b.build());
    let meta = format!(
        "filename {},checksum {}",
        base64::engine::general_purpose::STANDARD.encode("disk.qcow2.gz"),
        base64::engine::general_purpose::STANDARD.encode(format!("sha256:{}", sha256_hex(&data)))
    );
    let rt = runtime();
    let location = tus_create(&rt, &pod, data.len(), Some(&meta));
    assert!(location.starts_with("/v1beta1/upload-tus/"), "{location}");
    let mut rng = Rng::new(99);
    rt.block_on(async {
        let mut offset = 0u64;
        for _ in 0..4 {
            let left = data.len() as u64 - offset;
            let cut = rng.below(left / 2).max(1) as usize;
            tus_patch_cut(&pod, &location, &data, offset, cut).await;
            let now = tus_offset(&pod, &location).await;
            assert!(
                now >= offset && now <= offset + cut as u64,
                "offset {now} after a cut at {}",
                offset + cut as u64
            );
            offset = now;
        }
        // A PATCH at the wrong offset is refused and says where the server is.
        let r = tus_patch(&pod, &location, vec![0; 10], offset + 1, None).await;
        assert_eq!(r.status(), 409);
        assert_eq!(
            r.headers()["upload-offset"].to_str().expect("ascii"),
            offset.to_string()
        );
        let r = tus_patch(
            &pod,
            &location,
            data[offset as usize..].to_vec(),
            offset,
            None,
        )
        .await;
        assert_eq!(r.status(), 204, "{}", pod.log());
        assert_eq!(
            r.headers()["upload-offset"].to_str().expect("ascii"),
            data.len().to_string()
        );
        assert_eq!(
            r.headers()["repr-digest"].to_str().expect("ascii"),
            repr_digest(&data)
        );
    });
    assert_eq!(pod.wait().0, 0);
    assert_eq!(&pod.image()[..16 << 20], &b.expected_raw()[..]);
}

#[test]
fn tus_chunk_checksums_are_verified_and_a_bad_chunk_is_discarded() {
    let mut pod = Pod::start(&[]);
    let raw = sparse_disk(8, 2 << 20, 65536);
    let rt = runtime();
    let location = tus_create(&rt, &pod, raw.len(), None);
    let sha1 = |d: &[u8]| {
        format!(
            "sha1 {}",
            base64::engine::general_purpose::STANDARD.encode(openssl_sha1(d))
        )
    };
    rt.block_on(async {
        let half = raw.len() / 2;
        let r = tus_patch(
            &pod,
            &location,
            raw[..half].to_vec(),
            0,
            Some(sha1(b"not these bytes")),
        )
        .await;
        assert_eq!(r.status().as_u16(), 460);
        assert_eq!(tus_offset(&pod, &location).await, 0);
        let r = tus_patch(
            &pod,
            &location,
            raw[..half].to_vec(),
            0,
            Some(sha1(&raw[..half])),
        )
        .await;
        assert_eq!(r.status(), 204);
        let r = tus_patch(
            &pod,
            &location,
            raw[half..].to_vec(),
            half as u64,
            Some(sha1(&raw[half..])),
        )
        .await;
        assert_eq!(r.status(), 204, "{}", pod.log());
    });
    assert_eq!(pod.wait().0, 0);
    assert_eq!(&pod.image()[..raw.len()], &raw[..]);
}

#[test]
fn tus_whole_upload_digest_sent_with_the_last_patch_is_checked_before_the_commit() {
    let mut pod = Pod::start(&[]);
    let raw = sparse_disk(9, 2 << 20, 65536);
    let half = raw.len() / 2;
    let right = format!("sha256:{}", sha256_hex(&raw));
    let rt = runtime();
    let patch = |location: &str, from: usize, checksum: Option<String>| {
        let mut req = pod
            .client()
            .patch(pod.url(location))
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", from.to_string())
            .header("content-type", "application/offset+octet-stream");
        if let Some(c) = checksum {
            req = req.header("x-cdi-checksum", c);
        }
        let body = raw[from..].to_vec();
        async move {
            let r = req.body(body).send().await.expect("patch");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    // The first half without a digest; the rest with the wrong one: refused before the commit.
    let location = tus_create(&rt, &pod, raw.len(), None);
    rt.block_on(async {
        let first = pod
            .client()
            .patch(pod.url(&location))
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", "0")
            .header("content-type", "application/offset+octet-stream")
            .body(raw[..half].to_vec())
            .send()
            .await
            .expect("patch");
        assert_eq!(first.status(), 204);
        // An algorithm the upload does not compute cannot be checked: refused at once.
        let (status, text) = patch(&location, half, Some(format!("sha1:{}", "0".repeat(40)))).await;
        assert_eq!(status, 400, "{text}");
        assert!(
            text.contains("must use an algorithm this upload computes (sha256)"),
            "{text}"
        );
        assert_eq!(tus_offset(&pod, &location).await, half as u64);
        let (status, text) =
            patch(&location, half, Some(format!("sha256:{}", "0".repeat(64)))).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("checksum mismatch"), "{text}");
    });
    pod.assert_no_image();
    // A digest that disagrees with the one given at creation is refused before any byte.
    let location = tus_create(&rt, &pod, raw.len(), Some(&metadata_checksum(&right)));
    rt.block_on(async {
        let (status, text) = patch(&location, 0, Some(format!("sha256:{}", "1".repeat(64)))).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("disagrees with"), "{text}");
        assert_eq!(tus_offset(&pod, &location).await, 0);
        // The right one completes the upload.
        let (status, text) = patch(&location, 0, Some(right.clone())).await;
        assert_eq!(status, 204, "{text}\n{}", pod.log());
    });
    assert_eq!(pod.wait().0, 0);
    assert_eq!(&pod.image()[..raw.len()], &raw[..]);
}

/// `Upload-Metadata` with a `checksum` entry.
fn metadata_checksum(checksum: &str) -> String {
    format!(
        "checksum {}",
        base64::engine::general_purpose::STANDARD.encode(checksum)
    )
}

/// The server's digest code is under test, so the expected SHA-1 comes from openssl's CLI.
fn openssl_sha1(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha1", "-binary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write");
    child.wait_with_output().expect("openssl").stdout
}

#[test]
fn tus_termination_removes_the_partial_image_and_frees_the_server() {
    let pod = Pod::start(&[]);
    let raw = sparse_disk(9, 4 << 20, 65536);
    let rt = runtime();
    let location = tus_create(&rt, &pod, raw.len(), None);
    rt.block_on(async {
        let r = tus_patch(&pod, &location, raw[..1 << 20].to_vec(), 0, None).await;
        assert_eq!(r.status(), 204);
        // One upload at a time: a second creation is refused while this one is alive.
        let r = pod
            .client()
            .post(pod.url("/v1beta1/upload-tus"))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "10")
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 503);
        let r = pod
            .client()
            .delete(pod.url(&location))
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 204);
        let r = pod
            .client()
            .head(pod.url(&location))
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .expect("head");
        assert_eq!(r.status(), 404);
        pod.assert_no_image();
        let r = pod
            .client()
            .post(pod.url("/v1beta1/upload-tus"))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "10")
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
    });
}

#[test]
fn tus_requests_without_the_protocol_version_get_412_and_options_lists_extensions() {
    let pod = Pod::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let r = pod
            .client()
            .post(pod.url("/v1beta1/upload-tus"))
            .header("upload-length", "10")
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 412);
        let r = pod
            .client()
            .request(reqwest::Method::OPTIONS, pod.url("/v1beta1/upload-tus"))
            .send()
            .await
            .expect("options");
        assert_eq!(r.status(), 204);
        assert_eq!(r.headers()["tus-version"], "1.0.0");
        assert!(
            r.headers()["tus-extension"]
                .to_str()
                .expect("ascii")
                .contains("termination")
        );
    });
}
