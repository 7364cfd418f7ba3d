//! The registry source against Debian's docker-registry on 127.0.0.1, with images the tests
//! build and push: containerDisks in gzip, zstd and plain tar layers, several layers, a
//! multi-architecture index, a KubeVirt disk artifact, and every refusal (no disk file, two,
//! a damaged blob, bootc, credentials, TLS), plus downloads cut and resumed.

use std::io::Write;
use std::time::Duration;

use cdi_datapath::sink::MemorySink;
use cdi_datapath::source::registry::RegistryOptions;
use cdi_datapath::source::{HttpOptions, RetryPolicy, SourceSpec};
use cdi_datapath::{Algorithm, ErrorKind, ImportReport, ImportSpec, Progress, import};
use cdi_testdata::qcow2::Qcow2Builder;
use cdi_testdata::raw::sparse_disk;
use cdi_testdata::registry::{
    Compression, RegistryConfig, RegistryServer, disk_artifact, image, index, layer,
};
use cdi_testdata::relay::Relay;

/// An 8 MiB qcow2 image with compressed, plain and empty clusters: (file, raw image).
fn qcow2(seed: u64) -> (Vec<u8>, Vec<u8>) {
    let b = Qcow2Builder::mixed(seed, 8 << 20);
    (b.build(), b.expected_raw())
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

/// What a DataVolume would say for `server`: its CA, or (for a plain-HTTP registry) the
/// insecure-registry setting, and its credentials.
fn options(server: &RegistryServer) -> RegistryOptions {
    let mut http = http();
    match &server.ca_pem {
        Some(pem) => http.extra_ca_pem.push(pem.clone().into_bytes()),
        None => http.insecure = true,
    }
    RegistryOptions {
        credentials: server.credentials.clone(),
        http,
        ..RegistryOptions::default()
    }
}

fn run(
    url: String,
    options: RegistryOptions,
) -> Result<(ImportReport, Vec<u8>), cdi_datapath::Error> {
    let source = SourceSpec::Registry { url, options }.open()?;
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

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

#[test]
fn container_disks_in_gzip_zstd_plain_and_later_layers_import_exactly() {
    let registry = RegistryServer::start(RegistryConfig::default());
    let (disk, raw) = qcow2(1);
    let files: &[(&str, &[u8])] = &[("disk/fedora.qcow2", &disk)];
    let cases = [
        ("gzip", vec![layer(files, Compression::Gzip)]),
        ("zstd", vec![layer(files, Compression::Zstd)]),
        ("plain", vec![layer(files, Compression::None)]),
        (
            "second-layer",
            vec![
                layer(
                    &[("etc/os-release", b"ID=test\n"), ("usr/bin/x", b"\x7fELF")],
                    Compression::Gzip,
                ),
                layer(&[("./disk/fedora.qcow2", &disk)], Compression::Gzip),
            ],
        ),
    ];
    for (tag, layers) in cases {
        registry.push("disks/fedora", tag, &image(layers, &[], "amd64"));
        let url = format!("docker://{}/disks/fedora:{tag}", registry.host());
        let (report, image) = run(url, options(&registry))
            .unwrap_or_else(|e| panic!("{tag}: {e}\n{}", registry.log()));
        assert!(image == raw, "{tag}: the image differs");
        assert_eq!(report.source_bytes, disk.len() as u64, "{tag}");
    }
}

#[test]
fn an_index_gives_the_image_of_the_architecture_asked_for() {
    let registry = RegistryServer::start(RegistryConfig::default());
    let (amd, amd_raw) = qcow2(2);
    let (arm, arm_raw) = qcow2(3);
    let idx = index(vec![
        (
            image(
                vec![layer(&[("disk/a.qcow2", &amd)], Compression::Gzip)],
                &[],
                "amd64",
            ),
            "amd64",
        ),
        (
            image(
                vec![layer(&[("disk/a.qcow2", &arm)], Compression::Gzip)],
                &[],
                "arm64",
            ),
            "arm64",
        ),
    ]);
    let digest = registry.push("disks/multi", "latest", &idx);
    let url = format!("docker://{}/disks/multi:latest", registry.host());
    let pick = |arch: &str| {
        let mut o = options(&registry);
        o.architecture = Some(arch.into());
        run(url.clone(), o)
    };
    assert!(pick("amd64").expect("amd64").1 == amd_raw);
    assert!(pick("arm64").expect("arm64").1 == arm_raw);
    let by_digest = format!("docker://{}/disks/multi@{digest}", registry.host());
    let mut o = options(&registry);
    o.architecture = Some("arm64".into());
    assert!(run(by_digest, o).expect("digest").1 == arm_raw);
    let e = pick("s390x").expect_err("no s390x");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(
        e.to_string().contains("(it has: linux/amd64, linux/arm64)"),
        "{e}"
    );
}

#[test]
fn a_kubevirt_disk_artifact_layer_is_the_disk_and_its_digest_is_verified() {
    let registry = RegistryServer::start(RegistryConfig::default());
    let raw = sparse_disk(4, 4 << 20, 65536);
    let artifact = disk_artifact(&[(
        &gzip(&raw),
        "application/vnd.kubevirt.disk.raw+gzip",
        "rootdisk",
    )]);
    registry.push("vms/fedora", "v1", &artifact);
    let url = format!("docker://{}/vms/fedora:v1", registry.host());
    let (report, image) = run(url, options(&registry)).expect("artifact");
    assert!(image == raw);
    assert_eq!(report.verified.len(), 1);
    assert_eq!(report.verified[0].checksum.algorithm, Algorithm::Sha256);
    assert_eq!(
        format!("sha256:{}", report.verified[0].checksum.hex),
        artifact.layers()[0].digest
    );
    let two = disk_artifact(&[
        (
            &gzip(&raw),
            "application/vnd.kubevirt.disk.raw+gzip",
            "rootdisk",
        ),
        (
            &gzip(&raw),
            "application/vnd.kubevirt.disk.raw+gzip",
            "datadisk",
        ),
    ]);
    registry.push("vms/two", "v1", &two);
    let e = run(
        format!("docker://{}/vms/two:v1", registry.host()),
        options(&registry),
    )
    .expect_err("two disks");
    assert!(
        e.to_string().contains("rootdisk") && e.to_string().contains("datadisk"),
        "{e}"
    );
}

#[test]
fn images_without_exactly_one_disk_file_and_bootc_images_are_refused_saying_what_was_found() {
    let registry = RegistryServer::start(RegistryConfig::default());
    let (disk, _) = qcow2(5);
    registry.push(
        "bad/none",
        "1",
        &image(
            vec![layer(
                &[("etc/hostname", b"x"), ("images/a.qcow2", &disk)],
                Compression::Gzip,
            )],
            &[],
            "amd64",
        ),
    );
    registry.push(
        "bad/two",
        "1",
        &image(
            vec![
                layer(&[("disk/a.qcow2", &disk)], Compression::Gzip),
                layer(&[("disk/b.qcow2", &disk)], Compression::Zstd),
            ],
            &[],
            "amd64",
        ),
    );
    registry.push(
        "bad/bootc",
        "1",
        &image(
            vec![layer(&[("disk/a.qcow2", &disk)], Compression::Gzip)],
            &[("containers.bootc", "1")],
            "amd64",
        ),
    );
    let host = registry.host();
    let e = run(format!("docker://{host}/bad/none:1"), options(&registry)).expect_err("none");
    assert_eq!(e.kind(), ErrorKind::InvalidImage, "{e}");
    assert!(
        e.to_string().contains("no disk image file under disk/")
            && e.to_string().contains("etc, images"),
        "{e}"
    );
    let e = run(format!("docker://{host}/bad/two:1"), options(&registry)).expect_err("two");
    assert!(e.to_string().contains("disk/a.qcow2, disk/b.qcow2"), "{e}");
    let e = run(format!("docker://{host}/bad/bootc:1"), options(&registry)).expect_err("bootc");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("bootc image detected"), "{e}");
    let e = run(format!("docker://{host}/bad/missing:1"), options(&registry)).expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn a_layer_damaged_in_the_registry_fails_the_import_before_its_commit() {
    let registry = RegistryServer::start(RegistryConfig::default());
    let (disk, _) = qcow2(6);
    // A plain tar (no compression to notice) and an artifact blob: only the digest can tell.
    let container = image(
        vec![layer(&[("disk/a.qcow2", &disk)], Compression::None)],
        &[],
        "amd64",
    );
    let raw = sparse_disk(9, 2 << 20, 65536);
    let artifact = disk_artifact(&[(&raw, "application/vnd.kubevirt.disk.raw", "rootdisk")]);
    registry.push("bad/damaged", "container", &container);
    registry.push("bad/damaged", "artifact", &artifact);
    for (tag, img) in [("container", &container), ("artifact", &artifact)] {
        // Same length, other bytes, behind the registry's back: it serves them as they are.
        let file = registry.blob_file(&img.layers()[0].digest);
        let mut bytes = std::fs::read(&file).expect("blob");
        let inside = bytes.len() / 2;
        bytes[inside] ^= 0x01;
        std::fs::write(&file, bytes).expect("damage");
        let url = format!("docker://{}/bad/damaged:{tag}", registry.host());
        let e = run(url, options(&registry)).expect_err(tag);
        assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{tag}: {e}");
        assert!(
            e.to_string().contains(&img.layers()[0].digest[7..]),
            "{tag}: {e}"
        );
    }
}

#[test]
fn credentials_and_tls_are_required_as_configured() {
    let registry = RegistryServer::start(RegistryConfig {
        tls: true,
        auth: true,
    });
    let (disk, raw) = qcow2(7);
    registry.push(
        "private/disk",
        "1",
        &image(
            vec![layer(&[("disk/a.qcow2", &disk)], Compression::Gzip)],
            &[],
            "amd64",
        ),
    );
    let url = format!("docker://{}/private/disk:1", registry.host());
    assert!(
        run(url.clone(), options(&registry))
            .expect("with CA and password")
            .1
            == raw
    );
    let mut anonymous = options(&registry);
    anonymous.credentials = None;
    let e = run(url.clone(), anonymous).expect_err("anonymous");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    let mut wrong = options(&registry);
    wrong.credentials = Some(("importer".into(), "wrong".into()));
    assert_eq!(
        run(url.clone(), wrong).expect_err("wrong").kind(),
        ErrorKind::Auth
    );
    let mut no_ca = options(&registry);
    no_ca.http.extra_ca_pem.clear();
    let e = run(url.clone(), no_ca.clone()).expect_err("no CA");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    no_ca.http.insecure = true;
    assert!(run(url, no_ca).expect("insecure").1 == raw);
}

#[test]
fn layer_downloads_cut_three_times_resume_to_the_same_image() {
    let registry = RegistryServer::start(RegistryConfig::default());
    let (disk, raw) = qcow2(8);
    let img = image(
        vec![layer(&[("disk/a.qcow2", &disk)], Compression::Zstd)],
        &[],
        "amd64",
    );
    registry.push("disks/cut", "1", &img);
    let relay = Relay::start(registry.port());
    let layer_len = img.layers()[0].data.len() as u64;
    // Cut by the total downloaded, not by connection: the manifest and config requests may
    // share a pooled connection or not, so counting connections made the cuts fall on
    // different requests from run to run. The three offsets all fall in the blob's transfers
    // (the first download, then each resume).
    relay.cut_downloads_at_totals(&[
        layer_len / 3,
        layer_len / 3 + layer_len / 4,
        layer_len / 3 + layer_len / 2,
    ]);
    let o = options(&registry);
    let resumes = std::sync::Arc::clone(&o.http.resumes);
    let url = format!("docker://127.0.0.1:{}/disks/cut:1", relay.port);
    let (_, image) = run(url, o).unwrap_or_else(|e| panic!("{e}\n{}", registry.log()));
    assert!(image == raw);
    assert_eq!(relay.cuts(), 3);
    assert!(resumes.load(std::sync::atomic::Ordering::Relaxed) >= 3);
}
