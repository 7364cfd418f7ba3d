//! The real `cdi-importer` binary, run as a process with CDI's environment and a temporary
//! directory standing in for the pod's mounts (`CDI_ROOT`). Termination messages are checked
//! literally.

use std::path::{Path, PathBuf};
use std::process::Command;

use cdi_testdata::http::{Behaviour, TestServer};
use cdi_testdata::qcow2::{Cluster, Qcow2Builder};
use cdi_testdata::raw::{Rng, text};

struct Pod {
    root: tempfile::TempDir,
}

impl Pod {
    fn filesystem() -> Pod {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("data")).expect("data");
        std::fs::create_dir_all(root.path().join("dev")).expect("dev");
        Pod { root }
    }

    fn block(size: usize) -> Pod {
        let pod = Pod::filesystem();
        std::fs::remove_dir(pod.path("data")).expect("rm data");
        std::fs::write(pod.path("dev/cdi-block-volume"), vec![0xffu8; size]).expect("device");
        pod
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }

    fn run(&self, env: &[(&str, &str)]) -> (i32, String) {
        let (code, message, _) = self.run_logged(env, "warn");
        (code, message)
    }

    /// The importer with this pod's mounts, `env` and `RUST_LOG=filter`, not started.
    fn command(&self, env: &[(&str, &str)], filter: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdi-importer"));
        cmd.env_clear()
            .env("CDI_ROOT", self.root.path())
            .env("CDI_METRICS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", filter)
            .envs(env.iter().copied());
        cmd
    }

    /// Runs with `RUST_LOG=filter`; also returns what the importer logged.
    fn run_logged(&self, env: &[(&str, &str)], filter: &str) -> (i32, String, String) {
        let out = self
            .command(env, filter)
            .output()
            .expect("run cdi-importer");
        let message = std::fs::read_to_string(self.path("dev/termination-log")).unwrap_or_default();
        let log = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        (out.status.code().unwrap_or(-1), message, log)
    }
}

fn qcow2_image() -> Qcow2Builder {
    let mut rng = Rng::new(11);
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

fn serve(body: Vec<u8>) -> TestServer {
    TestServer::start(Behaviour {
        body,
        etag: Some("\"x\"".into()),
        ranges: true,
        ..Behaviour::default()
    })
}

fn sha256(data: &[u8]) -> String {
    use std::fmt::Write;
    let out = Command::new("sha256sum")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(c.stdin.as_mut().expect("stdin"), data)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    let mut s = String::new();
    let _ = write!(
        s,
        "{}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
    );
    s
}

const SIZE_1GI_INFLATED: &str = "1138166334";

#[test]
fn http_qcow2_import_writes_the_disk_grown_to_the_usable_size() {
    let b = qcow2_image();
    let srv = serve(b.build());
    let pod = Pod::filesystem();
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file")),
        ("IMPORTER_CONTENTTYPE", "kubevirt"),
        ("IMPORTER_IMAGE_SIZE", SIZE_1GI_INFLATED),
        ("OWNER_UID", "uid-1"),
        ("FILESYSTEM_OVERHEAD", "0.06"),
        ("INSECURE_TLS", "false"),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(
        (code, msg.as_str()),
        (
            0,
            r#"{"preallocationApplied":false,"message":"Import Complete"}"#
        )
    );
    let disk = std::fs::read(pod.path("data/disk.img")).expect("disk.img");
    assert_eq!(
        disk.len(),
        1 << 30,
        "grown to the usable size of the inflated request"
    );
    assert!(disk[..16 << 20] == b.expected_raw()[..]);
    assert!(disk[16 << 20..].iter().all(|&x| x == 0));
}

#[test]
fn http_raw_gz_with_a_valid_checksum_imports() {
    let raw = cdi_testdata::raw::sparse_disk(3, 4 << 20, 65536);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).expect("gz");
    let served = gz.finish().expect("gz");
    let checksum = format!("sha256:{}", sha256(&served));
    let srv = serve(served);
    let pod = Pod::filesystem();
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file")),
        ("IMPORTER_CHECKSUM", &checksum),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(
        (code, msg.as_str()),
        (
            0,
            r#"{"preallocationApplied":false,"message":"Import Complete"}"#
        )
    );
    let disk = std::fs::read(pod.path("data/disk.img")).expect("disk.img");
    assert!(disk[..raw.len()] == raw[..]);
}

