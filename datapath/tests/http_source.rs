//! The HTTP source against a misbehaving local server: resumes are byte-identical, changed
//! files and terminal statuses are refused, transient ones retried.

use std::collections::VecDeque;
use std::time::Duration;

use cdi_datapath::sink::MemorySink;
use cdi_datapath::source::{HttpOptions, HttpSource, RetryPolicy, Source};
use cdi_datapath::{Error, ErrorKind, ImportSpec, Progress, import};
use cdi_testdata::http::{Behaviour, TestServer};
use cdi_testdata::raw::Rng;

fn body(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    Rng::new(len as u64).fill(&mut b);
    b
}

fn fast() -> HttpOptions {
    HttpOptions {
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_total_wait: Duration::from_secs(5),
        },
        read_timeout: Some(Duration::from_millis(400)),
        ..HttpOptions::default()
    }
}

fn read_all(source: &mut HttpSource) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    while let Some(chunk) = source.next_chunk()? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn server(b: Behaviour) -> TestServer {
    TestServer::start(b)
}

#[test]
fn dropped_connection_resumes_with_range_and_if_range() {
    let data = body(3 << 20);
    let srv = server(Behaviour {
        body: data.clone(),
        etag: Some("\"v1\"".into()),
        ranges: true,
        drop_at: VecDeque::from([1_000_003, 2_500_000]),
        ..Behaviour::default()
    });
    let options = fast();
    let resumes = std::sync::Arc::clone(&options.resumes);
    let mut s = HttpSource::open_with(&srv.url("/file"), options).expect("open");
    assert_eq!(s.total_len(), Some(3 << 20));
    assert_eq!(read_all(&mut s).expect("read"), data);
    let seen = srv.seen();
    assert_eq!(seen.requests, 3);
    assert_eq!(seen.ranges[1].as_deref(), Some("bytes=1000003-"));
    assert_eq!(seen.if_ranges[1].as_deref(), Some("\"v1\""));
    assert_eq!(resumes.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[test]
fn stalled_download_resumes_after_the_read_timeout() {
    let data = body(1 << 20);
    let srv = server(Behaviour {
        body: data.clone(),
        last_modified: Some("Tue, 24 Nov 2026 10:00:00 GMT".into()),
        ranges: true,
        stall_at: Some((300_000, Duration::from_secs(3))),
        ..Behaviour::default()
    });
    let mut s = HttpSource::open_with(&srv.url("/file"), fast()).expect("open");
    assert_eq!(read_all(&mut s).expect("read"), data);
    let seen = srv.seen();
    assert!(seen.requests >= 2);
    assert_eq!(
        seen.if_ranges[1].as_deref(),
        Some("Tue, 24 Nov 2026 10:00:00 GMT")
    );
}

#[test]
fn server_without_range_support_is_reread_from_the_start_and_skipped() {
    let data = body(2 << 20);
    let srv = server(Behaviour {
        body: data.clone(),
        etag: Some("\"same\"".into()),
        ranges: false,
        drop_at: VecDeque::from([777_777]),
        ..Behaviour::default()
    });
    let mut s = HttpSource::open_with(&srv.url("/file"), fast()).expect("open");
    assert_eq!(read_all(&mut s).expect("read"), data);
    assert_eq!(srv.seen().requests, 2);
}

#[test]
fn file_changed_between_requests_is_refused_not_mixed() {
    let data = body(2 << 20);
    let srv = server(Behaviour {
        body: data,
        etag: Some("\"v1\"".into()),
        ranges: true,
        drop_at: VecDeque::from([500_000]),
        change_to: Some((body(2 << 20 | 1), "\"v2\"".into())),
        ..Behaviour::default()
    });
    let mut s = HttpSource::open_with(&srv.url("/file"), fast()).expect("open");
    let err = read_all(&mut s).expect_err("changed file");
    assert!(err.to_string().contains("changed"), "{err}");
}

#[test]
fn not_found_and_unauthorised_are_terminal_without_retries() {
    let srv = server(Behaviour {
        body: body(10),
        basic_auth: Some("u:p".into()),
        ..Behaviour::default()
    });
    let err = HttpSource::open_with(&srv.url("/missing"), fast()).expect_err("404");
    assert_eq!(
        err.kind(),
        ErrorKind::Auth,
        "auth is checked before the path: {err}"
    );
    let srv = server(Behaviour {
        body: body(10),
        ..Behaviour::default()
    });
    let err = HttpSource::open_with(&srv.url("/missing"), fast()).expect_err("404");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(srv.seen().requests, 1, "no retries for 404");
}

#[test]
fn basic_auth_and_extra_headers_are_sent() {
    let data = body(1000);
    let srv = server(Behaviour {
        body: data.clone(),
        basic_auth: Some("user:secret".into()),
        ..Behaviour::default()
    });
    let mut options = fast();
    options.basic_auth = Some(("user".into(), "secret".into()));
    options.headers = vec![("X-Token".into(), "abc".into())];
    let mut s = HttpSource::open_with(&srv.url("/file"), options).expect("open");
    assert_eq!(read_all(&mut s).expect("read"), data);
    let seen = srv.seen();
    assert!(
        seen.headers[0]
            .iter()
            .any(|(n, v)| n == "x-token" && v == "abc")
    );
    assert!(
        seen.headers[0]
            .iter()
            .any(|(n, v)| n == "accept-encoding" && v == "identity")
    );
}

#[test]
fn transient_statuses_are_retried_honouring_retry_after() {
    let data = body(5000);
    let srv = server(Behaviour {
        body: data.clone(),
        statuses: VecDeque::from([503, 429]),
        retry_after: Some(1),
        ..Behaviour::default()
    });
    let started = std::time::Instant::now();
    let mut s = HttpSource::open_with(&srv.url("/file"), fast()).expect("open");
    assert_eq!(read_all(&mut s).expect("read"), data);
    assert_eq!(srv.seen().requests, 3);
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "waited per Retry-After (capped by the policy)"
    );
}

#[test]
fn persistent_server_errors_give_up_after_the_attempt_limit() {
    let srv = server(Behaviour {
        body: body(10),
        statuses: VecDeque::from(vec![500; 20]),
        ..Behaviour::default()
    });
    let err = HttpSource::open_with(&srv.url("/file"), fast()).expect_err("500s");
    assert_eq!(err.kind(), ErrorKind::Network);
    assert_eq!(srv.seen().requests, 4);
}

#[test]
fn redirects_are_followed() {
    let data = body(4000);
    let srv = server(Behaviour {
        body: data.clone(),
        ..Behaviour::default()
    });
    let mut s = HttpSource::open_with(&srv.url("/redirect"), fast()).expect("open");
    assert_eq!(read_all(&mut s).expect("read"), data);
}

#[test]
fn interrupted_compressed_qcow2_import_is_identical_to_an_uninterrupted_one() {
    use cdi_testdata::qcow2::{Cluster, Qcow2Builder};
    let mut rng = Rng::new(5);
    let mut b = Qcow2Builder::new(16, 32 << 20);
    for g in 0..512u64 {
        if rng.below(3) == 0 {
            b.clusters.insert(
                g,
                Cluster::Compressed(cdi_testdata::raw::text(&mut rng, 65536)),
            );
        } else if rng.below(3) == 0 {
            let mut d = vec![0u8; 65536];
            rng.fill(&mut d);
            b.clusters.insert(g, Cluster::Data(d));
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &b.build()).expect("gzip");
    let served = gz.finish().expect("gzip");
    let srv = server(Behaviour {
        body: served.clone(),
        etag: Some("\"img\"".into()),
        ranges: true,
        drop_at: VecDeque::from([served.len() as u64 / 3, served.len() as u64 * 2 / 3]),
        ..Behaviour::default()
    });
    let source = HttpSource::open_with(&srv.url("/file"), fast()).expect("open");
    let (sink, image) = MemorySink::new(None);
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&served))
    };
    let spec = ImportSpec {
        checksum: Some(format!("sha256:{digest}").parse().expect("checksum")),
        ..ImportSpec::default()
    };
    import(Box::new(source), Box::new(sink), &spec, &Progress::new()).expect("import");
    assert!(image.lock().expect("lock").bytes == b.expected_raw());
    assert_eq!(srv.seen().requests, 3);
}

