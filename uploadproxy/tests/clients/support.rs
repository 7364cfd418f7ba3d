//! What the client tests share: the images they upload, where the relay cuts, and the tools
//! they run (each one missing fails the test with what to install).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use cdi_testdata::qcow2::{Cluster, Qcow2Builder};
use cdi_testdata::raw::{Rng, sparse_disk, text};
use sha2::{Digest, Sha256};

/// The workspace's root (tools' relative paths in messages are from there).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The seed of this test's random choices: `CDI_TEST_SEED` if set, else the clock; printed
/// so that a failure can be repeated.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("CDI_TEST_SEED") {
        Ok(value) => value.parse().expect("CDI_TEST_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    };
    println!("{test}: seed {seed} (CDI_TEST_SEED={seed} repeats it)");
    seed
}

/// An image to upload: the file's bytes and the raw disk they must become.
pub struct Image {
    pub file: Vec<u8>,
    pub raw: Vec<u8>,
}

impl Image {
    /// A 12 MiB qcow2 with compressed, plain and unallocated 64 KiB clusters (about 6 MiB
    /// of file).
    pub fn qcow2(rng: &mut Rng) -> Image {
        let mut b = Qcow2Builder::new(16, 12 << 20);
        for guest in 0..192u64 {
            match rng.below(4) {
                0 => {
                    b.clusters
                        .insert(guest, Cluster::Compressed(text(rng, 65536)));
                }
                1 | 2 => {
                    let mut data = vec![0u8; 65536];
                    rng.fill(&mut data);
                    b.clusters.insert(guest, Cluster::Data(data));
                }
                _ => {}
            }
        }
        Image {
            file: b.build(),
            raw: b.expected_raw(),
        }
    }

    /// A gzip'd sparse raw disk of `mib` MiB (data in 64 KiB granules, half of them holes).
    pub fn gzip_raw(seed: u64, mib: usize) -> Image {
        let raw = sparse_disk(seed, mib << 20, 65536);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).expect("gzip");
        Image {
            file: gz.finish().expect("gzip"),
            raw,
        }
    }

    /// Writes the file under `dir` as `name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.file).expect("write the image file");
        path
    }

    /// `sha256:<hex>` of the file, as the server reports it.
    pub fn sha256(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(&self.file)))
    }
}

/// `count` offsets in client→server bytes for [`cdi_testdata::relay::Relay::cut_at_totals`]:
/// one at random in each of `count` equal slots between 64 KiB (past the handshakes and the
/// creation request) and 85% of `len` (so every cut falls inside the upload), at least a
/// quarter slot apart.
pub fn cut_offsets(rng: &mut Rng, len: u64, count: u64) -> Vec<u64> {
    let start = 64 << 10;
    let end = len * 85 / 100;
    assert!(
        end > start + count * 4096,
        "an image of {len} bytes is too small"
    );
    let slot = (end - start) / count;
    (0..count)
        .map(|i| start + i * slot + rng.below(slot * 3 / 4))
        .collect()
}

/// Fails the test with `install` when `check` does not run successfully.
fn require(what: &str, check: &mut Command, install: &str) {
    let ok = check.output().is_ok_and(|out| out.status.success());
    require_that(what, ok, install);
}

fn require_that(what: &str, ok: bool, install: &str) {
    assert!(
        ok,
        "{what} is needed for this test and is missing; install it with: {install} \
         (from the workspace root; .ci/run does this)"
    );
}

/// python3 with tuspy 1.1.0.
pub fn require_tuspy() {
    require(
        "python3",
        Command::new("python3").arg("--version"),
        "apt-get install python3 python3-pip",
    );
    require(
        "tuspy 1.1.0",
        Command::new("python3").args([
            "-c",
            "import importlib.metadata as m, tusclient; assert m.version('tuspy') == '1.1.0'",
        ]),
        "python3 -m pip install tuspy==1.1.0",
    );
}

/// The Chromium that drive.mjs launches.
pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// node, playwright-core for drive.mjs, tus-js-client for the page, and Chromium.
pub fn require_browser() {
    require(
        "node",
        Command::new("node").arg("--version"),
        "apt-get install nodejs npm",
    );
    let root = workspace_root();
    let browser = root.join("uploadproxy/tests/browser");
    require_that(
        "uploadproxy/tests/browser/drive.mjs",
        browser.join("drive.mjs").is_file(),
        "git checkout uploadproxy/tests/browser",
    );
    require_that(
        "playwright-core (for uploadproxy/tests/browser/drive.mjs)",
        browser.join("node_modules/playwright-core").is_dir(),
        "npm ci --prefix uploadproxy/tests/browser",
    );
    require_that(
        "tus-js-client (for the page in uploadproxy/page)",
        root.join("uploadproxy/page/node_modules/tus-js-client")
            .is_dir(),
        "npm ci --prefix uploadproxy/page",
    );
    require(
        "chromium",
        Command::new(chromium()).arg("--version"),
        "apt-get install chromium (or set CHROMIUM to its path)",
    );
}

/// Where screenshots go: under the target directory, kept after the run.
pub fn screenshot_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("uploadproxy-clients");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir.join(format!("{name}.png"))
}

/// Asserts `path` is a PNG of a plausible size for a page (not blank, not truncated).
pub fn assert_png(path: &Path) {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("the screenshot {} is missing: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    // The IHDR chunk: width and height, big-endian, after the 8-byte magic and 8 bytes of
    // chunk length and type.
    let width = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let height = u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes"));
    assert!(
        width >= 400 && height >= 300 && bytes.len() > 8 << 10,
        "{} is {width}x{height}, {} bytes: not a page",
        path.display(),
        bytes.len()
    );
    println!("screenshot: {} ({width}x{height})", path.display());
}
