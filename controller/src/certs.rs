//! Certificate authorities for upload servers, as upstream keeps them: a server signer that
//! signs each upload pod's serving certificate, and a client signer whose bundle the upload
//! server trusts for the proxy's client certificate. Both live in the controller's namespace
//! (Secrets `cdi-uploadserver-signer` and `cdi-uploadserver-client-signer`, bundles in ConfigMaps
//! `…-bundle` with key `ca-bundle.crt`) and are rotated before they expire; a bundle keeps the
//! previous CA until it has expired, so certificates it signed still verify.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::Error;

/// The client certificate name upload servers accept (`CLIENT_NAME`).
pub const UPLOAD_CLIENT_NAME: &str = "client.upload-server.cdi.kubevirt.io";
/// Secret of the CA signing upload servers' serving certificates.
pub const SERVER_SIGNER: &str = "cdi-uploadserver-signer";
/// Secret of the CA signing the proxy's client certificates.
pub const CLIENT_SIGNER: &str = "cdi-uploadserver-client-signer";
/// ConfigMap key of a CA bundle.
pub const BUNDLE_KEY: &str = "ca-bundle.crt";
/// Annotations recording a CA's validity, so rotation needs no X.509 parsing.
const NOT_BEFORE: &str = "cdi.kubevirt.io/cert.notBefore";
const NOT_AFTER: &str = "cdi.kubevirt.io/cert.notAfter";
const COMMON_NAME: &str = "cdi.kubevirt.io/cert.commonName";

/// Lifetimes of the CAs and of the certificates they sign (upstream's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertDurations {
    pub ca: Duration,
    pub ca_renew_before: Duration,
    pub leaf: Duration,
    pub leaf_renew_before: Duration,
}

impl Default for CertDurations {
    fn default() -> CertDurations {
        const HOUR: u64 = 3600;
        CertDurations {
            ca: Duration::from_secs(48 * HOUR),
            ca_renew_before: Duration::from_secs(24 * HOUR),
            leaf: Duration::from_secs(24 * HOUR),
            leaf_renew_before: Duration::from_secs(12 * HOUR),
        }
    }
}

/// Whether a certificate valid from `not_before` to `not_after` must be replaced at `now`.
pub fn needs_rotation(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
    now: SystemTime,
) -> bool {
    now < not_before || now + renew_before >= not_after
}

/// One CA: its key and certificate, validity, and the bundle clients should trust.
#[derive(Clone)]
struct Authority {
    common_name: String,
    key_pem: String,
    cert_pem: String,
    not_before: SystemTime,
    not_after: SystemTime,
    /// PEM certificates to trust: this one, then the one it replaced.
    bundle: Vec<String>,
}

impl Authority {
    fn params(
        common_name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = time::OffsetDateTime::from(not_before);
        params.not_after = time::OffsetDateTime::from(not_after);
        params
    }

    /// A new CA named after `prefix` and its start time, valid for `lifetime`.
    fn generate(
        prefix: &str,
        lifetime: Duration,
        now: SystemTime,
        previous: Option<&Authority>,
    ) -> Result<Authority, Error> {
        let key = KeyPair::generate().map_err(cert_error("generating a CA key"))?;
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let common_name = format!("{prefix}@{secs}");
        let not_after = now + lifetime;
        let cert = Authority::params(&common_name, now, not_after)
            .self_signed(&key)
            .map_err(cert_error("signing a CA certificate"))?;
        let cert_pem = cert.pem();
        let mut bundle = vec![cert_pem.clone()];
        if let Some(p) = previous.filter(|p| p.not_after > now) {
            bundle.push(p.cert_pem.clone());
        }
        Ok(Authority {
            common_name,
            key_pem: key.serialize_pem(),
            cert_pem,
            not_before: now,
            not_after,
            bundle,
        })
    }

