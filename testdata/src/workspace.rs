//! Another workspace package's binary, for a test that runs it as a process.
//!
//! Cargo tells a test where its own package's binaries are (`CARGO_BIN_EXE_*`) but builds no
//! other package's, not even a dev-dependency's. So [`workspace_binary`] runs
//! `cargo test --workspace --no-run` once per test process and returns the binary from the
//! directory the running test was built in, so both come from the same profile and target
//! directory.
//!
//! Why not `cargo build -p <package>`: Cargo unifies dependency features over the packages a
//! command selects, so a one-package build resolves tokio, rustls and the rest with fewer
//! features than `cargo test --workspace` does, and rebuilds them and everything above them
//! (minutes on CI's two cores). `cargo test --workspace --no-run` is the command CI runs, so
//! there it finds everything current at once; run by hand after `cargo test -p <one>`, it
//! builds the rest of the workspace's tests the first time. Cargo releases its build lock
//! before it runs tests, so the nested build does not wait on the outer one.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The path of `bin` of workspace package `package`, built (once per process, with every
/// other workspace binary) with the running test's profile into its target directory.
///
/// Panics with Cargo's output when the build fails or leaves no such binary.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = match BUILT.get_or_init(build_workspace) {
        Ok(dir) => dir,
        Err(message) => panic!("{message}"),
    };
    let path = dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "cargo test --workspace --no-run left no {} (is {bin} a binary of {package}, and does \
         {package} have an integration test, which is what makes Cargo build its binaries?)",
        path.display()
    );
    path
}

/// Runs `cargo test --workspace --no-run` with the running test's profile; its directory.
fn build_workspace() -> Result<PathBuf, String> {
    let dir = profile_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "--workspace", "--no-run", "--quiet"]);
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    if let Some(manifest_dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        cmd.current_dir(manifest_dir);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running cargo test --workspace --no-run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo test --workspace --no-run failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dir)
}

/// The profile directory the running test was built in (`target/debug` for
/// `target/debug/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let deps = exe.parent().expect("the test's directory");
    let dir = if deps.file_name() == Some("deps".as_ref()) {
        deps.parent().expect("the profile directory")
    } else {
        deps
    };
    dir.to_path_buf()
}

#[cfg(test)]
mod tests {
    // `workspace_binary` itself is exercised by the tests that run other packages' binaries
    // (cdi-cli's and cdi-uploadproxy's); building one here would cost a build per test run.
    use super::*;

    #[test]
    fn the_profile_directory_is_above_deps() {
        let dir = profile_dir();
        assert!(
            dir.join("deps").is_dir(),
            "{} has no deps directory",
            dir.display()
        );
    }
}
