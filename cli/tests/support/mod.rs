//! A real `cdi-uploadserver` for `cdictl upload` to talk to (`cdi-testdata`'s `UploadPod`: its
//! certificates, the pod's mounts in a temporary `CDI_ROOT`), and a TCP relay that can break
//! connections.
//!
//! The server binary belongs to another package, so the first test to need it builds it with
//! `cdi_testdata::workspace::workspace_binary`, beside `cdictl`.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cdi_testdata::uploadpod::UploadPod;
use cdi_testdata::workspace::workspace_binary;

pub use cdi_testdata::relay::{AfterBudgets, Relay};

/// One upload pod; its certificates are also files for cdictl (`client/` under its root).
pub struct Pod(UploadPod);

impl Deref for Pod {
    type Target = UploadPod;
    fn deref(&self) -> &UploadPod {
        &self.0
    }
}

impl DerefMut for Pod {
    fn deref_mut(&mut self) -> &mut UploadPod {
        &mut self.0
    }
}

impl Pod {
    pub fn start() -> Pod {
        Pod(UploadPod::builder(workspace_binary("cdi-uploadserver", "cdi-uploadserver")).start())
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port())
    }

    /// `--ca`, `--client-cert` and `--client-key` for this pod.
    pub fn tls_args(&self) -> Vec<String> {
        let p = |f: &str| self.path(f).to_string_lossy().into_owned();
        vec![
            "--ca".into(),
            p("client/server-ca.crt"),
            "--client-cert".into(),
            p("client/tls.crt"),
            "--client-key".into(),
            p("client/tls.key"),
        ]
    }

    /// Only the server's CA: no client certificate.
    pub fn ca_args(&self) -> Vec<String> {
        self.tls_args()[..2].to_vec()
    }

    /// Waits for the server to exit after its one upload: its exit code.
    pub fn wait(&mut self) -> i32 {
        self.0.wait().0
    }
}

/// Runs cdictl with its upload state under `state`, and no proxy from the environment.
pub fn cdictl(state: &Path, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cdictl"))
        .args(args)
        .env("XDG_STATE_HOME", state)
        .env("CDI_LOG", "warn")
        .env_remove("CDI_UPLOAD_TOKEN")
        .env("NO_PROXY", "*")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .expect("run cdictl")
}

/// The state files cdictl left.
pub fn state_files(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("cdictl/uploads"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}