    /// Signs a leaf certificate for `names` (the first is the common name).
    fn sign(
        &self,
        names: &[String],
        usage: ExtendedKeyUsagePurpose,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<(String, String), Error> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(cert_error("reading the CA key"))?;
        let ca_params = Authority::params(&self.common_name, self.not_before, self.not_after);
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let key = KeyPair::generate().map_err(cert_error("generating a key"))?;
        let sans = if usage == ExtendedKeyUsagePurpose::ServerAuth {
            names.to_vec()
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(sans).map_err(cert_error("certificate names"))?;
        if let Some(cn) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, cn.as_str());
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.not_before = time::OffsetDateTime::from(now - Duration::from_secs(60));
        // Never outlive the CA that signs it.
        params.not_after = time::OffsetDateTime::from((now + lifetime).min(self.not_after));
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(cert_error("signing a certificate"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    fn bundle_pem(&self) -> String {
        self.bundle.concat()
    }
}

fn cert_error(what: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |e| Error::Certificate(format!("{what}: {e}"))
}

struct Authorities {
    server: Authority,
    client: Authority,
}

/// The upload servers' two CAs, shared by the reconcilers and swapped on rotation.
pub struct UploadCertificates {
    durations: CertDurations,
    inner: RwLock<Authorities>,
}

impl std::fmt::Debug for UploadCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.read();
        f.debug_struct("UploadCertificates")
            .field("server", &inner.server.common_name)
            .field("client", &inner.client.common_name)
            .finish_non_exhaustive()
    }
}

impl UploadCertificates {
    /// New CAs in memory (tests, and a first start before they are stored).
    pub fn generate(durations: CertDurations) -> Result<UploadCertificates, Error> {
        let now = SystemTime::now();
        Ok(UploadCertificates {
            durations,
            inner: RwLock::new(Authorities {
                server: Authority::generate(SERVER_SIGNER, durations.ca, now, None)?,
                client: Authority::generate(CLIENT_SIGNER, durations.ca, now, None)?,
            }),
        })
    }

    /// Loads both CAs from `namespace`, creating or rotating them as needed.
    pub async fn ensure(
        client: &kube::Client,
        namespace: &str,
        durations: CertDurations,
    ) -> Result<UploadCertificates, Error> {
        let server = ensure_authority(client, namespace, SERVER_SIGNER, durations).await?;
        let client_ca = ensure_authority(client, namespace, CLIENT_SIGNER, durations).await?;
        Ok(UploadCertificates {
            durations,
            inner: RwLock::new(Authorities {
                server,
                client: client_ca,
            }),
        })
    }

