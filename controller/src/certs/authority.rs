//! One certificate authority of the upload servers: generating it, signing serving and client
//! certificates with it, and the bundle of certificates clients should trust. No I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::{format_time, later, whole_seconds};
use crate::Error;

/// How far new certificates are backdated, so clocks a little behind ours accept them.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// One certificate of a bundle and when it stops being worth trusting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BundleEntry {
    pub(super) pem: String,
    pub(super) not_after: SystemTime,
}

impl BundleEntry {
    /// Whether both hold the same certificate, however their PEM is wrapped.
    pub(super) fn same_certificate(&self, other: &BundleEntry) -> bool {
        let body = |pem: &str| -> String { pem.split_whitespace().collect() };
        body(&self.pem) == body(&other.pem)
    }
}

/// One CA: its key and certificate, its validity, and the bundle clients should trust.
pub(super) struct Authority {
    pub(super) common_name: String,
    pub(super) key: KeyPair,
    pub(super) cert_pem: String,
    pub(super) not_before: SystemTime,
    pub(super) not_after: SystemTime,
    /// Certificates to trust: this CA first, then older ones that have not expired.
    pub(super) bundle: Vec<BundleEntry>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("common_name", &self.common_name)
            .field(
                "not_before",
                &format_time(self.not_before).unwrap_or_default(),
            )
            .field(
                "not_after",
                &format_time(self.not_after).unwrap_or_default(),
            )
            .field("bundle", &self.bundle.len())
            .finish_non_exhaustive()
    }
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug)]
pub(super) enum Usage {
    /// A server reachable under the DNS names given.
    Server,
    /// A client identified by its common name.
    Client,
}

/// A certificate and its key, PEM, and when the certificate expires.
pub(super) struct Signed {
    pub(super) cert_pem: String,
    pub(super) key_pem: String,
    pub(super) not_after: SystemTime,
}

impl Authority {
    /// The parameters of a CA certificate; signing reuses them to name the issuer, so the
    /// issuer of a leaf is byte for byte the subject of its CA.
    pub(super) fn params(
        common_name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params
    }

