//! `cdi-cloner` against the real `cdi-uploadserver` in clone mode, both as processes on
//! 127.0.0.1 with certificates from `cdi_testdata::pki`: every pair of volume modes (a block
//! device emulated by a regular file at CDI's device path, as the upload server's own tests
//! do), resumes after a cut connection and after a restarted cloner, and each way a clone must
//! fail without leaving anything that looks complete.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cdi_testdata::raw::sparse_disk;
use cdi_testdata::relay::Relay;
use cdi_testdata::uploadpod::UploadPod;
use cdi_testdata::workspace::workspace_binary;

/// The source disk: 24 MiB, about half of it holes or zero granules.
const SIZE: usize = 24 << 20;
const GRANULE: usize = 4096;
/// How long a clone may take.
const CLONE_WITHIN: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Filesystem,
    Block,
}

/// The cloner pod's mounts: the source volume under `CDI_ROOT`.
struct SourcePod {
    root: tempfile::TempDir,
    mode: Mode,
    /// Where the cloner serves its metrics.
    metrics_port: u16,
}

impl SourcePod {
    /// A source volume holding `disk` sparsely: only non-zero granules are written.
    fn new(mode: Mode, disk: &[u8]) -> SourcePod {
        let root = tempfile::tempdir().expect("tempdir");
        let pod = SourcePod {
            root,
            mode,
            metrics_port: cdi_testdata::uploadpod::free_port(),
        };
        std::fs::create_dir_all(pod.source().parent().expect("parent")).expect("mount");
        std::fs::create_dir_all(pod.root.path().join("dev")).expect("dev");
        write_sparse(&pod.source(), disk);
        pod
    }

    fn mount_point(&self) -> &'static str {
        match self.mode {
            Mode::Filesystem => "/var/run/cdi/clone/source",
            Mode::Block => "/dev/cdi-block-volume",
        }
    }

    fn source(&self) -> PathBuf {
        let mount = self
            .root
            .path()
            .join(self.mount_point().trim_start_matches('/'));
        match self.mode {
            Mode::Filesystem => mount.join("disk.img"),
            Mode::Block => mount,
        }
    }

    fn termination(&self) -> String {
        std::fs::read_to_string(self.root.path().join("dev/termination-log")).unwrap_or_default()
    }

    /// Starts `cdi-cloner` with upstream's environment, sending to `url`.
    fn start(&self, server: &UploadPod, url: &str) -> Child {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.root.path().join("cloner.log"))
            .expect("log");
        Command::new(env!("CARGO_BIN_EXE_cdi-cloner"))
            .env_clear()
            .env("CDI_ROOT", self.root.path())
            .env(
                "CDI_METRICS_ADDR",
                format!("127.0.0.1:{}", self.metrics_port),
            )
            .env("RUST_LOG", "info")
            .env("UPLOAD_URL", format!("{url}/v1beta1/upload"))
            .env("CLIENT_CERT", &server.client().cert_pem)
            .env("CLIENT_KEY", &server.client().key_pem)
            .env("SERVER_CA_CERT", &server.server_ca().pem)
            .env("OWNER_UID", "target-claim-uid")
            .env(
                "VOLUME_MODE",
                match self.mode {
                    Mode::Filesystem => "filesystem",
                    Mode::Block => "block",
                },
            )
            .env("MOUNT_POINT", self.mount_point())
            .env("PREALLOCATION", "false")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start cdi-cloner")
    }

    /// Runs the cloner to its end: its exit code and termination message.
    fn run(&self, server: &UploadPod, url: &str) -> (i32, String) {
        let mut child = self.start(server, url);
        let code = wait(&mut child, CLONE_WITHIN, || self.log());
        (code, self.termination())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("cloner.log")).unwrap_or_default()
    }
}

