//! The proxy's page, tus-js-client in headless Chromium, driven by
//! `uploadproxy/tests/browser/drive.mjs` as a person would use it: choose the file, Upload,
//! perhaps reload the page halfway and Upload again; a screenshot of the end is checked.

use std::path::Path;
use std::process::Command;

use cdi_testdata::raw::Rng;
use serde_json::Value;

use crate::stack::Stack;
use crate::support::{
    Image, assert_png, chromium, cut_offsets, require_browser, screenshot_path, seed,
    workspace_root,
};

/// What one drive.mjs run asked for.
struct Drive<'a> {
    file: &'a Path,
    screenshot: &'a Path,
    /// `none`, `browser` or `sha256:<hex>`.
    checksum: &'a str,
    reload_at: Option<u64>,
}

/// Runs drive.mjs against the stack's relay: its exit status and its JSON report.
fn drive(stack: &Stack, run: &Drive) -> (bool, Value) {
    require_browser();
    let dir = workspace_root().join("uploadproxy/tests/browser");
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("drive.mjs"))
        .arg("--url")
        .arg(format!("{}/#token={}", stack.url(), stack.token))
        .arg("--file")
        .arg(run.file)
        .arg("--screenshot")
        .arg(run.screenshot)
        .arg("--checksum")
        .arg(run.checksum)
        .args(["--timeout", "60"])
        .arg("--chromium")
        .arg(chromium())
        .current_dir(&dir)
        .env("NO_PROXY", "*")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy");
    if let Some(at) = run.reload_at {
        cmd.arg("--reload-at").arg(at.to_string());
    }
    let out = cmd.output().expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "drive.mjs printed no JSON report: {stdout}{stderr}\n{}",
                stack.server_log()
            )
        });
    if !stderr.trim().is_empty() {
        println!("drive.mjs: {stderr}");
    }
    (out.status.success() && report["ok"] == true, report)
}

#[test]
fn browser_upload_resumes_after_cuts_at_random_offsets() {
    let mut rng = Rng::new(seed("browser cuts"));
    let mut stack = Stack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let image = Image::qcow2(&mut rng);
    let file = image.write(dir.path(), "disk.qcow2");
    let offsets = cut_offsets(&mut rng, image.file.len() as u64, 3);
    stack.relay.cut_at_totals(&offsets);
    let screenshot = screenshot_path("browser-cuts");

    let (ok, report) = drive(
        &stack,
        &Drive {
            file: &file,
            screenshot: &screenshot,
            checksum: "none",
            reload_at: None,
        },
    );
    assert!(ok, "cuts at {offsets:?}: {report}\n{}", stack.server_log());
    assert_eq!(stack.relay.cuts(), 3, "every planned cut fell: {report}");
    assert_eq!(report["offset"], image.file.len(), "{report}");
    assert_eq!(report["serverDigest"], image.sha256().as_str(), "{report}");
    assert_png(&screenshot);
    stack.assert_volume_holds(&image.raw);
}

#[test]
fn browser_upload_resumes_after_the_page_is_reloaded_halfway() {
    let mut rng = Rng::new(seed("browser reload"));
    let mut stack = Stack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let image = Image::qcow2(&mut rng);
    let file = image.write(dir.path(), "disk.qcow2");
    // Slow enough (about 1.5 s for the file) that the reload falls inside the upload.
    stack.relay.limit_rate(Some(4 << 20));
    let screenshot = screenshot_path("browser-reload");

    let (ok, report) = drive(
        &stack,
        &Drive {
            file: &file,
            screenshot: &screenshot,
            checksum: "none",
            reload_at: Some(image.file.len() as u64 * 2 / 5),
        },
    );
    assert!(ok, "{report}\n{}", stack.server_log());
    assert_eq!(
        report["reloaded"], true,
        "the upload outran the reload: {report}"
    );
    let resumed = report["resumedFrom"].as_u64().unwrap_or_default();
    assert!(
        resumed > 0 && resumed < image.file.len() as u64,
        "the reloaded page resumed instead of starting over: {report}"
    );
    assert_eq!(report["serverDigest"], image.sha256().as_str(), "{report}");
    assert_png(&screenshot);
    stack.assert_volume_holds(&image.raw);
}

#[test]
fn browser_computed_checksum_is_verified_by_the_server() {
    let seed = seed("browser checksum");
    let mut stack = Stack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let image = Image::gzip_raw(seed, 4);
    let file = image.write(dir.path(), "disk.raw.gz");
    let screenshot = screenshot_path("browser-checksum");

    let (ok, report) = drive(
        &stack,
        &Drive {
            file: &file,
            screenshot: &screenshot,
            checksum: "browser",
            reload_at: None,
        },
    );
    assert!(ok, "{report}\n{}", stack.server_log());
    assert_eq!(
        report["expectedDigest"],
        image.sha256().as_str(),
        "{report}"
    );
    assert_eq!(report["serverDigest"], image.sha256().as_str(), "{report}");
    assert_eq!(report["digestMatch"], "yes", "{report}");
    assert_png(&screenshot);
    stack.assert_volume_holds(&image.raw);
}

#[test]
fn browser_upload_with_a_wrong_checksum_fails_with_the_servers_message_and_keeps_nothing() {
    let seed = seed("browser wrong checksum");
    let stack = Stack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let image = Image::gzip_raw(seed, 4);
    let file = image.write(dir.path(), "disk.raw.gz");
    let screenshot = screenshot_path("browser-wrong-checksum");
    let wrong = format!("sha256:{}", "0".repeat(64));

    let (ok, report) = drive(
        &stack,
        &Drive {
            file: &file,
            screenshot: &screenshot,
            checksum: &wrong,
            reload_at: None,
        },
    );
    assert!(!ok, "a wrong checksum was accepted: {report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("checksum mismatch")
            && error.contains(&"0".repeat(64))
            && error.contains(image.sha256().trim_start_matches("sha256:")),
        "the page shows the server's message: {report}\n{}",
        stack.server_log()
    );
    assert_png(&screenshot);
    stack.assert_volume_empty();
}
