//! Another workspace package's binary, for a test that runs it as a process.
//!
//! Cargo tells a test where its own package's binaries are (`CARGO_BIN_EXE_*`) but builds no
//! other package's, not even a dev-dependency's. So [`workspace_binary`] runs
//! `cargo build -p <package> --bin <bin>` once per test process (Cargo releases its build
//! lock before it runs tests; the build is a no-op when the binary is current, and otherwise
//! waits its turn for the lock like any other build) and returns the binary from the
//! directory the running test was built in, so both come from the same profile and target
//! directory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The path of `bin` of workspace package `package`, built (once per process) with the
/// running test's profile into its target directory.
///
/// Panics with Cargo's output when the build fails.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(String, String), PathBuf>>> = OnceLock::new();
    // Held during the build: two tests asking for the same binary build it once.
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = (package.to_owned(), bin.to_owned());
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let dir = profile_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin]);
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
        .unwrap_or_else(|e| panic!("running cargo build -p {package} --bin {bin}: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {bin} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "cargo build -p {package} --bin {bin} succeeded but left no {}",
        path.display()
    );
    built.insert(key, path.clone());
    path
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