fn wait(child: &mut Child, within: Duration, log: impl Fn() -> String) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cdi-cloner did not finish:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the clone through `relay` has sent `bytes`.
fn wait_forwarded(relay: &Relay, bytes: u64, source: &SourcePod) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.forwarded() < bytes {
        assert!(
            Instant::now() < deadline,
            "the clone did not start:\n{}",
            source.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `disk` to `path` leaving every zero granule a hole.
fn write_sparse(path: &Path, disk: &[u8]) {
    let f = std::fs::File::create(path).expect("create");
    f.set_len(disk.len() as u64).expect("size");
    for (i, g) in disk.chunks(GRANULE).enumerate() {
        if g.iter().any(|&b| b != 0) {
            f.write_all_at(g, (i * GRANULE) as u64).expect("write");
        }
    }
}

fn disk(seed: u64) -> Vec<u8> {
    sparse_disk(seed, SIZE, 64 << 10)
}

/// An upload pod in clone mode writing to `mode`'s target (a block target is a regular file
/// of `block_size` bytes at CDI's device path).
fn target(mode: Mode, image_size: &str, block_size: u64, extra: &[(&str, &str)]) -> UploadPod {
    let mut b = UploadPod::builder(workspace_binary("cdi-uploadserver", "cdi-uploadserver"))
        .image_size(image_size)
        .env("CONTENT_TYPE", "clone")
        .envs(extra);
    if mode == Mode::Block {
        b = b.env("DESTINATION", "/dev/cdi-block-volume");
    }
    let pod = b.start();
    if mode == Mode::Block {
        let f = std::fs::File::create(pod.path("dev/cdi-block-volume")).expect("device");
        f.set_len(block_size).expect("device size");
    }
    pod
}

fn target_path(pod: &UploadPod, mode: Mode) -> PathBuf {
    match mode {
        Mode::Filesystem => pod.path("data/disk.img"),
        Mode::Block => pod.path("dev/cdi-block-volume"),
    }
}

fn url(pod: &UploadPod) -> String {
    format!("https://127.0.0.1:{}", pod.port())
}

/// Bytes of `path` that are data rather than holes, by its extents (`SEEK_DATA`/`SEEK_HOLE`;
/// block counts would include the filesystem's extent-tree blocks, which differ with the order
/// of writes).
fn data_bytes(path: &Path) -> u64 {
    use cdi_datapath::clone::{CloneSource, SourceKind};
    let file = CloneSource::open(path, SourceKind::File).expect("open");
    let (mut pos, mut total) = (0, 0);
    while let Some((start, end)) = file.next_extent(pos).expect("extent") {
        total += end - start;
        pos = end;
    }
    total
}

/// Clones `from` to `to` and checks the target is the source, byte for byte and hole for hole.
fn clone_between(from: Mode, to: Mode, seed: u64) {
    let data = disk(seed);
    let source = SourcePod::new(from, &data);
    let mut server = target(to, "64Mi", SIZE as u64, &[]);
    let (code, message) = source.run(&server, &url(&server));
    assert_eq!(code, 0, "cloner failed: {message}\n{}", source.log());
    assert!(message.contains("Clone Complete"), "{message}");
    let (code, server_message) = server.wait();
    assert_eq!(code, 0, "{server_message}\n{}", server.log());
    assert!(
        server_message.contains("Clone Complete"),
        "{server_message}"
    );
    let target = target_path(&server, to);
    let copied = std::fs::read(&target).expect("target");
    assert_eq!(copied.len(), SIZE, "the target has the source's size");
    assert!(copied == data, "the target differs from the source");
    let (src, dst) = (data_bytes(&source.source()), data_bytes(&target));
    assert!(
        dst <= src,
        "the target has {dst} bytes of data, the source {src}: holes were filled"
    );
    assert!(
        src < SIZE as u64 * 3 / 4,
        "the source is sparse ({src} bytes of data)"
    );
}

#[test]
fn filesystem_to_filesystem_is_identical_and_as_sparse() {
    clone_between(Mode::Filesystem, Mode::Filesystem, 1);
}

#[test]
fn filesystem_to_block_is_identical_and_as_sparse() {
    clone_between(Mode::Filesystem, Mode::Block, 2);
}

#[test]
fn block_to_filesystem_is_identical_and_as_sparse() {
    clone_between(Mode::Block, Mode::Filesystem, 3);
}

#[test]
fn block_to_block_is_identical_and_as_sparse() {
    clone_between(Mode::Block, Mode::Block, 4);
}

#[test]
fn a_connection_cut_mid_copy_resumes_and_ends_identical() {
    let data = disk(5);
    let source = SourcePod::new(Mode::Filesystem, &data);
    let mut server = target(Mode::Filesystem, "64Mi", 0, &[]);
    let relay = Relay::start(server.port());
    relay.cut_at_totals(&[3 << 20, 7 << 20]);
    let (code, message) = source.run(&server, &relay.url());
    assert_eq!(code, 0, "{message}\n{}", source.log());
    assert_eq!(relay.cuts(), 2, "both cuts fell inside the clone");
    assert!(
        source.log().contains("Resuming the stream"),
        "{}",
        source.log()
    );
    let (code, _) = server.wait();
    assert_eq!(code, 0, "{}", server.log());
    assert!(
        server.image() == data,
        "the resumed clone differs from the source"
    );
}

#[test]
fn a_killed_cloner_restarted_resumes_where_the_server_stood() {
    let data = disk(6);
    let source = SourcePod::new(Mode::Block, &data);
    let mut server = target(Mode::Filesystem, "64Mi", 0, &[]);
    let relay = Relay::start(server.port());
    relay.limit_rate(Some(4 << 20));
    let mut first = source.start(&server, &relay.url());
    wait_forwarded(&relay, 4 << 20, &source);
    // Both ends report progress while the clone runs.
    let cloner = metric(
        &format!("https://127.0.0.1:{}/metrics", source.metrics_port),
        None,
        "kubevirt_cdi_clone_progress_total{ownerUID=\"target-claim-uid\"}",
    );
    assert!(cloner > 0.0 && cloner < 100.0, "cloner progress {cloner}");
    let uploaded = metric(
        &format!("{}/metrics", url(&server)),
        Some(&server),
        "kubevirt_cdi_upload_progress_total",
    );
    assert!(
        uploaded > 0.0 && uploaded < 100.0,
        "server progress {uploaded}"
    );
    first.kill().expect("kill the cloner");
    first.wait().expect("reap");
    relay.limit_rate(None);
    let (code, message) = source.run(&server, &relay.url());
    assert_eq!(code, 0, "{message}\n{}", source.log());
    assert!(
        source
            .log()
            .contains("Resuming the upload this clone began"),
        "the second cloner started over:\n{}",
        source.log()
    );
    let (code, _) = server.wait();
    assert_eq!(code, 0, "{}", server.log());
    assert!(
        server.image() == data,
        "the resumed clone differs from the source"
    );
}

/// The value of the metric line starting with `name` at `url` (the cloner's self-signed
/// endpoint, or with `server`'s CA and client certificate).
fn metric(url: &str, server: Option<&UploadPod>, name: &str) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let text = rt.block_on(async {
        let b = reqwest::Client::builder();
        let b = match server {
            Some(pod) => b
                .tls_certs_only([
                    reqwest::Certificate::from_pem(pod.server_ca().pem.as_bytes()).expect("ca"),
                ])
                .identity(
                    reqwest::Identity::from_pem(pod.client().identity_pem().as_bytes())
                        .expect("identity"),
                ),
            None => b.tls_danger_accept_invalid_certs(true),
        };
        let client = b.build().expect("client");
        let r = client.get(url).send().await.expect("metrics answer");
        r.text().await.expect("metrics text")
    });
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// The clone stream of `path`, made by the cloner's own producer.
fn stream_of(path: &Path) -> Vec<u8> {
    use cdi_datapath::clone::{Checkpoint, CloneSource, Producer, SourceKind};
    let source = std::sync::Arc::new(CloneSource::open(path, SourceKind::File).expect("open"));
    let mut p = Producer::new(std::sync::Arc::clone(&source), Checkpoint::start(&source));
    let mut out = Vec::new();
    while let Some(piece) = p.next_piece().expect("piece") {
        out.extend_from_slice(&piece);
    }
    out
}

fn post(server: &UploadPod, body: Vec<u8>, identity: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(server.server_ca().pem.as_bytes()).expect("ca"),
            ])
            .identity(reqwest::Identity::from_pem(identity.as_bytes()).expect("identity"))
            .build()
            .expect("client");
        let r = client
            .post(format!("{}/v1beta1/upload", url(server)))
            .body(body)
            .send()
            .await
            .expect("answer");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    })
}

