//! `cdictl import` as a user runs it: summary line, `--image-sha256`, progress lines, and one
//! exit code per class of failure.

use std::path::Path;
use std::process::{Command, Output};

use cdi_testdata::http::{Behaviour, TestServer};
use cdi_testdata::qcow2::{Cluster, Qcow2Builder};
use cdi_testdata::raw::{Rng, text};

fn cdictl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cdictl"))
        .args(args)
        .output()
        .expect("run cdictl")
}

fn image() -> Qcow2Builder {
    let mut rng = Rng::new(3);
    let mut b = Qcow2Builder::new(16, 4 << 20);
    for g in 0..64u64 {
        if rng.below(2) == 0 {
            b.clusters
                .insert(g, Cluster::Compressed(text(&mut rng, 65536)));
        }
    }
    b
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

#[test]
fn import_prints_a_summary_and_the_image_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = image();
    let src = dir.path().join("img.qcow2");
    std::fs::write(&src, b.build()).expect("write");
    let raw = dir.path().join("expected.raw");
    std::fs::write(&raw, b.expected_raw()).expect("write");
    let dest = dir.path().join("disk.img");
    let checksum = format!("sha256:{}", sha256_of(&src));
    let out = cdictl(&[
        "import",
        s(&src),
        s(&dest),
        "--checksum",
        &checksum,
        "--image-sha256",
        "--progress",
        "lines",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let summary = lines.next().expect("summary");
    assert!(
        summary.starts_with(&format!("imported {} (qcow2) into {}: ", s(&src), s(&dest))),
        "{summary}"
    );
    assert!(
        summary.contains("4.0 MiB image")
            && summary.contains(" holes, ")
            && summary.ends_with("sha256 verified"),
        "{summary}"
    );
    assert_eq!(
        lines.next(),
        Some(format!("image sha256:{}", sha256_of(&raw)).as_str())
    );
}

#[test]
fn stdin_and_size_grow_the_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = image();
    let dest = dir.path().join("disk.img");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cdictl"))
        .args([
            "import",
            "-",
            s(&dest),
            "--size",
            "8Mi",
            "--progress",
            "none",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), &b.build())
        .expect("write stdin");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let disk = std::fs::read(&dest).expect("disk");
    assert_eq!(disk.len(), 8 << 20);
    assert!(disk[..4 << 20] == b.expected_raw()[..]);
}

#[test]
fn http_source_imports() {
    let b = image();
    let srv = TestServer::start(Behaviour {
        body: b.build(),
        ..Behaviour::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("disk.img");
    let out = cdictl(&["import", &srv.url("/file"), s(&dest), "--progress", "none"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&dest).expect("disk") == b.expected_raw());
}

fn fails_with(args: &[&str], code: i32, stderr_has: &str) {
    let out = cdictl(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(stderr.contains(stderr_has), "{args:?}: {stderr}");
}

#[test]
fn each_failure_class_has_its_exit_code_and_advice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.qcow2");
    std::fs::write(&src, image().build()).expect("write");
    let dest = dir.path().join("disk.img");
    let bad = dir.path().join("bad.qcow2");
    let mut b = image();
    b.backing_file = Some("base.qcow2".into());
    std::fs::write(&bad, b.build()).expect("write");
    let wrong = format!("sha256:{}", "0".repeat(64));

    fails_with(
        &["import", s(&src), s(&dest), "--checksum", "sha256:xyz"],
        2,
        "invalid checksum",
    );
    fails_with(&["import", s(&bad), s(&dest)], 3, "backing file");
    fails_with(
        &["import", s(&src), s(&dest), "--size", "1Mi"],
        3,
        "a larger volume is required",
    );
    fails_with(
        &["import", s(&src), s(&dest), "--checksum", &wrong],
        4,
        "checksum mismatch",
    );
    fails_with(
        &["import", s(&dir.path().join("missing.qcow2")), s(&dest)],
        6,
        "was not found",
    );
    fails_with(
        &[
            "import",
            s(&src),
            s(&dir.path().join("no/such/dir/disk.img")),
        ],
        5,
        "creating",
    );
    let srv = TestServer::start(Behaviour::default());
    fails_with(
        &["import", &srv.url("/nothing"), s(&dest)],
        6,
        "404 Not Found",
    );
    assert!(!dest.exists(), "no failed import left an image behind");
    let out = cdictl(&["import", s(&bad), s(&dest)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cdictl: target: ") && stderr.contains("cdictl: what to do: "),
        "{stderr}"
    );
}

#[test]
fn a_failure_is_reported_once_without_colour_escapes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.qcow2");
    std::fs::write(&src, image().build()).expect("write");
    let dest = dir.path().join("disk.img");
    let wrong = format!("sha256:{}", "0".repeat(64));
    // A resumed download logs a warning: it must come without escapes too.
    let srv = TestServer::start(Behaviour {
        body: image().build(),
        ranges: true,
        drop_at: [20_000].into(),
        ..Default::default()
    });
    for args in [
        vec!["import", s(&src), s(&dest), "--checksum", &wrong],
        vec!["import", &srv.url("/file"), s(&dest), "--checksum", &wrong],
    ] {
        let out = cdictl(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{stderr}");
        assert!(
            !stderr.contains('\x1b'),
            "escape codes in a pipe: {stderr:?}"
        );
        assert_eq!(
            stderr.matches("checksum mismatch").count(),
            1,
            "the failure once: {stderr}"
        );
    }
}

#[test]
fn json_log_lines_are_one_object_each() {
    let srv = TestServer::start(Behaviour {
        body: image().build(),
        ranges: true,
        drop_at: [20_000].into(),
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("disk.img");
    let out = Command::new(env!("CARGO_BIN_EXE_cdictl"))
        .args(["import", &srv.url("/file"), s(&dest), "--progress", "none"])
        .env("CDI_LOG_FORMAT", "json")
        .env("CDI_LOG", "info")
        .output()
        .expect("run cdictl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "WARN" && l["message"] == "Download interrupted; resuming."),
        "{stderr}"
    );
}
