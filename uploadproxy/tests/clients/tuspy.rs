//! tuspy (PyPI `tuspy` 1.1.0) through the proxy, with its own retries.

use std::path::Path;
use std::process::Command;

use cdi_testdata::raw::Rng;

use crate::stack::Stack;
use crate::support::{Image, cut_offsets, require_tuspy, seed};

#[test]
fn tuspy_upload_through_the_proxy_resumes_after_cuts_at_random_offsets() {
    require_tuspy();
    let seed = seed("tuspy");
    let mut rng = Rng::new(seed);
    let mut stack = Stack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let image = Image::gzip_raw(seed, 8);
    let file = image.write(dir.path(), "disk.raw.gz");
    let offsets = cut_offsets(&mut rng, image.file.len() as u64, 4);
    stack.relay.cut_at_totals(&offsets);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/tuspy_upload.py");
    let out = Command::new("python3")
        .arg(script)
        .arg("--url")
        .arg(stack.url())
        .arg("--token")
        .arg(&stack.token)
        .arg("--ca")
        .arg(stack.proxy_ca_file())
        .arg("--file")
        .arg(&file)
        .args([
            "--chunk-size",
            "1048576",
            "--retries",
            "6",
            "--retry-delay",
            "0.2",
        ])
        .env("NO_PROXY", "*")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cuts at {offsets:?}: {stdout}{stderr}\n{}",
        stack.server_log()
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["offset"], image.file.len(), "{report}");
    assert_eq!(stack.relay.cuts(), 4, "every planned cut fell: {report}");
    let chunks = image.file.len().div_ceil(1 << 20);
    assert!(
        report["attempts"].as_u64().unwrap_or_default() > chunks as u64,
        "the cut chunks were sent again: {report}"
    );
    stack.assert_volume_holds(&image.raw);
}