/// `qemu-img convert -O format args` of a sparse raw disk: the image, and what `qemu-img
/// convert -O raw` makes of it.
fn qemu_image(format: &str, args: &[&str]) -> (Vec<u8>, Vec<u8>) {
    cdi_testdata::qemu::image_of(
        format,
        args,
        &cdi_testdata::raw::sparse_disk(8, 8 << 20, 65536),
    )
}

#[test]
fn http_vmdk_and_vhdx_with_checksums_import() {
    for (format, args) in [
        ("vmdk", &["-o", "subformat=streamOptimized"][..]),
        ("vhdx", &[][..]),
    ] {
        let (image, raw) = qemu_image(format, args);
        let checksum = format!("sha256:{}", sha256(&image));
        let srv = serve(image);
        let pod = Pod::filesystem();
        let (code, msg) = pod.run(&[
            ("IMPORTER_SOURCE", "http"),
            ("IMPORTER_ENDPOINT", &srv.url("/file")),
            ("IMPORTER_CONTENTTYPE", "kubevirt"),
            ("IMPORTER_IMAGE_SIZE", SIZE_1GI_INFLATED),
            ("FILESYSTEM_OVERHEAD", "0.06"),
            ("IMPORTER_CHECKSUM", &checksum),
            ("PREALLOCATION", "false"),
        ]);
        assert_eq!(
            (code, msg.as_str()),
            (
                0,
                r#"{"preallocationApplied":false,"message":"Import Complete"}"#
            ),
            "{format}"
        );
        let disk = std::fs::read(pod.path("data/disk.img")).expect("disk.img");
        assert_eq!(disk.len(), 1 << 30, "{format}: grown to the usable size");
        assert!(disk[..raw.len()] == raw[..], "{format}: content");
        assert!(disk[raw.len()..].iter().all(|&x| x == 0), "{format}: tail");
    }
}

