//! Certificates for tests: a [`Ca`] made on the spot signs server and client certificates,
//! everything handed out as PEM (and DER) so a test can write it to files for a process or
//! load it into an in-process TLS configuration.
//!
//! ```
//! let ca = cdi_testdata::pki::Ca::new("test-ca");
//! let server = ca.server("upload-server", &["localhost", "127.0.0.1"]);
//! let client = ca.client("client.upload-server.cdi.kubevirt.io");
//! assert!(server.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! assert!(client.identity_pem().contains("PRIVATE KEY"));
//! ```

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A self-signed certificate authority and its key.
pub struct Ca {
    issuer: rcgen::Issuer<'static, KeyPair>,
    /// The CA certificate, to be trusted by whoever verifies what it signs.
    pub pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A certificate signed by a [`Ca`], with its private key.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate as DER.
    pub der: Vec<u8>,
}

impl Leaf {
    /// Certificate then key in one PEM text, as reqwest's `Identity::from_pem` takes it.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

impl Ca {
    /// A new CA named `common_name`, with a fresh ECDSA P-256 key.
    pub fn new(common_name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A serving certificate for `names` (DNS names or IP addresses, as subject alternative
    /// names), with `common_name` as its subject.
    pub fn server(&self, common_name: &str, names: &[&str]) -> Leaf {
        self.leaf(common_name, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose subject is `common_name` (what an mTLS server checks).
    pub fn client(&self, common_name: &str) -> Leaf {
        self.leaf(common_name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, common_name: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        // `CertificateParams::new` makes an IP address SAN of any name that parses as one.
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    fn verifier(ca: &Ca) -> std::sync::Arc<rustls::client::WebPkiServerVerifier> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).expect("PEM"))
            .expect("root");
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.into(),
            rustls::crypto::aws_lc_rs::default_provider().into(),
        )
        .build()
        .expect("verifier")
    }

    fn verify(ca: &Ca, leaf: &Leaf, name: &str) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier;
        verifier(ca)
            .verify_server_cert(
                &CertificateDer::from(leaf.der.clone()),
                &[],
                &ServerName::try_from(name.to_owned()).expect("name"),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn a_server_certificate_is_valid_for_its_dns_names_and_ip_addresses_only() {
        let ca = Ca::new("test-ca");
        let leaf = ca.server("server", &["cdi-upload-disk.vms.svc", "127.0.0.1"]);
        assert_eq!(verify(&ca, &leaf, "cdi-upload-disk.vms.svc"), Ok(()));
        assert_eq!(verify(&ca, &leaf, "127.0.0.1"), Ok(()));
        assert!(verify(&ca, &leaf, "localhost").is_err());
    }

    #[test]
    fn a_certificate_of_another_ca_is_refused() {
        let ca = Ca::new("test-ca");
        let other = Ca::new("other-ca");
        let leaf = other.server("server", &["localhost"]);
        assert!(verify(&ca, &leaf, "localhost").is_err());
    }

    #[test]
    fn the_identity_is_the_certificate_then_its_key() {
        let leaf = Ca::new("test-ca").client("client.example");
        let identity = leaf.identity_pem();
        assert!(identity.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(identity.ends_with(&leaf.key_pem));
    }
}
