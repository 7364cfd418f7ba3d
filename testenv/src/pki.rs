//! The control plane's certificates and keys, made fresh for every environment.

use std::path::{Path, PathBuf};

use crate::Error;

/// Files the apiserver and controller-manager are started with.
#[derive(Debug)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_pem: String,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_public: PathBuf,
    pub sa_private: PathBuf,
    pub token_file: PathBuf,
    pub admin_token: String,
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    std::fs::write(&path, contents)
        .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    Ok(path)
}

impl Pki {
    pub fn create(dir: &Path) -> Result<Pki, Error> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cdi-rs testenv CA");
        let ca = ca_params.self_signed(&ca_key)?;

        let serving_key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "kubernetes.default.svc".to_string(),
        ])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let serving = params.signed_by(&serving_key, &issuer)?;

        // Service-account tokens are signed with ES256; the apiserver accepts EC keys.
        let sa_key = rcgen::KeyPair::generate()?;
        let admin_token =
            hex::encode(rcgen::KeyPair::generate()?.public_key_raw())[..40].to_string();

        Ok(Pki {
            ca_cert: write(dir, "ca.crt", &ca.pem())?,
            ca_pem: ca.pem(),
            serving_cert: write(dir, "apiserver.crt", &serving.pem())?,
            serving_key: write(dir, "apiserver.key", &serving_key.serialize_pem())?,
            sa_public: write(dir, "sa.pub", &sa_key.public_key_pem())?,
            sa_private: write(dir, "sa.key", &sa_key.serialize_pem())?,
            token_file: write(
                dir,
                "tokens.csv",
                &format!("{admin_token},admin,admin-uid,system:masters\n"),
            )?,
            admin_token,
        })
    }
}