#[test]
fn http_vmdk_with_a_parent_is_a_terminal_unsupported_image() {
    let (mut image, _) = qemu_image("vmdk", &["-o", "subformat=monolithicSparse"]);
    let at = image
        .windows(18)
        .position(|w| w == b"parentCID=ffffffff")
        .expect("descriptor");
    image[at + 10..at + 18].copy_from_slice(b"0badc0de");
    let srv = serve(image);
    let pod = Pod::filesystem();
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file")),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(code, 1, "{msg}");
    assert!(
        msg.contains("the vmdk depends on a parent image (parentCID=0badc0de)"),
        "{msg}"
    );
    assert!(
        msg.contains(r#""reason":"UnsupportedImage","terminal":true"#),
        "{msg}"
    );
    assert!(!pod.path("data/disk.img").exists());
}

#[test]
fn checksum_mismatch_exits_zero_with_a_terminal_reason_and_no_disk() {
    let srv = serve(qcow2_image().build());
    let pod = Pod::filesystem();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file")),
        ("IMPORTER_CHECKSUM", &wrong),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(code, 0);
    assert!(msg.starts_with(r#"{"preallocationApplied":false,"message":"Unable to process data: checksum mismatch: expected sha256:0000"#), "{msg}");
    assert!(
        msg.ends_with(r#""reason":"ChecksumMismatch","terminal":true}"#),
        "{msg}"
    );
    assert!(!pod.path("data/disk.img").exists());
    assert_eq!(
        std::fs::read_dir(pod.path("data")).expect("data").count(),
        0,
        "no partial file left"
    );
}

#[test]
fn not_found_is_a_terminal_failure_with_upstreams_wording() {
    let srv = serve(vec![1, 2, 3]);
    let pod = Pod::filesystem();
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/missing")),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(code, 1);
    let mut lines = msg.lines();
    let first = lines.next().unwrap_or("");
    assert!(
        first.starts_with(
            "Unable to connect to http data source: HTTP request to http://127.0.0.1:"
        ),
        "{msg}"
    );
    assert!(
        first.ends_with("failed: the server answered 404 Not Found"),
        "{msg}"
    );
    assert_eq!(
        lines.next(),
        Some(r#"{"reason":"NotFound","terminal":true}"#)
    );
}

#[test]
fn image_larger_than_the_volume_is_refused_before_writing() {
    let srv = serve(qcow2_image().build());
    let pod = Pod::filesystem();
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file")),
        ("IMPORTER_IMAGE_SIZE", "8Mi"),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("the image needs 16777216 bytes but the target holds only 8388608"),
        "{msg}"
    );
    assert!(
        msg.ends_with(r#"{"reason":"ImageTooLarge","terminal":true}"#),
        "{msg}"
    );
    assert!(!pod.path("data/disk.img").exists());
}

#[test]
fn blank_disk_is_sparse_and_sized_like_upstream() {
    let pod = Pod::filesystem();
    let env = [
        ("IMPORTER_SOURCE", "none"),
        ("IMPORTER_IMAGE_SIZE", SIZE_1GI_INFLATED),
        ("FILESYSTEM_OVERHEAD", "0.06"),
        ("PREALLOCATION", "false"),
    ];
    let (code, msg) = pod.run(&env);
    assert_eq!(
        (code, msg.as_str()),
        (
            0,
            r#"{"preallocationApplied":false,"message":"Import Complete"}"#
        )
    );
    let meta = std::fs::metadata(pod.path("data/disk.img")).expect("disk.img");
    assert_eq!(meta.len(), 1 << 30);
    assert!(
        cdi_testdata::qemu::allocated_bytes(&pod.path("data/disk.img")) < 1 << 20,
        "sparse"
    );
}

#[test]
fn blank_disk_with_preallocation_is_allocated() {
    let pod = Pod::filesystem();
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "none"),
        ("IMPORTER_IMAGE_SIZE", "64Mi"),
        ("PREALLOCATION", "true"),
    ]);
    assert_eq!(
        (code, msg.as_str()),
        (
            0,
            r#"{"preallocationApplied":true,"message":"Import Complete"}"#
        )
    );
    assert!(cdi_testdata::qemu::allocated_bytes(&pod.path("data/disk.img")) >= 64 << 20);
}

#[test]
fn block_volume_gets_the_image_with_zero_ranges_zeroed() {
    let b = qcow2_image();
    let srv = serve(b.build());
    let pod = Pod::block(20 << 20);
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file")),
        ("FILESYSTEM_OVERHEAD", "0"),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(
        (code, msg.as_str()),
        (
            0,
            r#"{"preallocationApplied":false,"message":"Import Complete"}"#
        )
    );
    let dev = std::fs::read(pod.path("dev/cdi-block-volume")).expect("device");
    assert_eq!(dev.len(), 20 << 20, "a device is never resized");
    assert!(
        dev[..16 << 20] == b.expected_raw()[..],
        "zero ranges were punched, not left as 0xff"
    );
    assert!(
        dev[16 << 20..].iter().all(|&x| x == 0xff),
        "bytes past the image are untouched"
    );
}

/// The log as text, without the terminal colour sequences tracing puts around fields.
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&d| d == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// Upstream's controller sets `CACHE_MODE=TRYNONE` after an OOM kill; the importer then writes
/// with direct I/O where the volume allows it (and says so when it does not).
#[test]
fn cache_mode_trynone_imports_with_direct_io_to_files_and_devices() {
    let b = qcow2_image();
    let srv = serve(b.build());
    for pod in [Pod::filesystem(), Pod::block(16 << 20)] {
        let (code, msg, log) = pod.run_logged(
            &[
                ("IMPORTER_SOURCE", "http"),
                ("IMPORTER_ENDPOINT", &srv.url("/file")),
                ("IMPORTER_IMAGE_SIZE", "16777216"),
                ("FILESYSTEM_OVERHEAD", "0"),
                ("CACHE_MODE", "TRYNONE"),
            ],
            "cdi_datapath=debug,info",
        );
        assert_eq!(
            (code, msg.as_str()),
            (
                0,
                r#"{"preallocationApplied":false,"message":"Import Complete"}"#
            ),
            "{log}"
        );
        let log = without_colours(&log);
        let direct_used = log.lines().any(|l| {
            l.contains("Direct writes finished")
                && l.split_whitespace()
                    .any(|w| w.starts_with("pieces=") && w != "pieces=0")
        });
        let unavailable = log.contains("Direct I/O is not available on this target");
        assert!(
            direct_used || unavailable,
            "no direct I/O outcome logged:\n{log}"
        );
        let target = if pod.path("data").exists() {
            "data/disk.img"
        } else {
            "dev/cdi-block-volume"
        };
        let disk = std::fs::read(pod.path(target)).expect("disk");
        assert!(disk == b.expected_raw(), "{target} differs from the image");
    }
}

fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    build(&mut t);
    let data = t.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &data).expect("gz");
    gz.finish().expect("gz")
}