#[test]
fn a_corrupted_frame_fails_the_digest_and_leaves_no_image() {
    let data = disk(7);
    let source = SourcePod::new(Mode::Filesystem, &data);
    let mut stream = stream_of(&source.source());
    let middle = stream.len() / 2;
    stream[middle] ^= 0x01;
    let mut server = target(Mode::Filesystem, "64Mi", 0, &[]);
    let (status, text) = post(&server, stream, &server.client().identity_pem());
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("digest does not match"), "{text}");
    assert!(
        server.running(),
        "a failed clone leaves the server waiting for another"
    );
    server.assert_no_image();
}

#[test]
fn a_plain_post_of_a_whole_stream_clones_too() {
    let data = disk(8);
    let source = SourcePod::new(Mode::Filesystem, &data);
    let stream = stream_of(&source.source());
    let mut server = target(Mode::Filesystem, "64Mi", 0, &[]);
    let (status, text) = post(&server, stream, &server.client().identity_pem());
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Clone Complete"), "{text}");
    let (code, message) = server.wait();
    assert_eq!(
        (code, message.contains("Clone Complete")),
        (0, true),
        "{message}"
    );
    assert!(server.image() == data);
}

#[test]
fn a_target_smaller_than_the_source_is_refused_before_writing() {
    let data = disk(9);
    let source = SourcePod::new(Mode::Filesystem, &data);
    let server = target(Mode::Filesystem, "8Mi", 0, &[]);
    let (code, message) = source.run(&server, &url(&server));
    assert_ne!(code, 0, "{message}");
    assert!(
        message.contains("larger than the reported available storage")
            && message.contains(&format!("needs {SIZE} bytes")),
        "{message}"
    );
    assert!(
        message.contains("\"reason\":\"ImageTooLarge\",\"terminal\":true"),
        "{message}"
    );
    server.assert_no_image();

    let block = target(Mode::Block, "64Mi", 8 << 20, &[]);
    let (code, message) = source.run(&block, &url(&block));
    assert_ne!(code, 0, "{message}");
    assert!(message.contains("ImageTooLarge"), "{message}");
    let device = std::fs::read(block.path("dev/cdi-block-volume")).expect("device");
    assert!(device.iter().all(|&b| b == 0), "the device was written to");
}

