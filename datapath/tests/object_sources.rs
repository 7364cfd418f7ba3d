//! S3 and GCS sources against real servers on 127.0.0.1 (moto's S3, the GCS emulator) and,
//! for answers those cannot give (a wrong stored digest, a refusal), the misbehaving test
//! server: every URL form, credentials, the object's own digest, resumes through a relay that
//! cuts the downloads, and the terminal errors.

use std::io::Write;
use std::time::Duration;

use cdi_datapath::sink::MemorySink;
use cdi_datapath::source::gcs::GcsOptions;
use cdi_datapath::source::s3::S3Options;
use cdi_datapath::source::{HttpOptions, RetryPolicy, SourceSpec};
use cdi_datapath::{Algorithm, ErrorKind, ImportReport, ImportSpec, Progress, import};
use cdi_testdata::http::{Behaviour, TestServer};
use cdi_testdata::objectstore::{GcsEmulator, S3Server, service_account_key};
use cdi_testdata::qcow2::Qcow2Builder;
use cdi_testdata::relay::Relay;

/// A 16 MiB qcow2 with compressed, plain and empty clusters, gzipped; and its raw image.
fn image() -> (Vec<u8>, Vec<u8>) {
    let b = Qcow2Builder::mixed(17, 16 << 20);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.build()).expect("gzip");
    (gz.finish().expect("gzip"), b.expected_raw())
}

fn http() -> HttpOptions {
    HttpOptions {
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            max_total_wait: Duration::from_secs(10),
        },
        read_timeout: Some(Duration::from_secs(5)),
        ..HttpOptions::default()
    }
}

/// Imports `spec` into memory: the report and the image.
fn run(spec: SourceSpec) -> Result<(ImportReport, Vec<u8>), cdi_datapath::Error> {
    let source = spec.open()?;
    let (sink, image) = MemorySink::new(None);
    let report = import(
        source,
        Box::new(sink),
        &ImportSpec::default(),
        &Progress::new(),
    )
    .map_err(|f| f.error)?;
    let bytes = image.lock().expect("image").bytes.clone();
    Ok((report, bytes))
}

fn s3(
    url: &str,
    endpoint: Option<String>,
    key: Option<(&str, &str)>,
    http: HttpOptions,
) -> SourceSpec {
    SourceSpec::S3 {
        url: url.to_owned(),
        options: S3Options {
            access_key_id: key.map(|k| k.0.to_owned()),
            secret_key: key.map(|k| k.1.to_owned()),
            endpoint,
            http,
            ..S3Options::default()
        },
    }
}

#[test]
fn s3_objects_import_in_every_url_form_with_their_checksums_verified() {
    let server = S3Server::start(true);
    let (data, raw) = image();
    server.put("images", "fedora/disk.qcow2.gz", &data, None);
    server.put("images", "sha/disk.qcow2.gz", &data, Some("SHA256"));
    let key = Some((server.key_id.as_str(), server.secret.as_str()));
    // boto3 stores a CRC32 by default (S3 answers it with x-amz-checksum-mode), or the
    // algorithm it is asked for.
    let endpoint = server.endpoint();
    for (spec, algorithm) in [
        (
            s3(
                "s3://images/fedora/disk.qcow2.gz",
                Some(endpoint.clone()),
                key,
                http(),
            ),
            Algorithm::Crc32,
        ),
        (
            s3(
                &format!("{endpoint}/images/fedora/disk.qcow2.gz"),
                None,
                key,
                http(),
            ),
            Algorithm::Crc32,
        ),
        (
            s3(
                &format!("{endpoint}/images/sha/disk.qcow2.gz"),
                None,
                key,
                http(),
            ),
            Algorithm::Sha256,
        ),
    ] {
        let shown = spec.describe();
        let (report, image) =
            run(spec).unwrap_or_else(|e| panic!("{shown}: {e}\n{}", server.log()));
        assert!(image == raw, "{shown}: the image differs");
        assert_eq!(report.verified.len(), 1, "{shown}: {:?}", report.verified);
        assert_eq!(report.verified[0].checksum.algorithm, algorithm, "{shown}");
    }
}

#[test]
fn s3_refuses_wrong_credentials_and_missing_objects_as_terminal() {
    let server = S3Server::start(true);
    server.put("images", "disk.img", b"bytes of a disk", None);
    let url = format!("{}/images/disk.img", server.endpoint());
    let wrong = run(s3(
        &url,
        None,
        Some((&server.key_id, "not-the-secret")),
        http(),
    ))
    .expect_err("wrong secret");
    assert_eq!(wrong.kind(), ErrorKind::Auth, "{wrong}");
    let unknown = run(s3(&url, None, Some(("AKIDUNKNOWN", "x")), http())).expect_err("unknown key");
    assert_eq!(unknown.kind(), ErrorKind::Auth, "{unknown}");
    let key = Some((server.key_id.as_str(), server.secret.as_str()));
    let missing = run(s3(
        &format!("{}/images/nope.img", server.endpoint()),
        None,
        key,
        http(),
    ))
    .expect_err("missing");
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    assert!(
        missing
            .to_string()
            .contains("check the bucket (images) and key (nope.img)"),
        "{missing}"
    );
}

