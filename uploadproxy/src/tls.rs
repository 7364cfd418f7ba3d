//! rustls configurations from PEM, always with the aws-lc-rs provider: the proxy's serving
//! configuration and its client configuration toward upload servers (client certificate plus
//! the upload servers' CA bundle).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The one crypto provider of this crate.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Serving configuration from a PEM certificate chain and its PEM private key; offers HTTP/2
/// and HTTP/1.1.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig, String> {
    let chain = certificates(cert_pem, "serving certificate")?;
    let key = private_key(key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the serving certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Client configuration toward upload servers: present `cert_pem`/`key_pem`, trust the
/// certificates of `ca_pem` (a bundle; every certificate in it is an anchor).
pub fn client_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> Result<ClientConfig, String> {
    let chain = certificates(cert_pem, "client certificate")?;
    let key = private_key(key_pem)?;
    let mut roots = RootCertStore::empty();
    for ca in certificates(ca_pem, "server CA bundle")? {
        roots
            .add(ca)
            .map_err(|e| format!("a certificate of the server CA bundle is unusable: {e}"))?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("the client certificate and key do not fit: {e}"))?;
    Ok(config)
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the {what} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("the {what} holds no CERTIFICATE"));
    }
    Ok(certs)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no usable PEM private key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn matching_certificate_and_key_make_both_configurations() {
        let (cert, key) = self_signed("localhost");
        let server = server_config(cert.as_bytes(), key.as_bytes()).expect("server config");
        assert_eq!(server.alpn_protocols[0], b"h2");
        client_config(cert.as_bytes(), key.as_bytes(), cert.as_bytes()).expect("client config");
    }

    #[test]
    fn mismatched_or_missing_pem_is_refused_with_what_is_wrong() {
        let (cert, _) = self_signed("a");
        let (_, other_key) = self_signed("b");
        let err = server_config(cert.as_bytes(), other_key.as_bytes()).expect_err("mismatch");
        assert!(err.contains("do not fit"), "{err}");
        let err = server_config(b"", other_key.as_bytes()).expect_err("no cert");
        assert!(err.contains("holds no CERTIFICATE"), "{err}");
        let err = client_config(cert.as_bytes(), b"", cert.as_bytes()).expect_err("no key");
        assert!(err.contains("private key"), "{err}");
    }
}
