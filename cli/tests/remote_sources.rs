//! `cdictl import` from S3, GCS and a registry, as a user runs it: credentials from flags or
//! the usual environment variables, the summary naming the digest verified, and the exit code
//! of each refusal.

use std::path::Path;
use std::process::{Command, Output};

use cdi_testdata::objectstore::{GcsEmulator, S3Server};
use cdi_testdata::qcow2::Qcow2Builder;
use cdi_testdata::registry::{Compression, RegistryConfig, RegistryServer, image, layer};

/// Runs cdictl with only `env` set (no AWS_* or GOOGLE_* of the machine's).
fn cdictl(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cdictl"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run cdictl")
}

fn qcow2() -> Qcow2Builder {
    Qcow2Builder::mixed(5, 4 << 20)
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

#[test]
fn s3_with_the_aws_environment_and_a_custom_endpoint() {
    let server = S3Server::start(true);
    let b = qcow2();
    server.put("images", "disk.qcow2", &b.build(), None);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("disk.img");
    let endpoint = server.endpoint();
    let env = [
        ("AWS_ACCESS_KEY_ID", server.key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", server.secret.as_str()),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];
    let out = cdictl(
        &[
            "import",
            "s3://images/disk.qcow2",
            s(&dest),
            "--progress",
            "none",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text_of(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("crc32 verified against the object's x-amz-checksum-crc32"),
        "{stdout}"
    );
    assert!(std::fs::read(&dest).expect("disk") == b.expected_raw());
    // Wrong key: exit 6 (source refused), nothing written.
    let other = dir.path().join("other.img");
    let out = cdictl(
        &[
            "import",
            "s3://images/disk.qcow2",
            s(&other),
            "--secret-key",
            "wrong",
            "--progress",
            "none",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(6), "{}", text_of(&out));
    assert!(!other.exists());
}

#[test]
fn gcs_public_objects_and_registry_images_with_flags() {
    let gcs = GcsEmulator::start();
    let b = qcow2();
    gcs.put("images", "disk.qcow2", &b.build());
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("gcs.img");
    let endpoint = gcs.endpoint();
    let out = cdictl(
        &[
            "import",
            "gs://images/disk.qcow2",
            s(&dest),
            "--endpoint",
            &endpoint,
            "--progress",
            "none",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("crc32c verified"));
    assert!(std::fs::read(&dest).expect("disk") == b.expected_raw());

    let registry = RegistryServer::start(RegistryConfig {
        tls: true,
        auth: true,
    });
    registry.push(
        "disks/x",
        "1",
        &image(
            vec![layer(&[("disk/x.qcow2", &b.build())], Compression::Zstd)],
            &[],
            "amd64",
        ),
    );
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, registry.ca_pem.as_deref().expect("CA")).expect("CA");
    let (user, password) = registry.credentials.clone().expect("credentials");
    let url = format!("docker://{}/disks/x:1", registry.host());
    let dest = dir.path().join("registry.img");
    let out = cdictl(
        &[
            "import",
            &url,
            s(&dest),
            "--ca",
            s(&ca),
            "--user",
            &user,
            "--progress",
            "none",
        ],
        &[("CDICTL_PASSWORD", password.as_str())],
    );
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(std::fs::read(&dest).expect("disk") == b.expected_raw());
    let missing = format!("docker://{}/disks/x:2", registry.host());
    let out = cdictl(
        &[
            "import",
            &missing,
            s(&dir.path().join("m.img")),
            "--ca",
            s(&ca),
            "--user",
            &user,
            "--progress",
            "none",
        ],
        &[("CDICTL_PASSWORD", password.as_str())],
    );
    assert_eq!(out.status.code(), Some(6), "{}", text_of(&out));
    assert!(
        text_of(&out).contains("check the repository and tag"),
        "{}",
        text_of(&out)
    );
}
