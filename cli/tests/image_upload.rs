//! `cdictl image-upload` without a cluster: what it says when there is no kubeconfig. Its run
//! against a control plane is an end-to-end test of its own.

use std::process::Command;

#[test]
fn without_a_kubeconfig_image_upload_says_what_to_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("disk.raw");
    std::fs::write(&image, [0u8; 512]).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_cdictl"))
        .args([
            "image-upload",
            "dv",
            "disk",
            "--size",
            "1Gi",
            "--image-path",
        ])
        .arg(&image)
        .env_clear()
        .env("HOME", dir.path())
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .output()
        .expect("run cdictl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cdictl: image-upload failed: no usable kubeconfig")
            && stderr.contains("set KUBECONFIG"),
        "{stderr}"
    );
}
