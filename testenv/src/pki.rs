//! The control plane's certificates and keys, made fresh for every environment.

use std::path::{Path, PathBuf};

use crate::Error;

/// Files the apiserver and controller-manager are started with.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_pem: String,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_public: PathBuf,
    pub sa_private: PathBuf,
    pub token_file: PathBuf,
    pub admin_token: String,
    /// The request-header (front-proxy) CA: aggregated API servers trust requests proxied by
    /// kube-apiserver when they come with a client certificate it signed.
    pub front_proxy_ca_cert: PathBuf,
    /// kube-apiserver's client certificate towards aggregated API servers (CN
    /// [`FRONT_PROXY_CLIENT`]) and its key.
    pub front_proxy_client_cert: PathBuf,
    pub front_proxy_client_key: PathBuf,
}

/// The common name of kube-apiserver's front-proxy client certificate, the one name aggregated
/// API servers are told to accept (`--requestheader-allowed-names`).
pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

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

        // A CA of its own, as kubeadm makes it: certificates from the cluster CA must not be able
        // to assert identities to aggregated API servers.
        let front_key = rcgen::KeyPair::generate()?;
        let mut front_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        front_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        front_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cdi-rs testenv front-proxy CA");
        let front_ca = front_params.self_signed(&front_key)?;
        let client_key = rcgen::KeyPair::generate()?;
        let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, FRONT_PROXY_CLIENT);
        client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let front_issuer = rcgen::Issuer::from_params(&front_params, &front_key);
        let front_client = client_params.signed_by(&client_key, &front_issuer)?;

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
            front_proxy_ca_cert: write(dir, "front-proxy-ca.crt", &front_ca.pem())?,
            front_proxy_client_cert: write(dir, "front-proxy-client.crt", &front_client.pem())?,
            front_proxy_client_key: write(
                dir,
                "front-proxy-client.key",
                &client_key.serialize_pem(),
            )?,
        })
    }
}
