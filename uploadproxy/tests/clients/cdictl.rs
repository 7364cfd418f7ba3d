//! `cdictl upload` through the proxy.

use std::process::Command;

use cdi_testdata::raw::Rng;
use cdi_testdata::workspace::workspace_binary;

use crate::stack::Stack;
use crate::support::{Image, cut_offsets, seed};

#[test]
fn cdictl_upload_through_the_proxy_resumes_after_cuts_at_random_offsets() {
    let mut rng = Rng::new(seed("cdictl"));
    let mut stack = Stack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let image = Image::qcow2(&mut rng);
    let file = image.write(dir.path(), "disk.qcow2");
    let offsets = cut_offsets(&mut rng, image.file.len() as u64, 4);
    stack.relay.cut_at_totals(&offsets);

    let out = Command::new(workspace_binary("cdi-cli", "cdictl"))
        .arg("upload")
        .arg("--url")
        .arg(stack.url())
        .arg("--token")
        .arg(&stack.token)
        .arg("--ca")
        .arg(stack.proxy_ca_file())
        .args([
            "--chunk-size",
            "1Mi",
            "--retries",
            "8",
            "--progress",
            "none",
        ])
        .arg(&file)
        .env("XDG_STATE_HOME", dir.path())
        .env("CDI_LOG", "warn")
        .env_remove("CDI_UPLOAD_TOKEN")
        .env("NO_PROXY", "*")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .expect("run cdictl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cuts at {offsets:?}: {stdout}{stderr}\n{}",
        stack.server_log()
    );
    assert_eq!(stack.relay.cuts(), 4, "every planned cut fell: {stderr}");
    assert!(stderr.contains("resuming at byte"), "{stderr}");
    assert!(
        stdout.contains(&format!("{} verified by the server", image.sha256())),
        "{stdout}"
    );
    stack.assert_volume_holds(&image.raw);
}