#[test]
fn a_source_changed_mid_clone_fails_and_the_partial_copy_is_discarded() {
    let data = disk(10);
    let source = SourcePod::new(Mode::Filesystem, &data);
    let server = target(Mode::Filesystem, "64Mi", 0, &[]);
    let relay = Relay::start(server.port());
    relay.limit_rate(Some(4 << 20));
    let mut child = source.start(&server, &relay.url());
    wait_forwarded(&relay, 1 << 20, &source);
    std::fs::File::options()
        .write(true)
        .open(source.source())
        .expect("open source")
        .write_all_at(b"a VM wrote this", 20 << 20)
        .expect("write");
    relay.limit_rate(None);
    let code = wait(&mut child, CLONE_WITHIN, || source.log());
    let message = source.termination();
    assert_ne!(code, 0, "{message}");
    assert!(
        message.contains("changed while it was being cloned"),
        "{message}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(server.path("data"))
        .expect("data")
        .count()
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "the partial copy stayed:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_client_certificate_with_another_name_is_refused() {
    let data = disk(11);
    let source = SourcePod::new(Mode::Filesystem, &data);
    let mut server = target(
        Mode::Filesystem,
        "64Mi",
        0,
        &[("CLIENT_NAME", "src-ns/src-claim-tgt-ns/tgt-claim")],
    );
    let (code, message) = source.run(&server, &url(&server));
    assert_ne!(code, 0, "{message}");
    assert!(message.contains("401"), "{message}");
    assert!(
        message.contains("\"reason\":\"Unauthorized\",\"terminal\":true"),
        "{message}"
    );
    assert!(server.running());
    server.assert_no_image();
}