/// A download resumed against a server whose certificate changed in between (the same
/// address, now answered by another server with the same file): a rotation under the trusted
/// CA resumes to identical bytes; a certificate from a CA not trusted fails the resume as an
/// authorisation failure (terminal) instead of reading on.
#[test]
fn a_certificate_change_mid_download_resumes_under_the_trusted_ca_and_fails_otherwise() {
    use cdi_testdata::http::TestCa;
    use cdi_testdata::relay::Relay;
    let data = body(3 << 20);
    let behaviour = |drop_at: VecDeque<u64>| Behaviour {
        body: data.clone(),
        etag: Some("\"v1\"".into()),
        ranges: true,
        drop_at,
        ..Behaviour::default()
    };
    let trusted = TestCa::new();
    let untrusted = TestCa::new();
    for (replacement_ca, resumes) in [(&trusted, true), (&untrusted, false)] {
        let first = TestServer::start_tls_with(behaviour(VecDeque::from([1_000_000])), &trusted);
        let replacement = TestServer::start_tls_with(behaviour(VecDeque::new()), replacement_ca);
        let relay = Relay::start(first.addr.port());
        let options = HttpOptions {
            extra_ca_pem: vec![trusted.pem().into_bytes()],
            ..fast()
        };
        let url = format!("https://127.0.0.1:{}/file", relay.port);
        let mut s = HttpSource::open_with(&url, options).expect("open");
        // The first connection stays with the first server; the resume reaches the other.
        relay.retarget(replacement.addr.port());
        let got = read_all(&mut s);
        if resumes {
            assert!(got.expect("resumed under the rotated certificate") == data);
            assert_eq!(replacement.seen().ranges, [Some("bytes=1000000-".into())]);
        } else {
            let e = got.expect_err("an untrusted certificate must not be read from");
            assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
            assert_eq!(
                replacement.seen().requests,
                0,
                "no request past the handshake"
            );
        }
    }
}

/// A server that sends more than its Content-Length (and closes): the source reads exactly the
/// announced bytes, and an import of them is the file, verified by its checksum.
#[test]
fn a_body_longer_than_its_content_length_is_read_to_the_length_only() {
    let data = body(1 << 20);
    let srv = server(Behaviour {
        body: data.clone(),
        trailing_garbage: vec![0xEE; 70_000],
        ..Behaviour::default()
    });
    let mut s = HttpSource::open_with(&srv.url("/file"), fast()).expect("open");
    assert_eq!(read_all(&mut s).expect("read"), data);
    let checksum = format!("sha256:{}", {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&data))
    });
    let (sink, image) = MemorySink::new(None);
    let spec = ImportSpec {
        checksum: Some(checksum.parse().expect("checksum")),
        ..ImportSpec::default()
    };
    let s = HttpSource::open_with(&srv.url("/file"), fast()).expect("open");
    import(Box::new(s), Box::new(sink), &spec, &Progress::new()).expect("import");
    assert!(image.lock().expect("image").bytes[..data.len()] == data[..]);
}
