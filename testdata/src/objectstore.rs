//! Real object stores for tests, on 127.0.0.1: moto's S3 server (optionally checking
//! credentials) and the GCS emulator, both from PyPI (`moto[server]`, `gcp-storage-emulator`),
//! seeded with boto3 and the JSON API by `testdata/python/objectstore.py`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::service::Service;
use crate::uploadpod::free_port;

const INSTALL: &str = "python3 -m pip install 'moto[server]' gcp-storage-emulator";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/objectstore.py")
}

fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "objectstore.py {}: {}",
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// moto's S3 server.
#[derive(Debug)]
pub struct S3Server {
    service: Service,
    _dir: tempfile::TempDir,
    /// Credentials that work (moto accepts any when it does not check them).
    pub key_id: String,
    pub secret: String,
}

impl S3Server {
    /// With `check_credentials`, moto verifies every request's signature against an IAM user
    /// made here (the first four, unsigned, calls make the user).
    pub fn start(check_credentials: bool) -> S3Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut command = Command::new("moto_server");
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        if check_credentials {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", "4");
        }
        let service = Service::start(
            "moto_server",
            command,
            port,
            &dir.path().join("moto.log"),
            INSTALL,
        );
        let (key_id, secret) = if check_credentials {
            let pair = python(&["s3-user", &format!("http://127.0.0.1:{port}")]);
            let (k, s) = pair.split_once(' ').expect("key pair");
            (k.to_owned(), s.to_owned())
        } else {
            ("AKIDTEST".to_owned(), "secret".to_owned())
        };
        S3Server {
            service,
            _dir: dir,
            key_id,
            secret,
        }
    }

    pub fn port(&self) -> u16 {
        self.service.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.service.port)
    }

    /// Stores `data` as `bucket/key` (creating the bucket), with boto3's default checksum or
    /// `algorithm` (`SHA256`, `CRC32C`, ...).
    pub fn put(&self, bucket: &str, key: &str, data: &[u8], algorithm: Option<&str>) {
        let file = self._dir.path().join("upload");
        std::fs::write(&file, data).expect("object");
        let endpoint = self.endpoint();
        let path = file.to_string_lossy().into_owned();
        let mut args = vec![
            "s3-put",
            &endpoint,
            &self.key_id,
            &self.secret,
            bucket,
            key,
            &path,
        ];
        if let Some(a) = algorithm {
            args.push(a);
        }
        python(&args);
    }

    pub fn log(&self) -> String {
        self.service.log()
    }
}

/// The GCS emulator (no credentials checked).
#[derive(Debug)]
pub struct GcsEmulator {
    service: Service,
    dir: tempfile::TempDir,
}

impl GcsEmulator {
    pub fn start() -> GcsEmulator {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut command = Command::new("gcp-storage-emulator");
        command.args([
            "start",
            "--host=127.0.0.1",
            &format!("--port={port}"),
            "--in-memory",
        ]);
        let service = Service::start(
            "gcp-storage-emulator",
            command,
            port,
            &dir.path().join("gcs.log"),
            INSTALL,
        );
        GcsEmulator { service, dir }
    }

    pub fn port(&self) -> u16 {
        self.service.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.service.port)
    }

    /// Stores `data` as `bucket/object` (creating the bucket).
    pub fn put(&self, bucket: &str, object: &str, data: &[u8]) {
        let file = self.dir.path().join("upload");
        std::fs::write(&file, data).expect("object");
        let endpoint = self.endpoint();
        python(&[
            "gcs-put",
            &endpoint,
            bucket,
            object,
            &file.to_string_lossy(),
        ]);
    }

    pub fn log(&self) -> String {
        self.service.log()
    }
}

/// A service-account key file whose `gcs_base_url` points at `endpoint` (how emulators are
/// reached), with a real RSA key so that URLs are really signed.
pub fn service_account_key(dir: &Path, endpoint: &str) -> PathBuf {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
    let json = serde_json_like(&[
        ("type", "service_account"),
        ("project_id", "cdi-test"),
        ("private_key_id", "test-key"),
        ("private_key", &key.serialize_pem()),
        ("client_email", "importer@cdi-test.iam.gserviceaccount.com"),
        ("client_id", "1"),
        ("token_uri", "http://127.0.0.1:9/token"),
        ("gcs_base_url", endpoint),
    ]);
    let path = dir.join("credentials.json");
    std::fs::write(&path, json).expect("key file");
    path
}

/// A flat JSON object of strings.
fn serde_json_like(pairs: &[(&str, &str)]) -> String {
    let escape = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let members: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("\"{}\": \"{}\"", escape(k), escape(v)))
        .collect();
    format!("{{{}}}", members.join(", "))
}
