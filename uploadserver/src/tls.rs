//! The server's TLS: its certificate, client certificates verified when given (a probe or a
//! metrics scrape has none; an upload must come with one whose common name is `CLIENT_NAME`),
//! the minimum version and TLS 1.2 cipher suites from CDIConfig's security profile.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {message}")]
    Reading { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let reading = |message: String| TlsError::Reading {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| reading(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| reading(e.to_string()))?;
    if certs.is_empty() {
        return Err(reading("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn versions(
    min: Option<&str>,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], TlsError> {
    static BOTH: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min.map(str::trim) {
        // TLS 1.0 and 1.1 are not offered by rustls; 1.2 is the floor.
        None
        | Some("" | "VersionTLS10" | "VersionTLS11" | "VersionTLS12" | "1.0" | "1.1" | "1.2") => {
            Ok(&BOTH)
        }
        Some("VersionTLS13" | "1.3") => Ok(&TLS13_ONLY),
        Some(other) => Err(TlsError::Invalid(format!(
            "TLS_MIN_VERSION {other:?} is not VersionTLS12 or VersionTLS13"
        ))),
    }
}

/// The IANA name of a TLS 1.2 suite given by its IANA or OpenSSL name (CDIConfig's
/// `tlsSecurityProfile` uses OpenSSL's, `ECDHE-RSA-AES128-GCM-SHA256`).
fn iana_name(name: &str) -> String {
    let name = name.trim();
    if name.starts_with("TLS_") {
        return name.to_ascii_uppercase();
    }
    let Some(rest) = name.strip_prefix("ECDHE-") else {
        return name.to_ascii_uppercase();
    };
    let Some((auth, cipher)) = rest.split_once('-') else {
        return name.to_ascii_uppercase();
    };
    let cipher = match cipher {
        "AES128-GCM-SHA256" => "AES_128_GCM_SHA256",
        "AES256-GCM-SHA384" => "AES_256_GCM_SHA384",
        "CHACHA20-POLY1305" => "CHACHA20_POLY1305_SHA256",
        other => other,
    };
    format!("TLS_ECDHE_{auth}_WITH_{cipher}").to_ascii_uppercase()
}

/// The crypto provider, limited to the TLS 1.2 suites named in `ciphers` (TLS 1.3 suites are
/// always kept, as Go does). Unknown names are skipped; none known is an error.
fn provider(ciphers: &[String]) -> Result<rustls::crypto::CryptoProvider, TlsError> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if ciphers.is_empty() {
        return Ok(provider);
    }
    let wanted: Vec<String> = ciphers.iter().map(|c| iana_name(c)).collect();
    let named = |s: &rustls::SupportedCipherSuite| {
        let name = format!("{:?}", s.suite());
        wanted.iter().any(|c| c.eq_ignore_ascii_case(&name))
    };
    let tls12: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12 && named(s))
        .copied()
        .collect();
    if tls12.is_empty() {
        return Err(TlsError::Invalid(format!(
            "TLS_CIPHERS names no TLS 1.2 cipher suite this server has: {}",
            ciphers.join(",")
        )));
    }
    provider
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13 || tls12.contains(s));
    Ok(provider)
}

/// The server configuration from the files in `tls`.
pub fn server_config(tls: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(provider(&tls.ciphers)?);
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&tls.client_ca)? {
        roots.add(ca).map_err(|e| {
            TlsError::Invalid(format!("client CA {}: {e}", tls.client_ca.display()))
        })?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Invalid(format!("client certificate verifier: {e}")))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| TlsError::Reading {
        path: tls.key.display().to_string(),
        message: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions(tls.min_version.as_deref())?)
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&tls.cert)?, key)
        .map_err(|e| TlsError::Invalid(format!("server certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The common name of a (verified) client certificate.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_version_names_map_to_rustls_versions() {
        assert_eq!(versions(Some("VersionTLS12")).expect("1.2").len(), 2);
        assert_eq!(versions(Some("VersionTLS13")).expect("1.3").len(), 1);
        assert!(versions(Some("SSLv3")).is_err());
    }

    #[test]
    fn cipher_names_limit_tls12_suites_only() {
        let p = provider(&[
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
            "TLS_NOT_A_SUITE".into(),
        ])
        .expect("known suite");
        let tls12 = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .count();
        assert_eq!(tls12, 1);
        assert!(
            p.cipher_suites
                .iter()
                .any(|s| s.version() == &rustls::version::TLS13)
        );
        assert!(provider(&["TLS_NOT_A_SUITE".into()]).is_err());
    }

    #[test]
    fn openssl_names_from_the_intermediate_profile_are_understood() {
        let profile = "TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384,TLS_CHACHA20_POLY1305_SHA256,\
            ECDHE-ECDSA-AES128-GCM-SHA256,ECDHE-RSA-AES128-GCM-SHA256,ECDHE-ECDSA-AES256-GCM-SHA384,\
            ECDHE-RSA-AES256-GCM-SHA384,ECDHE-ECDSA-CHACHA20-POLY1305,ECDHE-RSA-CHACHA20-POLY1305,\
            DHE-RSA-AES128-GCM-SHA256,DHE-RSA-AES256-GCM-SHA384";
        let names: Vec<String> = profile.split(',').map(|s| s.trim().to_owned()).collect();
        let p = provider(&names).expect("the profile's suites");
        let tls12 = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .count();
        assert_eq!(
            tls12, 6,
            "every ECDHE suite of the profile; rustls has no DHE"
        );
    }

    #[test]
    fn common_name_is_read_from_the_subject() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "client.upload-server.cdi.kubevirt.io",
        );
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(
            common_name(cert.der()).as_deref(),
            Some("client.upload-server.cdi.kubevirt.io")
        );
    }
}