fn file_header(path: &str, len: usize, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(len as u64);
    h.set_mode(mode);
    h.set_entry_type(tar::EntryType::Regular);
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

#[test]
fn archive_is_unpacked_into_data_keeping_permissions_not_owners() {
    let archive = tar_gz(|t| {
        let mut h = file_header("dir/hello.txt", 5, 0o640);
        h.set_uid(4242);
        h.set_cksum();
        t.append(&h, &b"hello"[..]).expect("append");
        t.append(&file_header("run.sh", 2, 0o4755), &b"#!"[..])
            .expect("append");
    });
    let srv = serve(archive);
    let pod = Pod::filesystem();
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file")),
        ("IMPORTER_CONTENTTYPE", "archive"),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(
        (code, msg.as_str()),
        (
            0,
            r#"{"preallocationApplied":false,"message":"Import Complete"}"#
        )
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let hello = pod.path("data/dir/hello.txt");
    assert_eq!(std::fs::read(&hello).expect("hello"), b"hello");
    assert_eq!(
        std::fs::metadata(&hello)
            .expect("meta")
            .permissions()
            .mode()
            & 0o7777,
        0o640
    );
    assert_ne!(std::fs::metadata(&hello).expect("meta").uid(), 4242);
    assert_eq!(
        std::fs::metadata(pod.path("data/run.sh"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o7777,
        0o755,
        "no set-uid"
    );
    assert!(!pod.path("data/.cdi-archive-partial").exists());
}

fn hostile(name: &str, build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) {
    let srv = serve(tar_gz(build));
    let pod = Pod::filesystem();
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file")),
        ("IMPORTER_CONTENTTYPE", "archive"),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(code, 1, "{name}: {msg}");
    assert!(msg.contains("refusing the archive"), "{name}: {msg}");
    assert!(
        msg.ends_with(r#"{"reason":"InvalidImage","terminal":true}"#),
        "{name}: {msg}"
    );
    let left: Vec<_> = std::fs::read_dir(pod.path("data"))
        .expect("data")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "{name}: nothing may be left in /data, found {left:?}"
    );
    let outside: Vec<_> = std::fs::read_dir(pod.root.path())
        .expect("root")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        outside.len(),
        2,
        "{name}: nothing written beside /data: {outside:?}"
    );
}

fn raw_entry(
    t: &mut tar::Builder<Vec<u8>>,
    name: &[u8],
    kind: tar::EntryType,
    link: Option<&[u8]>,
    data: &[u8],
) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append(&h, data).expect("append");
}

#[test]
fn hostile_archives_are_refused_with_nothing_written_outside_data() {
    hostile("absolute path", |t| {
        raw_entry(t, b"/abs.txt", tar::EntryType::Regular, None, b"x")
    });
    hostile("dot-dot", |t| {
        raw_entry(
            t,
            b"a/../../escape.txt",
            tar::EntryType::Regular,
            None,
            b"x",
        )
    });
    hostile("symlink outside", |t| {
        raw_entry(t, b"link", tar::EntryType::Symlink, Some(b"../../etc"), b"")
    });
    hostile("absolute symlink", |t| {
        raw_entry(t, b"link", tar::EntryType::Symlink, Some(b"/etc"), b"")
    });
    hostile("hard link outside", |t| {
        raw_entry(t, b"hl", tar::EntryType::Link, Some(b"../x"), b"")
    });
    hostile("device node", |t| {
        raw_entry(t, b"dev", tar::EntryType::Char, None, b"")
    });
    hostile("fifo", |t| {
        raw_entry(t, b"fifo", tar::EntryType::Fifo, None, b"")
    });
    hostile("write through an earlier symlink", |t| {
        raw_entry(t, b"d", tar::EntryType::Symlink, Some(b"."), b"");
        raw_entry(t, b"d/x.txt", tar::EntryType::Regular, None, b"x");
    });
}

#[test]
fn archive_on_a_block_volume_is_refused() {
    let srv = serve(tar_gz(|t| {
        t.append(&file_header("a", 1, 0o644), &b"a"[..])
            .expect("append")
    }));
    let pod = Pod::block(1 << 20);
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file")),
        ("IMPORTER_CONTENTTYPE", "archive"),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("archive content needs a Filesystem volume"),
        "{msg}"
    );
}

#[test]
fn invalid_environment_exits_1_naming_the_variable() {
    let pod = Pod::filesystem();
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", "http://x/"),
        ("PREALLOCATION", "sometimes"),
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        msg,
        "Unable to process data: invalid PREALLOCATION: \"sometimes\" is not true or false\n{\"reason\":\"InvalidConfiguration\",\"terminal\":true}"
    );
    let (code, msg) = pod.run(&[("IMPORTER_SOURCE", "vddk")]);
    assert_eq!(code, 1);
    assert!(
        msg.contains(
            "invalid IMPORTER_SOURCE: source \"vddk\" is not supported by this importer yet"
        ),
        "{msg}"
    );
    let (code, msg) = pod.run(&[("IMPORTER_SOURCE", "registry")]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("invalid IMPORTER_ENDPOINT: is required for the registry source"),
        "{msg}"
    );
}