#[test]
fn s3_downloads_cut_three_times_resume_to_the_same_image() {
    let server = S3Server::start(false);
    let (data, raw) = image();
    server.put("images", "disk.qcow2.gz", &data, None);
    let relay = Relay::start(server.port());
    let third = data.len() as u64 / 3;
    relay.cut_downloads_after(&[third, 4000, third]);
    let options = http();
    let resumes = std::sync::Arc::clone(&options.resumes);
    let url = format!("http://127.0.0.1:{}/images/disk.qcow2.gz", relay.port);
    let (report, image) = run(s3(&url, None, Some(("AKID", "secret")), options))
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert!(image == raw);
    assert_eq!(relay.cuts(), 3);
    assert_eq!(resumes.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(report.verified.len(), 1);
}

#[test]
fn an_object_whose_bytes_do_not_match_its_stored_digest_fails_and_leaves_nothing() {
    let body = b"the bytes that were stored".to_vec();
    for headers in [
        vec![("ETag".to_owned(), format!("\"{}\"", "0".repeat(32)))],
        vec![("x-amz-checksum-crc32".to_owned(), "AAAAAA==".to_owned())],
    ] {
        let server = TestServer::start(Behaviour {
            body: body.clone(),
            path: Some("/bkt/disk.img".into()),
            headers,
            ..Behaviour::default()
        });
        let e = run(s3(&server.url("/bkt/disk.img"), None, None, http())).expect_err("mismatch");
        assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{e}");
        assert!(e.to_string().contains("damaged"), "{e}");
    }
    // The GCS form of the same.
    let server = TestServer::start(Behaviour {
        body,
        path: Some("/bkt/disk.img".into()),
        headers: vec![("x-goog-hash".into(), "crc32c=AAAAAA==".into())],
        ..Behaviour::default()
    });
    let e = run(SourceSpec::Gcs {
        url: server.url("/bkt/disk.img"),
        options: GcsOptions {
            http: http(),
            ..GcsOptions::default()
        },
    })
    .expect_err("mismatch");
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{e}");
}

fn gcs(
    url: &str,
    endpoint: Option<String>,
    key: Option<std::path::PathBuf>,
    http: HttpOptions,
) -> SourceSpec {
    SourceSpec::Gcs {
        url: url.to_owned(),
        options: GcsOptions {
            credentials_file: key,
            endpoint,
            http,
        },
    }
}

#[test]
fn gcs_objects_import_anonymously_and_with_a_signed_url_with_crc32c_verified() {
    let emulator = GcsEmulator::start();
    let (data, raw) = image();
    emulator.put("images", "fedora/disk 1.qcow2.gz", &data);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = service_account_key(dir.path(), &emulator.endpoint());
    for spec in [
        gcs(
            "gs://images/fedora/disk 1.qcow2.gz",
            Some(emulator.endpoint()),
            None,
            http(),
        ),
        gcs(
            &format!("{}/images/fedora/disk%201.qcow2.gz", emulator.endpoint()),
            None,
            None,
            http(),
        ),
        gcs(
            "gs://images/fedora/disk 1.qcow2.gz",
            None,
            Some(key.clone()),
            http(),
        ),
    ] {
        let shown = spec.describe();
        let (report, image) =
            run(spec).unwrap_or_else(|e| panic!("{shown}: {e}\n{}", emulator.log()));
        assert!(image == raw, "{shown}");
        assert_eq!(report.verified.len(), 1, "{shown}");
        assert_eq!(report.verified[0].checksum.algorithm, Algorithm::Crc32c);
    }
    let signed = emulator.log();
    assert!(
        signed.contains("X-Goog-Signature"),
        "the key's requests were signed:\n{signed}"
    );
}

#[test]
fn gcs_downloads_cut_twice_resume_to_the_same_image_and_missing_objects_are_not_found() {
    let emulator = GcsEmulator::start();
    let (data, raw) = image();
    emulator.put("images", "disk.qcow2.gz", &data);
    let relay = Relay::start(emulator.port());
    relay.cut_downloads_after(&[data.len() as u64 / 2, 70_000]);
    let url = format!("http://127.0.0.1:{}/images/disk.qcow2.gz", relay.port);
    let (_, image) =
        run(gcs(&url, None, None, http())).unwrap_or_else(|e| panic!("{e}\n{}", emulator.log()));
    assert!(image == raw);
    assert_eq!(relay.cuts(), 2);
    let e = run(gcs(
        "gs://images/nope.img",
        Some(emulator.endpoint()),
        None,
        http(),
    ))
    .expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn gcs_refusing_the_credentials_is_unauthorized_and_terminal() {
    let server = TestServer::start(Behaviour {
        body: b"private".to_vec(),
        path: Some("/bkt/disk.img".into()),
        statuses: [403].into(),
        ..Behaviour::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let key = service_account_key(dir.path(), &format!("http://{}", server.addr));
    let e = run(gcs(&server.url("/bkt/disk.img"), None, Some(key), http())).expect_err("403");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("service-account key"), "{e}");
    assert_eq!(server.seen().requests, 1, "not retried");
}
