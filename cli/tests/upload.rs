//! `cdictl upload` against the real `cdi-uploadserver` (mutual TLS, as the proxy talks to it),
//! directly or through a relay that breaks connections: the image on the volume is exactly the
//! file's, whatever the cuts, and every failure says what happened with its exit code.

mod support;

use std::io::Write;
use std::path::Path;

use cdi_testdata::qcow2::{Cluster, Qcow2Builder};
use cdi_testdata::raw::{Rng, sparse_disk, text};
use support::{AfterBudgets, Pod, Relay, cdictl, state_files};

/// A 16 MiB qcow2 with compressed, plain and unallocated clusters (about 8 MiB of file).
fn qcow2_image(seed: u64) -> Qcow2Builder {
    let mut rng = Rng::new(seed);
    let mut b = Qcow2Builder::new(16, 16 << 20);
    for g in 0..256u64 {
        match rng.below(4) {
            0 => {
                b.clusters
                    .insert(g, Cluster::Compressed(text(&mut rng, 65536)));
            }
            1 | 2 => {
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

/// sha256 from coreutils, so the digest under test is not checked against itself.
fn sha256_of(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

fn args(url: &str, file: &Path, tls: &[String], extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "upload".to_string(),
        "--url".into(),
        url.into(),
        file.to_string_lossy().into_owned(),
        "--progress".into(),
        "none".into(),
    ];
    a.extend(tls.iter().cloned());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn text_of(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn qcow2_upload_gives_the_exact_image_and_the_digests_agree() {
    let mut pod = Pod::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let b = qcow2_image(1);
    let file = dir.path().join("disk.qcow2");
    std::fs::write(&file, b.build()).expect("write");
    let out = cdictl(
        dir.path(),
        &args(&pod.url(), &file, &pod.tls_args(), &["--chunk-size", "1Mi"]),
    );
    let (stdout, stderr) = text_of(&out);
    assert!(out.status.success(), "{stdout}{stderr}\n{}", pod.log());
    let digest = format!("sha256:{}", sha256_of(&file));
    assert!(
        stdout.starts_with(&format!("uploaded {} (", file.display()))
            && stdout.contains(&format!("{digest} verified by the server")),
        "{stdout}"
    );
    assert_eq!(pod.wait(), 0, "the server exits after its one upload");
    assert_eq!(&pod.image()[..16 << 20], &b.expected_raw()[..]);
    assert!(state_files(dir.path()).is_empty(), "no state left");
}

#[test]
fn gzip_raw_upload_with_its_checksum_gives_the_exact_image() {
    let mut pod = Pod::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = sparse_disk(2, 8 << 20, 65536);
    let file = dir.path().join("disk.raw.gz");
    std::fs::write(&file, gzip(&raw)).expect("write");
    let checksum = format!("sha256:{}", sha256_of(&file));
    let out = cdictl(
        dir.path(),
        &args(
            &pod.url(),
            &file,
            &pod.tls_args(),
            &["--checksum", &checksum],
        ),
    );
    let (stdout, stderr) = text_of(&out);
    assert!(out.status.success(), "{stdout}{stderr}\n{}", pod.log());
    assert!(stdout.contains(&format!("{checksum} verified")), "{stdout}");
    assert_eq!(pod.wait(), 0);
    assert_eq!(&pod.image()[..raw.len()], &raw[..]);
}

#[test]
fn connections_cut_at_random_offsets_are_resumed_to_an_identical_image() {
    cut_and_resumed(&["--chunk-size", "512Ki"], 11);
}

#[test]
fn the_whole_file_in_one_streamed_request_is_resumed_where_each_cut_left_it() {
    cut_and_resumed(&[], 12);
}

/// Four connections in a row cut at random points (TLS records and requests included: inside
/// a request, between them, in the first one), then the upload resumes to the exact image.
fn cut_and_resumed(chunking: &[&str], seed: u64) {
    let mut pod = Pod::start();
    let relay = Relay::start(pod.port());
    let dir = tempfile::tempdir().expect("tempdir");
    let b = qcow2_image(3);
    let data = gzip(&b.build());
    let file = dir.path().join("disk.qcow2.gz");
    std::fs::write(&file, &data).expect("write");
    let mut rng = Rng::new(seed);
    let budgets: Vec<u64> = (0..4)
        .map(|_| (64 << 10) + rng.below(data.len() as u64 / 5))
        .collect();
    relay.cut_connections_after(&budgets, AfterBudgets::Pass);
    let mut extra = chunking.to_vec();
    extra.extend(["--retries", "6"]);
    let out = cdictl(
        dir.path(),
        &args(&relay.url(), &file, &pod.tls_args(), &extra),
    );
    let (stdout, stderr) = text_of(&out);
    assert!(
        out.status.success(),
        "budgets {budgets:?}: {stdout}{stderr}\n{}",
        pod.log()
    );
    assert_eq!(relay.cuts(), 4, "every planned cut happened: {stderr}");
    assert!(stderr.contains("resuming at byte"), "{stderr}");
    assert!(stdout.contains(" resumed "), "{stdout}");
    assert!(
        stdout.contains(&format!("sha256:{} verified", sha256_of(&file))),
        "{stdout}"
    );
    assert_eq!(pod.wait(), 0);
    assert_eq!(&pod.image()[..16 << 20], &b.expected_raw()[..]);
}

#[test]
fn an_interrupted_upload_is_continued_by_the_next_run_from_the_servers_offset() {
    let mut pod = Pod::start();
    let relay = Relay::start(pod.port());
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = sparse_disk(4, 6 << 20, 4096);
    let file = dir.path().join("disk.raw");
    std::fs::write(&file, &raw).expect("write");
    let extra = ["--chunk-size", "256Ki", "--retries", "1"];
    // The first connection breaks halfway, then the network stays down.
    relay.cut_connections_after(&[raw.len() as u64 / 2], AfterBudgets::Refuse);
    let out = cdictl(
        dir.path(),
        &args(&relay.url(), &file, &pod.tls_args(), &extra),
    );
    let (stdout, stderr) = text_of(&out);
    assert_eq!(out.status.code(), Some(6), "{stdout}{stderr}");
    assert!(
        stderr.contains("the upload stopped at") && stderr.contains("run the same command again"),
        "{stderr}"
    );
    assert_eq!(
        state_files(dir.path()).len(),
        1,
        "the upload's state is kept"
    );
    // The network is back: the same command continues where the server is.
    relay.pass();
    let out = cdictl(
        dir.path(),
        &args(&relay.url(), &file, &pod.tls_args(), &extra),
    );
    let (stdout, stderr) = text_of(&out);
    assert!(out.status.success(), "{stdout}{stderr}\n{}", pod.log());
    assert!(
        stderr.contains("continuing the interrupted upload at"),
        "{stderr}"
    );
    let from: u64 = stdout
        .split(", continued from byte ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("continued from byte N");
    assert!(from > 0 && from < raw.len() as u64, "{stdout}");
    assert!(
        stdout.contains(&format!("sha256:{} verified", sha256_of(&file))),
        "{stdout}"
    );
    assert!(state_files(dir.path()).is_empty(), "the state is removed");
    assert_eq!(pod.wait(), 0);
    assert_eq!(&pod.image()[..raw.len()], &raw[..]);
}

#[test]
fn an_upload_the_restarted_server_lost_starts_over_and_completes() {
    let mut pod = Pod::start();
    let relay = Relay::start(pod.port());
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = sparse_disk(7, 4 << 20, 4096);
    let file = dir.path().join("disk.raw");
    std::fs::write(&file, &raw).expect("write");
    let extra = ["--chunk-size", "256Ki", "--retries", "1"];
    relay.cut_connections_after(&[raw.len() as u64 / 2], AfterBudgets::Refuse);
    let out = cdictl(
        dir.path(),
        &args(&relay.url(), &file, &pod.tls_args(), &extra),
    );
    assert_eq!(out.status.code(), Some(6), "{:?}", text_of(&out));
    // The pod restarts: its upload was in memory only.
    pod.restart();
    relay.pass();
    let out = cdictl(
        dir.path(),
        &args(&relay.url(), &file, &pod.tls_args(), &extra),
    );
    let (stdout, stderr) = text_of(&out);
    assert!(out.status.success(), "{stdout}{stderr}\n{}", pod.log());
    assert!(
        stderr.contains("the server no longer has the interrupted upload")
            && stderr.contains("starting over"),
        "{stderr}"
    );
    assert!(!stdout.contains("continued from"), "{stdout}");
    assert_eq!(pod.wait(), 0);
    assert_eq!(&pod.image()[..raw.len()], &raw[..]);
}

#[test]
fn a_file_changed_since_the_interrupted_run_ends_the_old_upload_and_starts_over() {
    let mut pod = Pod::start();
    let relay = Relay::start(pod.port());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("disk.raw");
    std::fs::write(&file, sparse_disk(8, 4 << 20, 4096)).expect("write");
    let extra = ["--chunk-size", "256Ki", "--retries", "1"];
    relay.cut_connections_after(&[2 << 20], AfterBudgets::Refuse);
    let out = cdictl(
        dir.path(),
        &args(&relay.url(), &file, &pod.tls_args(), &extra),
    );
    assert_eq!(out.status.code(), Some(6), "{:?}", text_of(&out));
    // Another image under the same name: the server's half upload is of the old one.
    let raw = sparse_disk(9, 3 << 20, 4096);
    std::fs::write(&file, &raw).expect("rewrite");
    relay.pass();
    let out = cdictl(
        dir.path(),
        &args(&relay.url(), &file, &pod.tls_args(), &extra),
    );
    let (stdout, stderr) = text_of(&out);
    assert!(out.status.success(), "{stdout}{stderr}\n{}", pod.log());
    assert!(
        stderr.contains("changed since the interrupted upload"),
        "{stderr}"
    );
    assert_eq!(pod.wait(), 0);
    assert_eq!(&pod.image()[..raw.len()], &raw[..]);
}

#[test]
fn a_wrong_checksum_fails_with_exit_4_and_leaves_nothing_on_the_volume() {
    let mut pod = Pod::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("disk.raw");
    std::fs::write(&file, sparse_disk(5, 2 << 20, 65536)).expect("write");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let out = cdictl(
        dir.path(),
        &args(&pod.url(), &file, &pod.tls_args(), &["--checksum", &wrong]),
    );
    let (stdout, stderr) = text_of(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "checksum mismatch: {} is sha256:{}, but --checksum says {wrong}",
            file.display(),
            sha256_of(&file)
        )) && stderr.contains("kept nothing"),
        "{stderr}"
    );
    assert!(stderr.contains("cdictl: what to do: "), "{stderr}");
    pod.assert_no_image();
    assert!(pod.running(), "a refused upload does not end the server");
    assert!(state_files(dir.path()).is_empty(), "nothing to continue");
}

#[test]
fn an_image_the_server_refuses_fails_with_exit_3_and_its_reason() {
    let mut pod = Pod::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut b = qcow2_image(6);
    b.backing_file = Some("base.qcow2".into());
    let file = dir.path().join("overlay.qcow2");
    std::fs::write(&file, b.build()).expect("write");
    let out = cdictl(
        dir.path(),
        &args(&pod.url(), &file, &pod.tls_args(), &["--chunk-size", "1Mi"]),
    );
    let (stdout, stderr) = text_of(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stderr.contains("the server ended the upload: 400 Bad Request: upload refused: ")
            && stderr.contains("backing file"),
        "{stderr}"
    );
    pod.assert_no_image();
    assert!(pod.running());
    assert!(state_files(dir.path()).is_empty());
}

#[test]
fn a_refused_token_says_to_get_a_fresh_one() {
    // Without the proxy's client certificate the upload server answers 401, as the proxy does
    // for an expired token.
    let pod = Pod::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("disk.raw");
    std::fs::write(&file, vec![1u8; 4096]).expect("write");
    let out = cdictl(
        dir.path(),
        &args(
            &pod.url(),
            &file,
            &pod.ca_args(),
            &["--token", "expired.jwt.token"],
        ),
    );
    let (stdout, stderr) = text_of(&out);
    assert_eq!(out.status.code(), Some(6), "{stdout}{stderr}");
    assert!(
        stderr.contains("the token was refused (401 Unauthorized")
            && stderr.contains("get a fresh one (tokens last 5 minutes)"),
        "{stderr}"
    );
    pod.assert_no_image();
}

#[test]
fn a_missing_file_and_bad_flags_have_their_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.qcow2");
    let out = cdictl(
        dir.path(),
        &args("https://127.0.0.1:1", &missing, &[], &["--token", "t"]),
    );
    let (_, stderr) = text_of(&out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("missing.qcow2"), "{stderr}");
    let out = cdictl(
        dir.path(),
        &args(
            "https://127.0.0.1:1",
            &missing,
            &[],
            &["--token", "t", "--chunk-size", "1Ki"],
        ),
    );
    let (_, stderr) = text_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--chunk-size must be"), "{stderr}");
    let out = cdictl(dir.path(), &args("https://127.0.0.1:1", &missing, &[], &[]));
    assert_eq!(out.status.code(), Some(2), "--token is required");
}