#[test]
fn metrics_report_progress_over_https_while_importing() {
    let raw = cdi_testdata::raw::sparse_disk(4, 8 << 20, 65536);
    let srv = TestServer::start(Behaviour {
        body: raw,
        ranges: true,
        etag: Some("\"m\"".into()),
        stall_at: Some((4 << 20, std::time::Duration::from_secs(3))),
        ..Behaviour::default()
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let pod = Pod::filesystem();
    let root = pod.root.path().to_path_buf();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cdi-importer"))
        .env_clear()
        .env("CDI_ROOT", &root)
        .env("CDI_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("IMPORTER_SOURCE", "http")
        .env("IMPORTER_ENDPOINT", srv.url("/file"))
        .env("OWNER_UID", "dv-uid-7")
        .env("PREALLOCATION", "false")
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{port}/metrics")])
        .output()
        .expect("curl (apt-get install curl)");
    let _ = child.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("kubevirt_cdi_import_progress_total{ownerUID=\"dv-uid-7\"}"))
        .unwrap_or_else(|| panic!("no progress metric in {text:?}"));
    let pct: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("value");
    assert!(
        pct > 10.0 && pct < 100.0,
        "mid-import progress {pct} from {line}"
    );
    assert!(text.contains("# TYPE kubevirt_cdi_import_progress_total counter"));
    assert!(Path::new(&root.join("data/disk.img")).exists());
}

fn tls_server() -> (TestServer, String, Vec<u8>) {
    let raw = cdi_testdata::raw::sparse_disk(9, 2 << 20, 65536);
    let (srv, ca) = TestServer::start_tls(Behaviour {
        body: raw.clone(),
        ..Behaviour::default()
    });
    (srv, ca, raw)
}

#[test]
fn https_with_the_ca_from_the_cert_dir_imports() {
    let (srv, ca, raw) = tls_server();
    let pod = Pod::filesystem();
    std::fs::create_dir_all(pod.path("certs")).expect("certs");
    std::fs::write(pod.path("certs/ca.pem"), ca).expect("ca");
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file")),
        ("IMPORTER_CERT_DIR", "/certs"),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(
        (code, msg.as_str()),
        (
            0,
            r#"{"preallocationApplied":false,"message":"Import Complete"}"#
        )
    );
    assert!(std::fs::read(pod.path("data/disk.img")).expect("disk") == raw);
}

#[test]
fn https_with_an_unknown_ca_is_a_terminal_tls_failure() {
    let (srv, _ca, _) = tls_server();
    let pod = Pod::filesystem();
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file")),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(code, 1);
    assert!(msg.contains("TLS verification failed"), "{msg}");
    assert!(
        msg.ends_with(r#"{"reason":"Unauthorized","terminal":true}"#),
        "{msg}"
    );
    assert_eq!(srv.seen().requests, 0, "no request went through");
}

#[test]
fn https_with_insecure_tls_skips_verification() {
    let (srv, _ca, raw) = tls_server();
    let pod = Pod::filesystem();
    let (code, _) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file")),
        ("INSECURE_TLS", "true"),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(code, 0);
    assert!(std::fs::read(pod.path("data/disk.img")).expect("disk") == raw);
}

#[test]
fn http_proxy_from_the_environment_is_used() {
    let raw = cdi_testdata::raw::sparse_disk(12, 1 << 20, 65536);
    let proxy = serve(raw.clone());
    let pod = Pod::filesystem();
    let proxy_url = format!("http://{}", proxy.addr);
    let (code, msg) = pod.run(&[
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", "http://images.example.invalid/file"),
        ("http_proxy", &proxy_url),
        ("no_proxy", ""),
        ("PREALLOCATION", "false"),
    ]);
    assert_eq!(
        (code, msg.as_str()),
        (
            0,
            r#"{"preallocationApplied":false,"message":"Import Complete"}"#
        )
    );
    assert_eq!(proxy.seen().proxied, 1);
    assert!(std::fs::read(pod.path("data/disk.img")).expect("disk") == raw);
}

/// The environment upstream's controller gives an importer pod for `source` at `endpoint`.
fn source_env<'a>(source: &'a str, endpoint: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("IMPORTER_SOURCE", source),
        ("IMPORTER_ENDPOINT", endpoint),
        ("IMPORTER_CONTENTTYPE", "kubevirt"),
        ("IMPORTER_IMAGE_SIZE", "64Mi"),
        ("OWNER_UID", "uid-1"),
        ("FILESYSTEM_OVERHEAD", "0"),
        ("INSECURE_TLS", "false"),
        ("PREALLOCATION", "false"),
        ("IMPORTER_PULL_METHOD", ""),
        ("IMPORTER_REGISTRY_IMAGE_ARCHITECTURE", ""),
    ]
}

const COMPLETE: &str = r#"{"preallocationApplied":false,"message":"Import Complete"}"#;

fn assert_disk(pod: &Pod, expected: &[u8]) {
    let disk = std::fs::read(pod.path("data/disk.img")).expect("disk.img");
    assert!(disk[..expected.len()] == expected[..], "the disk differs");
}

#[test]
fn s3_objects_import_with_the_secrets_keys_and_wrong_keys_are_terminal() {
    let s3 = cdi_testdata::objectstore::S3Server::start(true);
    let b = qcow2_image();
    s3.put("images", "fedora.qcow2", &b.build(), None);
    let url = format!("{}/images/fedora.qcow2", s3.endpoint());
    let pod = Pod::filesystem();
    let mut env = source_env("s3", &url);
    env.extend([
        ("IMPORTER_ACCESS_KEY_ID", s3.key_id.as_str()),
        ("IMPORTER_SECRET_KEY", s3.secret.as_str()),
    ]);
    assert_eq!(pod.run(&env), (0, COMPLETE.to_owned()), "{}", s3.log());
    assert_disk(&pod, &b.expected_raw());

    let pod = Pod::filesystem();
    let mut env = source_env("s3", &url);
    env.extend([
        ("IMPORTER_ACCESS_KEY_ID", s3.key_id.as_str()),
        ("IMPORTER_SECRET_KEY", "wrong"),
    ]);
    let (code, msg) = pod.run(&env);
    assert_eq!(code, 1);
    assert!(
        msg.starts_with("Unable to connect to s3 data source: "),
        "{msg}"
    );
    assert!(
        msg.ends_with(r#"{"reason":"Unauthorized","terminal":true}"#),
        "{msg}"
    );
    assert!(!pod.path("data/disk.img").exists());
}

#[test]
fn gcs_objects_import_with_the_mounted_service_account_key() {
    let gcs = cdi_testdata::objectstore::GcsEmulator::start();
    let b = qcow2_image();
    gcs.put("images", "fedora.qcow2", &b.build());
    let pod = Pod::filesystem();
    std::fs::create_dir_all(pod.path("google")).expect("google");
    let key = cdi_testdata::objectstore::service_account_key(&pod.path("google"), &gcs.endpoint());
    assert_eq!(key, pod.path("google/credentials.json"));
    let mut env = source_env("gcs", "gs://images/fedora.qcow2");
    env.push(("GOOGLE_APPLICATION_CREDENTIALS", "/google/credentials.json"));
    assert_eq!(pod.run(&env), (0, COMPLETE.to_owned()), "{}", gcs.log());
    assert_disk(&pod, &b.expected_raw());
    let (code, msg) = Pod::filesystem().run(&source_env(
        "gcs",
        &format!("{}/images/nope", gcs.endpoint()),
    ));
    assert_eq!(code, 1);
    assert!(
        msg.starts_with("Unable to connect to gcs data source: "),
        "{msg}"
    );
    assert!(
        msg.ends_with(r#"{"reason":"NotFound","terminal":true}"#),
        "{msg}"
    );
}

#[test]
fn registry_images_import_with_the_ca_and_credentials_of_the_data_volume() {
    use cdi_testdata::registry::{Compression, RegistryConfig, RegistryServer, image, layer};
    let registry = RegistryServer::start(RegistryConfig {
        tls: true,
        auth: true,
    });
    let b = qcow2_image();
    let disk = b.build();
    registry.push(
        "disks/fedora",
        "42",
        &image(
            vec![layer(&[("disk/fedora.qcow2", &disk)], Compression::Gzip)],
            &[],
            "amd64",
        ),
    );
    let url = format!("docker://{}/disks/fedora:42", registry.host());
    let pod = Pod::filesystem();
    std::fs::create_dir_all(pod.path("certs")).expect("certs");
    std::fs::write(
        pod.path("certs/ca.pem"),
        registry.ca_pem.as_deref().expect("CA"),
    )
    .expect("CA");
    let (user, password) = registry.credentials.clone().expect("credentials");
    let mut env = source_env("registry", &url);
    env.extend([
        ("IMPORTER_CERT_DIR", "/certs"),
        ("IMPORTER_ACCESS_KEY_ID", user.as_str()),
        ("IMPORTER_SECRET_KEY", password.as_str()),
    ]);
    assert_eq!(
        pod.run(&env),
        (0, COMPLETE.to_owned()),
        "{}",
        registry.log()
    );
    assert_disk(&pod, &b.expected_raw());
    // No secret: the registry refuses, and that is terminal.
    let pod = Pod::filesystem();
    std::fs::create_dir_all(pod.path("certs")).expect("certs");
    std::fs::write(
        pod.path("certs/ca.pem"),
        registry.ca_pem.as_deref().expect("CA"),
    )
    .expect("CA");
    let mut env = source_env("registry", &url);
    env.push(("IMPORTER_CERT_DIR", "/certs"));
    let (code, msg) = pod.run(&env);
    assert_eq!(code, 1);
    assert!(
        msg.starts_with("Unable to connect to registry data source: "),
        "{msg}"
    );
    assert!(
        msg.ends_with(r#"{"reason":"Unauthorized","terminal":true}"#),
        "{msg}"
    );
}

#[test]
fn node_pull_imports_what_the_image_container_serves_and_releases_it() {
    let b = qcow2_image();
    let pod = Pod::filesystem();
    // The image's container: its /disk, and the volume it shares with the importer.
    let image = tempfile::tempdir().expect("image");
    std::fs::create_dir_all(image.path().join("disk")).expect("disk");
    std::fs::write(image.path().join("disk/fedora.qcow2"), b.build()).expect("disk file");
    std::fs::create_dir_all(pod.path("shared")).expect("shared");
    // The init container's copy, then the server as the image's container runs it.
    let server_bin = pod.path("shared/server");
    let status = Command::new(env!("CARGO_BIN_EXE_cdi-containerimage-server"))
        .arg("--install")
        .arg(&server_bin)
        .status()
        .expect("install");
    assert!(status.success());
    let port = cdi_testdata::uploadpod::free_port().to_string();
    let mut server = Command::new(&server_bin)
        .args(["-p", &port, "-image-dir"])
        .arg(image.path().join("disk"))
        .arg("-ready-file")
        .arg(pod.path("shared/ready"))
        .arg("-done-file")
        .arg(pod.path("shared/done"))
        .spawn()
        .expect("server");
    let mut env = source_env("registry", "docker://quay.io/containerdisks/fedora:42");
    env.extend([
        ("IMPORTER_PULL_METHOD", "node"),
        ("IMPORTER_READY_FILE", "/shared/ready"),
        ("IMPORTER_DONE_FILE", "/shared/done"),
        ("CDI_IMAGE_SERVER_PORT", port.as_str()),
    ]);
    env.retain(|(k, v)| !(*k == "IMPORTER_PULL_METHOD" && v.is_empty()));
    assert_eq!(pod.run(&env), (0, COMPLETE.to_owned()));
    assert_disk(&pod, &b.expected_raw());
    assert!(pod.path("shared/done").exists());
    // The done file ends the server.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = server.try_wait().expect("wait") {
            assert!(status.success());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The importer killed (SIGKILL: no cleanup at all) at several points of a download, then run
/// again as the pod's restart would: a killed run never leaves a `disk.img` or a success
/// message, and the next run imports the image whole.
#[test]
fn an_importer_killed_mid_import_leaves_nothing_complete_and_its_restart_finishes() {
    let b = qcow2_image();
    let image = b.build();
    let len = image.len() as u64;
    let srv = serve(image);
    let pod = Pod::filesystem();
    let env = [
        ("IMPORTER_SOURCE", "http"),
        ("IMPORTER_ENDPOINT", &srv.url("/file") as &str),
        ("IMPORTER_CONTENTTYPE", "kubevirt"),
        ("PREALLOCATION", "false"),
    ];
    for at in [len / 10, len / 2, len * 9 / 10] {
        // The server stops sending at `at`; the importer is killed while it waits.
        srv.behaviour.lock().expect("behaviour").stall_at =
            Some((at, std::time::Duration::from_secs(20)));
        let mut child = pod
            .command(&env, "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start cdi-importer");
        // Killed once it has written something (or after 5 s in any case).
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(5) {
            let written: u64 = std::fs::read_dir(pod.path("data"))
                .expect("data")
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum();
            if written > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "killed at {at}");
        assert!(
            !pod.path("data/disk.img").exists(),
            "a killed import left a disk.img (killed at {at} of {len})"
        );
        let message = std::fs::read_to_string(pod.path("dev/termination-log")).unwrap_or_default();
        assert!(!message.contains("Import Complete"), "{message}");
    }
    srv.behaviour.lock().expect("behaviour").stall_at = None;
    let (code, msg) = pod.run(&env);
    assert_eq!(
        (code, msg.as_str()),
        (
            0,
            r#"{"preallocationApplied":false,"message":"Import Complete"}"#
        )
    );
    let disk = std::fs::read(pod.path("data/disk.img")).expect("disk.img");
    assert!(disk[..16 << 20] == b.expected_raw()[..]);
    let left: Vec<String> = std::fs::read_dir(pod.path("data"))
        .expect("data")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["disk.img"], "no partial file left behind");
}