    /// Rotates a CA that is due and swaps in what is stored.
    pub async fn refresh(&self, client: &kube::Client, namespace: &str) -> Result<(), Error> {
        let fresh = UploadCertificates::ensure(client, namespace, self.durations).await?;
        let fresh = fresh.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Authorities> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The data of an upload pod's TLS Secret for Service `service` in `namespace`, and when
    /// its certificate must be replaced (the pod's `DEADLINE`).
    pub fn upload_server_secret(
        &self,
        service: &str,
        namespace: &str,
        now: SystemTime,
    ) -> Result<(BTreeMap<String, String>, SystemTime), Error> {
        let names = vec![
            service.to_owned(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ];
        let inner = self.read();
        let (cert, key) = inner.server.sign(
            &names,
            ExtendedKeyUsagePurpose::ServerAuth,
            now,
            self.durations.leaf,
        )?;
        let data = BTreeMap::from([
            ("tls.crt".to_owned(), cert),
            ("tls.key".to_owned(), key),
            ("ca.crt".to_owned(), inner.client.bundle_pem()),
        ]);
        let deadline = (now + self.durations.leaf - self.durations.leaf_renew_before)
            .min(inner.server.not_after);
        Ok((data, deadline))
    }

    /// A client certificate (PEM certificate, PEM key) the upload servers accept.
    pub fn client_certificate(&self, now: SystemTime) -> Result<(String, String), Error> {
        self.read().client.sign(
            &[UPLOAD_CLIENT_NAME.to_owned()],
            ExtendedKeyUsagePurpose::ClientAuth,
            now,
            self.durations.leaf,
        )
    }

    /// What a client must trust to reach upload servers.
    pub fn server_ca_bundle(&self) -> String {
        self.read().server.bundle_pem()
    }

    /// What upload servers trust for client certificates.
    pub fn client_ca_bundle(&self) -> String {
        self.read().client.bundle_pem()
    }
}

fn parse_time(s: Option<&String>) -> Option<SystemTime> {
    let t: Timestamp = s?.parse().ok()?;
    Some(SystemTime::from(t))
}

fn format_time(t: SystemTime) -> String {
    Timestamp::try_from(t)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// Reads a stored CA from its Secret and bundle ConfigMap.
fn stored_authority(secret: &Secret, bundle: Option<&ConfigMap>) -> Option<Authority> {
    let ann = secret.metadata.annotations.as_ref()?;
    let data = secret.data.as_ref()?;
    let cert_pem = text(data, "tls.crt")?;
    let bundle_pem = bundle
        .and_then(|b| b.data.as_ref())
        .and_then(|d| d.get(BUNDLE_KEY).cloned())
        .unwrap_or_else(|| cert_pem.clone());
    Some(Authority {
        common_name: ann.get(COMMON_NAME)?.clone(),
        key_pem: text(data, "tls.key")?,
        not_before: parse_time(ann.get(NOT_BEFORE))?,
        not_after: parse_time(ann.get(NOT_AFTER))?,
        bundle: split_pem(&bundle_pem),
        cert_pem,
    })
}

/// Splits a PEM bundle into its certificates.
fn split_pem(bundle: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    bundle
        .split_inclusive(END)
        .map(|c| c.trim_start().to_owned())
        .filter(|c| c.contains(END))
        .map(|c| format!("{c}\n"))
        .collect()
}

/// Loads the CA `name`, or creates or rotates it; retries when another replica wins a race.
async fn ensure_authority(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    durations: CertDurations,
) -> Result<Authority, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let bundle_name = format!("{name}-bundle");
    for _ in 0..5 {
        let now = SystemTime::now();
        let secret = secrets.get_opt(name).await?;
        let bundle = maps.get_opt(&bundle_name).await?;
        let stored = secret
            .as_ref()
            .and_then(|s| stored_authority(s, bundle.as_ref()));
        if let Some(a) = &stored
            && !needs_rotation(a.not_before, a.not_after, durations.ca_renew_before, now)
        {
            return Ok(a.clone());
        }
        let fresh = Authority::generate(name, durations.ca, now, stored.as_ref())?;
        let new_secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                resource_version: secret
                    .as_ref()
                    .and_then(|s| s.metadata.resource_version.clone()),
                annotations: Some(BTreeMap::from([
                    (COMMON_NAME.to_owned(), fresh.common_name.clone()),
                    (NOT_BEFORE.to_owned(), format_time(fresh.not_before)),
                    (NOT_AFTER.to_owned(), format_time(fresh.not_after)),
                ])),
                labels: Some(crate::datavolume::plan::cdi_labels()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(BTreeMap::from([
                (
                    "tls.crt".to_owned(),
                    ByteString(fresh.cert_pem.clone().into_bytes()),
                ),
                (
                    "tls.key".to_owned(),
                    ByteString(fresh.key_pem.clone().into_bytes()),
                ),
            ])),
            ..Default::default()
        };
        let written = match &secret {
            None => secrets.create(&PostParams::default(), &new_secret).await,
            Some(_) => {
                secrets
                    .replace(name, &PostParams::default(), &new_secret)
                    .await
            }
        };
        match written {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
        let new_bundle = ConfigMap {
            metadata: ObjectMeta {
                name: Some(bundle_name.clone()),
                namespace: Some(namespace.to_owned()),
                resource_version: bundle
                    .as_ref()
                    .and_then(|b| b.metadata.resource_version.clone()),
                labels: Some(crate::datavolume::plan::cdi_labels()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                BUNDLE_KEY.to_owned(),
                fresh.bundle_pem(),
            )])),
            ..Default::default()
        };
        let written = match &bundle {
            None => maps.create(&PostParams::default(), &new_bundle).await,
            Some(_) => {
                maps.replace(&bundle_name, &PostParams::default(), &new_bundle)
                    .await
            }
        };
        match written {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(
            ca = name,
            rotated = stored.is_some(),
            "Upload certificate authority written."
        );
        return Ok(fresh);
    }
    Err(Error::Certificate(format!(
        "could not store certificate authority {namespace}/{name}: other writers kept changing it"
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::RootCertStore;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
    use rustls::server::WebPkiClientVerifier;

    use super::*;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    fn roots(bundle: &str) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
            roots
                .add(cert.expect("PEM certificate"))
                .expect("a CA certificate");
        }
        Arc::new(roots)
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate")
    }

    fn server_verifies(bundle: &str, cert_pem: &str, name: &str) -> bool {
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots(bundle), provider())
                .build()
                .expect("verifier");
        let name = ServerName::try_from(name.to_owned()).expect("name");
        verifier
            .verify_server_cert(&der(cert_pem), &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn upload_server_certificate_verifies_for_its_service_only() {
        let certs = UploadCertificates::generate(CertDurations::default()).expect("CAs");
        let (data, deadline) = certs
            .upload_server_secret("cdi-upload-x", "ns", SystemTime::now())
            .expect("secret");
        let bundle = certs.server_ca_bundle();
        assert!(server_verifies(
            &bundle,
            &data["tls.crt"],
            "cdi-upload-x.ns.svc"
        ));
        assert!(server_verifies(
            &bundle,
            &data["tls.crt"],
            "cdi-upload-x.ns.svc.cluster.local"
        ));
        assert!(!server_verifies(
            &bundle,
            &data["tls.crt"],
            "cdi-upload-y.ns.svc"
        ));
        assert_eq!(data["ca.crt"], certs.client_ca_bundle());
        assert!(data["tls.key"].contains("PRIVATE KEY"));
        let in_hours = deadline
            .duration_since(SystemTime::now())
            .expect("future")
            .as_secs()
            / 3600;
        assert!(
            (11..=12).contains(&in_hours),
            "deadline in {in_hours} h, want 12 h"
        );
    }

    #[test]
    fn client_certificate_verifies_against_the_client_ca() {
        let certs = UploadCertificates::generate(CertDurations::default()).expect("CAs");
        let (cert, _key) = certs
            .client_certificate(SystemTime::now())
            .expect("client cert");
        let verifier = WebPkiClientVerifier::builder_with_provider(
            roots(&certs.client_ca_bundle()),
            provider(),
        )
        .build()
        .expect("verifier");
        assert!(
            verifier
                .verify_client_cert(&der(&cert), &[], UnixTime::now())
                .is_ok()
        );
        let other = WebPkiClientVerifier::builder_with_provider(
            roots(&certs.server_ca_bundle()),
            provider(),
        )
        .build()
        .expect("verifier");
        assert!(
            other
                .verify_client_cert(&der(&cert), &[], UnixTime::now())
                .is_err()
        );
    }

    #[test]
    fn rotation_is_due_inside_the_renew_window_or_after_expiry() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        let (nb, na) = (t0, t0 + 2 * day);
        assert!(
            !needs_rotation(nb, na, day, t0 + Duration::from_secs(60)),
            "fresh"
        );
        assert!(
            needs_rotation(nb, na, day, t0 + day + Duration::from_secs(1)),
            "in the window"
        );
        assert!(needs_rotation(nb, na, day, t0 + 3 * day), "expired");
        assert!(
            needs_rotation(nb, na, day, t0 - day),
            "not yet valid: clock moved back"
        );
    }

    #[test]
    fn after_rotation_the_bundle_trusts_old_and_new_certificates() {
        let now = SystemTime::now();
        let old = Authority::generate(SERVER_SIGNER, Duration::from_secs(7200), now, None)
            .expect("old CA");
        let names = ["svc.ns.svc".to_string()];
        let (old_leaf, _) = old
            .sign(
                &names,
                ExtendedKeyUsagePurpose::ServerAuth,
                now,
                Duration::from_secs(3600),
            )
            .expect("leaf");
        let new = Authority::generate(SERVER_SIGNER, Duration::from_secs(7200), now, Some(&old))
            .expect("new CA");
        let (new_leaf, _) = new
            .sign(
                &names,
                ExtendedKeyUsagePurpose::ServerAuth,
                now,
                Duration::from_secs(3600),
            )
            .expect("leaf");
        assert_eq!(new.bundle.len(), 2);
        let bundle = new.bundle_pem();
        assert!(server_verifies(&bundle, &old_leaf, "svc.ns.svc"));
        assert!(server_verifies(&bundle, &new_leaf, "svc.ns.svc"));
        assert_eq!(split_pem(&bundle).len(), 2);
    }

    #[test]
    fn stored_secret_round_trips() {
        let now = SystemTime::now();
        let a =
            Authority::generate(CLIENT_SIGNER, Duration::from_secs(7200), now, None).expect("CA");
        let secret = Secret {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([
                    (COMMON_NAME.to_owned(), a.common_name.clone()),
                    (NOT_BEFORE.to_owned(), format_time(a.not_before)),
                    (NOT_AFTER.to_owned(), format_time(a.not_after)),
                ])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([
                (
                    "tls.crt".to_owned(),
                    ByteString(a.cert_pem.clone().into_bytes()),
                ),
                (
                    "tls.key".to_owned(),
                    ByteString(a.key_pem.clone().into_bytes()),
                ),
            ])),
            ..Default::default()
        };
        let back = stored_authority(&secret, None).expect("parses");
        assert_eq!(back.common_name, a.common_name);
        assert_eq!(back.cert_pem, a.cert_pem);
        assert_eq!(back.bundle, vec![a.cert_pem.clone()]);
        let (leaf, _) = back
            .sign(
                &["x.ns.svc".into()],
                ExtendedKeyUsagePurpose::ServerAuth,
                now,
                Duration::from_secs(60),
            )
            .expect("signs");
        assert!(server_verifies(&a.cert_pem, &leaf, "x.ns.svc"));
    }
}