    /// A new CA named after `prefix` and the second it was made (`prefix@1700000000`, as
    /// upstream), valid for `lifetime` and backdated by [`CLOCK_SKEW`]; its bundle is itself.
    pub(super) fn generate(
        prefix: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Authority, Error> {
        let now = whole_seconds(now);
        let not_before = now.checked_sub(CLOCK_SKEW).unwrap_or(now);
        let not_after = later(now, lifetime)?;
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let common_name = format!("{prefix}@{secs}");
        let key = KeyPair::generate().map_err(cert_error("generating the key of a CA"))?;
        let cert = Authority::params(&common_name, not_before, not_after)
            .self_signed(&key)
            .map_err(cert_error("self-signing a CA certificate"))?;
        let cert_pem = cert.pem();
        Ok(Authority {
            bundle: vec![BundleEntry {
                pem: cert_pem.clone(),
                not_after,
            }],
            common_name,
            key,
            cert_pem,
            not_before,
            not_after,
        })
    }

    pub(super) fn entry(&self) -> BundleEntry {
        BundleEntry {
            pem: self.cert_pem.clone(),
            not_after: self.not_after,
        }
    }

    pub(super) fn bundle_pem(&self) -> String {
        self.bundle.iter().map(|e| e.pem.as_str()).collect()
    }

    /// The value of [`BUNDLE_NOT_AFTER`] for the bundle.
    pub(super) fn bundle_expiries(&self) -> Result<String, Error> {
        let times: Result<Vec<String>, Error> = self
            .bundle
            .iter()
            .map(|e| format_time(e.not_after))
            .collect();
        Ok(times?.join(","))
    }

    /// Signs a certificate named `common_name` (and, for a server, reachable as `dns_names`),
    /// valid for `lifetime` from `now` but never past this CA's own expiry.
    pub(super) fn sign(
        &self,
        common_name: &str,
        dns_names: &[String],
        usage: Usage,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<Signed, Error> {
        if now >= self.not_after {
            return Err(Error::Certificate(format!(
                "certificate authority {} expired at {}; it has not been rotated",
                self.common_name,
                format_time(self.not_after)?
            )));
        }
        let not_after = later(now, lifetime)?.min(self.not_after);
        let ca_params = Authority::params(&self.common_name, self.not_before, self.not_after);
        let issuer = Issuer::from_params(&ca_params, &self.key);
        let key = KeyPair::generate().map_err(cert_error("generating a certificate key"))?;
        let mut params = CertificateParams::new(dns_names.to_vec())
            .map_err(cert_error("naming a certificate"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now.checked_sub(CLOCK_SKEW).unwrap_or(now).into();
        params.not_after = not_after.into();
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(cert_error("signing a certificate"))?;
        Ok(Signed {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after,
        })
    }
}

pub(super) fn cert_error(what: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |e| Error::Certificate(format!("{what}: {e}"))
}

/// The certificates of a PEM bundle, each as its own PEM block; anything between is dropped.
pub(super) fn split_pem(bundle: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        certs.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    certs
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::certs::*;

    mod leaf_certificates {
        use super::*;

        #[test]
        fn upload_server_certificate_verifies_for_its_service_names_only() {
            let certs = UploadCertificates::generate(CertDurations::default()).expect("CAs");
            let now = SystemTime::now();

            let (data, _) = certs
                .upload_server_secret("cdi-upload-x", "ns", now)
                .expect("a secret");

            let bundle = certs.server_ca_bundle();
            let cert = &data["tls.crt"];
            for name in [
                "cdi-upload-x",
                "cdi-upload-x.ns",
                "cdi-upload-x.ns.svc",
                "cdi-upload-x.ns.svc.cluster.local",
            ] {
                assert!(server_verifies(&bundle, cert, name, now), "{name}");
            }
            assert!(!server_verifies(&bundle, cert, "cdi-upload-y.ns.svc", now));
            assert!(!server_verifies(
                &bundle,
                cert,
                "cdi-upload-x.other.svc",
                now
            ));
            assert!(
                !server_verifies(&certs.client_ca_bundle(), cert, "cdi-upload-x.ns.svc", now),
                "the client CA must not vouch for servers"
            );
        }

        #[test]
        fn upload_server_secret_holds_key_and_client_bundle_as_ca_crt() {
            let certs = UploadCertificates::generate(CertDurations::default()).expect("CAs");

            let (data, _) = certs
                .upload_server_secret("cdi-upload-x", "ns", SystemTime::now())
                .expect("a secret");

            assert_eq!(
                data.keys().collect::<Vec<_>>(),
                ["ca.crt", "tls.crt", "tls.key"]
            );
            assert_eq!(data["ca.crt"], certs.client_ca_bundle());
            assert!(data["tls.key"].starts_with("-----BEGIN PRIVATE KEY-----"));
        }

        #[test]
        fn deadline_is_leaf_lifetime_minus_renew_before() {
            let certs = UploadCertificates::generate(CertDurations::default()).expect("CAs");
            let now = whole_seconds(SystemTime::now());

            let (_, deadline) = certs
                .upload_server_secret("cdi-upload-x", "ns", now)
                .expect("a secret");

            assert_eq!(deadline, now + 12 * HOUR);
        }

        #[test]
        fn leaf_is_cut_short_by_its_ca_and_replaced_at_its_end() {
            let durations = CertDurations {
                ca: 2 * HOUR,
                ca_renew_before: HOUR,
                ..CertDurations::default()
            };
            let certs = UploadCertificates::generate(durations).expect("CAs");
            let now = SystemTime::now();
            let ca_expiry = certs.read().server.not_after;

            let (data, deadline) = certs
                .upload_server_secret("s", "ns", now)
                .expect("a secret");

            assert_eq!(
                deadline, ca_expiry,
                "12 h before the CA's end is already past"
            );
            let bundle = certs.server_ca_bundle();
            assert!(server_verifies(
                &bundle,
                &data["tls.crt"],
                "s.ns.svc",
                now + HOUR
            ));
            assert!(!server_verifies(
                &bundle,
                &data["tls.crt"],
                "s.ns.svc",
                now + 3 * HOUR
            ));
        }

        #[test]
        fn client_certificate_verifies_against_the_client_ca_only() {
            let certs = UploadCertificates::generate(CertDurations::default()).expect("CAs");
            let now = SystemTime::now();

            let (cert, key) = certs.client_certificate(now).expect("a client certificate");

            assert!(client_verifies(&certs.client_ca_bundle(), &cert, now));
            assert!(!client_verifies(&certs.server_ca_bundle(), &cert, now));
            assert!(key.contains("PRIVATE KEY"));
        }

        #[test]
        fn expired_ca_refuses_to_sign() {
            let ca = Authority::generate(SERVER_SIGNER, HOUR, t0()).expect("a CA");

            let result = ca.sign("s", &[], Usage::Server, t0() + 2 * HOUR, HOUR);

            let Err(Error::Certificate(message)) = result else {
                panic!("an expired CA signed");
            };
            assert!(
                message.contains("expired at 2023-11-14T23:13:20Z"),
                "{message}"
            );
        }
    }
}
