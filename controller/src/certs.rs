//! The certificate authorities of upload servers, kept as upstream CDI keeps them.
//!
//! ```text
//!  Secret cdi-uploadserver-signer ─────────signs──► tls.crt of each upload pod's Secret (serverAuth)
//!     └► ConfigMap cdi-uploadserver-signer-bundle ──trusted by──► the upload proxy
//!  Secret cdi-uploadserver-client-signer ──signs──► the proxy's client certificate (clientAuth)
//!     └► ConfigMap cdi-uploadserver-client-signer-bundle ──copied to──► ca.crt of each upload Secret
//! ```
//!
//! Both CAs live in the controller's namespace. A CA's validity is kept in the annotations
//! upstream's library-go uses (`auth.openshift.io/certificate-not-before`, `-not-after`, RFC
//! 3339), so rotation is decided without parsing X.509, and shortening `not-after` by hand forces
//! a rotation as upstream's tests do. A CA inside its renew-before window is replaced; its bundle
//! (`ca-bundle.crt`) then holds the new CA and every older one that has not expired, so
//! certificates already handed out keep verifying. What to write is decided by a pure function
//! (`plan_authority`) of the stored objects and the time; `ensure_authority` only reads,
//! calls it and writes, re-reading when another replica wrote first (409).

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::Error;

/// The client certificate name upload servers accept (their `CLIENT_NAME`).
pub const UPLOAD_CLIENT_NAME: &str = "client.upload-server.cdi.kubevirt.io";
/// Secret of the CA that signs upload servers' serving certificates.
pub const SERVER_SIGNER: &str = "cdi-uploadserver-signer";
/// Secret of the CA that signs the upload proxy's client certificates.
pub const CLIENT_SIGNER: &str = "cdi-uploadserver-client-signer";
/// ConfigMap key of a CA bundle.
pub const BUNDLE_KEY: &str = "ca-bundle.crt";

/// When a CA became valid (RFC 3339), as library-go records it.
const NOT_BEFORE: &str = "auth.openshift.io/certificate-not-before";
/// When a CA expires (RFC 3339), as library-go records it.
const NOT_AFTER: &str = "auth.openshift.io/certificate-not-after";
/// The common name of the certificate's issuer (a CA's own, as it signs itself).
const ISSUER: &str = "auth.openshift.io/certificate-issuer";
/// The common name this controller gave a CA: it rebuilds the issuer name from it, so a CA
/// without it (made by upstream's operator) is trusted until it expires but replaced at once.
const COMMON_NAME: &str = "cdi.kubevirt.io/cert.commonName";
/// On a bundle ConfigMap: the expiry of each of its certificates, in order, comma-separated.
const BUNDLE_NOT_AFTER: &str = "cdi.kubevirt.io/ca-bundle.notAfter";

/// How far new certificates are backdated, so clocks a little behind ours accept them.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// The longest lifetime accepted, which keeps every time computed here within range.
const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Writes attempted for one CA before giving up on replicas that keep racing us.
const MAX_ATTEMPTS: usize = 5;

/// Lifetimes of the CAs and of the certificates they sign; the default is upstream's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertDurations {
    /// How long a CA is valid.
    pub ca: Duration,
    /// How long before its expiry a CA is replaced.
    pub ca_renew_before: Duration,
    /// How long a serving or client certificate is valid.
    pub leaf: Duration,
    /// How long before its expiry a serving or client certificate is replaced.
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

impl CertDurations {
    /// Refuses lifetimes that would rotate on every check or overflow the clock.
    fn check(&self) -> Result<(), Error> {
        for (what, lifetime, renew_before) in [
            ("CA", self.ca, self.ca_renew_before),
            ("leaf", self.leaf, self.leaf_renew_before),
        ] {
            if lifetime > MAX_LIFETIME {
                return Err(Error::Certificate(format!(
                    "{what} lifetime {lifetime:?} is longer than the {MAX_LIFETIME:?} allowed"
                )));
            }
            if renew_before >= lifetime {
                return Err(Error::Certificate(format!(
                    "{what} renew-before {renew_before:?} must be shorter than its lifetime \
                     {lifetime:?}, or it would be replaced on every check"
                )));
            }
        }
        Ok(())
    }
}

/// Whether a certificate valid from `not_before` to `not_after` must be replaced at `now`:
/// once `now` is within `renew_before` of its expiry, and also when it is not valid yet (the
/// clock went back), as it would be refused.
pub fn needs_rotation(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
    now: SystemTime,
) -> bool {
    now < not_before
        || not_after
            .checked_sub(renew_before)
            .is_none_or(|renew_at| now >= renew_at)
}

/// When a certificate valid until `not_after` must be replaced: `renew_before` ahead of its
/// expiry, or at its expiry when that moment has already passed (it was cut short by its CA's).
fn replace_at(not_after: SystemTime, renew_before: Duration, now: SystemTime) -> SystemTime {
    not_after
        .checked_sub(renew_before)
        .filter(|t| *t > now)
        .unwrap_or(not_after)
}

/// One certificate of a bundle and when it stops being worth trusting.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BundleEntry {
    pem: String,
    not_after: SystemTime,
}

impl BundleEntry {
    /// Whether both hold the same certificate, however their PEM is wrapped.
    fn same_certificate(&self, other: &BundleEntry) -> bool {
        let body = |pem: &str| -> String { pem.split_whitespace().collect() };
        body(&self.pem) == body(&other.pem)
    }
}

/// One CA: its key and certificate, its validity, and the bundle clients should trust.
struct Authority {
    common_name: String,
    key: KeyPair,
    cert_pem: String,
    not_before: SystemTime,
    not_after: SystemTime,
    /// Certificates to trust: this CA first, then older ones that have not expired.
    bundle: Vec<BundleEntry>,
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
enum Usage {
    /// A server reachable under the DNS names given.
    Server,
    /// A client identified by its common name.
    Client,
}

/// A certificate and its key, PEM, and when the certificate expires.
struct Signed {
    cert_pem: String,
    key_pem: String,
    not_after: SystemTime,
}

impl Authority {
    /// The parameters of a CA certificate; signing reuses them to name the issuer, so the
    /// issuer of a leaf is byte for byte the subject of its CA.
    fn params(
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
    fn generate(prefix: &str, lifetime: Duration, now: SystemTime) -> Result<Authority, Error> {
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

    fn entry(&self) -> BundleEntry {
        BundleEntry {
            pem: self.cert_pem.clone(),
            not_after: self.not_after,
        }
    }

    fn bundle_pem(&self) -> String {
        self.bundle.iter().map(|e| e.pem.as_str()).collect()
    }

    /// The value of [`BUNDLE_NOT_AFTER`] for the bundle.
    fn bundle_expiries(&self) -> Result<String, Error> {
        let times: Result<Vec<String>, Error> = self
            .bundle
            .iter()
            .map(|e| format_time(e.not_after))
            .collect();
        Ok(times?.join(","))
    }

    /// Signs a certificate named `common_name` (and, for a server, reachable as `dns_names`),
    /// valid for `lifetime` from `now` but never past this CA's own expiry.
    fn sign(
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

fn cert_error(what: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |e| Error::Certificate(format!("{what}: {e}"))
}

struct Authorities {
    server: Authority,
    client: Authority,
}

/// The upload servers' two CAs, shared by the reconcilers and swapped when they rotate.
pub struct UploadCertificates {
    durations: CertDurations,
    inner: RwLock<Authorities>,
}

impl std::fmt::Debug for UploadCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.read();
        f.debug_struct("UploadCertificates")
            .field("durations", &self.durations)
            .field("server", &inner.server)
            .field("client", &inner.client)
            .finish()
    }
}

impl UploadCertificates {
    /// New CAs held in memory only: for tests, and for a start before they are stored.
    pub fn generate(durations: CertDurations) -> Result<UploadCertificates, Error> {
        durations.check()?;
        let now = SystemTime::now();
        Ok(UploadCertificates {
            durations,
            inner: RwLock::new(Authorities {
                server: Authority::generate(SERVER_SIGNER, durations.ca, now)?,
                client: Authority::generate(CLIENT_SIGNER, durations.ca, now)?,
            }),
        })
    }

    /// Loads both CAs from their Secrets and bundle ConfigMaps in `namespace`, creating what
    /// is missing and rotating a CA inside its renew-before window. Several replicas may run
    /// it at once: whoever loses a write re-reads and adopts the winner's CA.
    pub async fn ensure(
        client: &kube::Client,
        namespace: &str,
        durations: CertDurations,
    ) -> Result<UploadCertificates, Error> {
        durations.check()?;
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

    /// Runs [`ensure`](Self::ensure)'s rotation check again and swaps in what is stored.
    pub async fn refresh(&self, client: &kube::Client, namespace: &str) -> Result<(), Error> {
        let fresh = UploadCertificates::ensure(client, namespace, self.durations).await?;
        let fresh = fresh.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn read(&self) -> RwLockReadGuard<'_, Authorities> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The data of the TLS Secret of an upload server reachable as Service `service` in
    /// `namespace` (`tls.key`, `tls.crt`, and the client-signer bundle as `ca.crt`), and when
    /// its certificate must be replaced: the pod's `DEADLINE`, `leaf_renew_before` ahead of
    /// the certificate's expiry (12 h from `now` with the default durations).
    pub fn upload_server_secret(
        &self,
        service: &str,
        namespace: &str,
        now: SystemTime,
    ) -> Result<(BTreeMap<String, String>, SystemTime), Error> {
        let names = [
            service.to_owned(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ];
        let inner = self.read();
        let signed = inner
            .server
            .sign(service, &names, Usage::Server, now, self.durations.leaf)?;
        let deadline = replace_at(signed.not_after, self.durations.leaf_renew_before, now);
        let data = BTreeMap::from([
            ("tls.crt".to_owned(), signed.cert_pem),
            ("tls.key".to_owned(), signed.key_pem),
            ("ca.crt".to_owned(), inner.client.bundle_pem()),
        ]);
        Ok((data, deadline))
    }

    /// A client certificate upload servers accept (common name [`UPLOAD_CLIENT_NAME`]), signed
    /// by the current client CA: PEM certificate and PEM key.
    pub fn client_certificate(&self, now: SystemTime) -> Result<(String, String), Error> {
        let signed = self.read().client.sign(
            UPLOAD_CLIENT_NAME,
            &[],
            Usage::Client,
            now,
            self.durations.leaf,
        )?;
        Ok((signed.cert_pem, signed.key_pem))
    }

    /// PEM bundle of the server signer: what a client trusts to reach upload servers.
    pub fn server_ca_bundle(&self) -> String {
        self.read().server.bundle_pem()
    }

    /// PEM bundle of the client signer: what upload servers trust for client certificates.
    pub fn client_ca_bundle(&self) -> String {
        self.read().client.bundle_pem()
    }
}

/// Whole seconds: X.509 and the annotations keep no fractions, so a CA's times match both.
fn whole_seconds(t: SystemTime) -> SystemTime {
    t.duration_since(UNIX_EPOCH)
        .map_or(t, |d| UNIX_EPOCH + Duration::from_secs(d.as_secs()))
}

fn later(t: SystemTime, by: Duration) -> Result<SystemTime, Error> {
    t.checked_add(by)
        .ok_or_else(|| Error::Certificate(format!("a lifetime of {by:?} overflows the clock")))
}

/// RFC 3339 in UTC, as Go's `time.RFC3339` writes it.
fn format_time(t: SystemTime) -> Result<String, Error> {
    Timestamp::try_from(t)
        .map(|t| t.to_string())
        .map_err(|e| Error::Certificate(format!("formatting a certificate time: {e}")))
}

fn parse_time(s: &str) -> Option<SystemTime> {
    s.trim().parse::<Timestamp>().ok().map(SystemTime::from)
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// The certificates of a PEM bundle, each as its own PEM block; anything between is dropped.
fn split_pem(bundle: &str) -> Vec<String> {
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

/// A CA as found in its Secret.
enum StoredCa {
    /// One this controller wrote, whose key it can sign with.
    Usable(Authority),
    /// A certificate made elsewhere, or whose key or times cannot be read: kept in the
    /// bundle until it expires, replaced as signer.
    Unusable(BundleEntry),
}

/// Reads a CA Secret; `None` when it holds no certificate at all. An unreadable expiry is
/// taken as `unknown_expiry`.
fn read_ca_secret(secret: &Secret, unknown_expiry: SystemTime) -> Option<StoredCa> {
    let data = secret.data.as_ref()?;
    // The first certificate, as this module formats PEM, so bundles compare as text.
    let cert_pem = text(data, "tls.crt").and_then(|c| split_pem(&c).into_iter().next())?;
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let time = |key: &str| annotations.get(key).and_then(|s| parse_time(s));
    let (not_before, not_after) = (time(NOT_BEFORE), time(NOT_AFTER));
    let key = text(data, "tls.key").and_then(|k| KeyPair::from_pem(&k).ok());
    match (annotations.get(COMMON_NAME), key, not_before, not_after) {
        (Some(common_name), Some(key), Some(not_before), Some(not_after)) => {
            Some(StoredCa::Usable(Authority {
                common_name: common_name.clone(),
                key,
                cert_pem: cert_pem.clone(),
                not_before,
                not_after,
                bundle: vec![BundleEntry {
                    pem: cert_pem,
                    not_after,
                }],
            }))
        }
        _ => Some(StoredCa::Unusable(BundleEntry {
            pem: cert_pem,
            not_after: not_after.unwrap_or(unknown_expiry),
        })),
    }
}

/// The certificates of a bundle ConfigMap with their expiry from [`BUNDLE_NOT_AFTER`]; when
/// that is missing or does not match, each is taken to expire at `unknown_expiry`.
fn read_bundle(map: &ConfigMap, unknown_expiry: SystemTime) -> Vec<BundleEntry> {
    let certs = map
        .data
        .as_ref()
        .and_then(|d| d.get(BUNDLE_KEY))
        .map(|b| split_pem(b))
        .unwrap_or_default();
    let times: Option<Vec<SystemTime>> = map
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BUNDLE_NOT_AFTER))
        .and_then(|v| v.split(',').map(parse_time).collect());
    let times = times
        .filter(|t| t.len() == certs.len())
        .unwrap_or_else(|| vec![unknown_expiry; certs.len()]);
    certs
        .into_iter()
        .zip(times)
        .map(|(pem, not_after)| BundleEntry { pem, not_after })
        .collect()
}

/// What [`ensure_authority`] must do for one CA.
#[derive(Debug)]
struct Plan {
    /// The CA to sign with, its bundle filled in.
    authority: Authority,
    /// The CA is new: its Secret must be written.
    write_secret: bool,
    /// The bundle ConfigMap is missing or differs from the authority's bundle.
    write_bundle: bool,
}

/// Decides, from the stored Secret and bundle ConfigMap of the CA `prefix` and the time,
/// which CA to use and what to write: the stored CA while it is outside its renew-before
/// window, else a new one; the bundle is the CA in use followed by every other certificate
/// (stored bundle and replaced CA) that has not expired.
fn plan_authority(
    prefix: &str,
    secret: Option<&Secret>,
    bundle: Option<&ConfigMap>,
    durations: CertDurations,
    now: SystemTime,
) -> Result<Plan, Error> {
    let fallback = later(now, durations.ca)?;
    let stored = secret.and_then(|s| read_ca_secret(s, fallback));
    let unknown_expiry = match &stored {
        Some(StoredCa::Usable(a)) => a.not_after,
        Some(StoredCa::Unusable(e)) => e.not_after,
        None => fallback,
    };
    let mut others = bundle
        .map(|b| read_bundle(b, unknown_expiry))
        .unwrap_or_default();
    let (mut authority, write_secret) = match stored {
        Some(StoredCa::Usable(a))
            if !needs_rotation(a.not_before, a.not_after, durations.ca_renew_before, now) =>
        {
            (a, false)
        }
        Some(StoredCa::Usable(a)) => {
            others.insert(0, a.entry());
            (Authority::generate(prefix, durations.ca, now)?, true)
        }
        Some(StoredCa::Unusable(entry)) => {
            others.insert(0, entry);
            (Authority::generate(prefix, durations.ca, now)?, true)
        }
        None => (Authority::generate(prefix, durations.ca, now)?, true),
    };
    let mut trusted = vec![authority.entry()];
    for entry in others {
        if entry.not_after > now && !trusted.iter().any(|t| t.same_certificate(&entry)) {
            trusted.push(entry);
        }
    }
    authority.bundle = trusted;
    let write_bundle = match bundle {
        None => true,
        Some(map) => {
            let stored_pem = map.data.as_ref().and_then(|d| d.get(BUNDLE_KEY));
            let stored_times = map
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(BUNDLE_NOT_AFTER));
            stored_pem != Some(&authority.bundle_pem())
                || stored_times != Some(&authority.bundle_expiries()?)
        }
    };
    Ok(Plan {
        authority,
        write_secret,
        write_bundle,
    })
}

/// The CA Secret holding `authority`: `existing` with the certificate, key and annotations
/// replaced (other fields and its resourceVersion kept), or a new `kubernetes.io/tls` Secret.
fn ca_secret(
    existing: Option<&Secret>,
    name: &str,
    namespace: &str,
    authority: &Authority,
) -> Result<Secret, Error> {
    let mut secret = existing.cloned().unwrap_or_else(|| Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        ..Default::default()
    });
    secret.metadata.managed_fields = None;
    secret
        .metadata
        .labels
        .get_or_insert_default()
        .extend(crate::datavolume::plan::cdi_labels());
    secret.metadata.annotations.get_or_insert_default().extend([
        (NOT_BEFORE.to_owned(), format_time(authority.not_before)?),
        (NOT_AFTER.to_owned(), format_time(authority.not_after)?),
        (ISSUER.to_owned(), authority.common_name.clone()),
        (COMMON_NAME.to_owned(), authority.common_name.clone()),
    ]);
    secret.data.get_or_insert_default().extend([
        (
            "tls.crt".to_owned(),
            ByteString(authority.cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_owned(),
            ByteString(authority.key.serialize_pem().into_bytes()),
        ),
    ]);
    Ok(secret)
}

/// The bundle ConfigMap of `authority`: `existing` with the bundle replaced, or a new one.
fn bundle_config_map(
    existing: Option<&ConfigMap>,
    name: &str,
    namespace: &str,
    authority: &Authority,
) -> Result<ConfigMap, Error> {
    let mut map = existing.cloned().unwrap_or_else(|| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    });
    map.metadata.managed_fields = None;
    map.metadata
        .labels
        .get_or_insert_default()
        .extend(crate::datavolume::plan::cdi_labels());
    map.metadata
        .annotations
        .get_or_insert_default()
        .insert(BUNDLE_NOT_AFTER.to_owned(), authority.bundle_expiries()?);
    map.data
        .get_or_insert_default()
        .insert(BUNDLE_KEY.to_owned(), authority.bundle_pem());
    Ok(map)
}

/// Whether a write lost a race (409: created or changed by someone else since we read it).
fn lost_race<T>(written: Result<T, kube::Error>) -> Result<bool, Error> {
    match written {
        Ok(_) => Ok(false),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Loads the CA `name` in `namespace`, creating or rotating it and bringing its bundle up to
/// date; when another writer gets there first, re-reads and decides again.
async fn ensure_authority(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    durations: CertDurations,
) -> Result<Authority, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let bundle_name = format!("{name}-bundle");
    let post = PostParams::default();
    for _ in 0..MAX_ATTEMPTS {
        let secret = secrets.get_opt(name).await?;
        let bundle = maps.get_opt(&bundle_name).await?;
        let plan = plan_authority(
            name,
            secret.as_ref(),
            bundle.as_ref(),
            durations,
            SystemTime::now(),
        )?;
        let authority = &plan.authority;
        // The Secret first: until the bundle follows, nothing has been signed by the new CA.
        if plan.write_secret {
            let object = ca_secret(secret.as_ref(), name, namespace, authority)?;
            let written = match &secret {
                None => secrets.create(&post, &object).await,
                Some(_) => secrets.replace(name, &post, &object).await,
            };
            if lost_race(written)? {
                continue;
            }
            tracing::info!(
                ca = %authority.common_name,
                namespace,
                not_after = %format_time(authority.not_after)?,
                replaced = secret.is_some(),
                "Upload certificate authority written."
            );
        }
        if plan.write_bundle {
            let object = bundle_config_map(bundle.as_ref(), &bundle_name, namespace, authority)?;
            let written = match &bundle {
                None => maps.create(&post, &object).await,
                Some(_) => maps.replace(&bundle_name, &post, &object).await,
            };
            if lost_race(written)? {
                continue;
            }
            tracing::info!(
                bundle = %bundle_name,
                namespace,
                certificates = authority.bundle.len(),
                "Upload certificate bundle written."
            );
        }
        return Ok(plan.authority);
    }
    Err(Error::Certificate(format!(
        "storing certificate authority {namespace}/{name}: other writers changed it {MAX_ATTEMPTS} \
         times in a row"
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rustls::RootCertStore;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
    use rustls::server::WebPkiClientVerifier;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// 2023-11-14T22:13:20Z, a fixed start so times in assertions are exact.
    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    fn roots(bundle: &str) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
            roots.add(cert.expect("a PEM certificate")).expect("a CA");
        }
        Arc::new(roots)
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
    }

    fn unix(t: SystemTime) -> UnixTime {
        UnixTime::since_unix_epoch(t.duration_since(UNIX_EPOCH).expect("after 1970"))
    }

    /// Whether a TLS client trusting `bundle` accepts `cert_pem` for `name` at `at`.
    fn server_verifies(bundle: &str, cert_pem: &str, name: &str, at: SystemTime) -> bool {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots(bundle), provider())
            .build()
            .expect("a verifier");
        let name = ServerName::try_from(name.to_owned()).expect("a DNS name");
        verifier
            .verify_server_cert(&der(cert_pem), &[], &name, &[], unix(at))
            .is_ok()
    }

    /// Whether a TLS server trusting `bundle` accepts the client certificate `cert_pem`.
    fn client_verifies(bundle: &str, cert_pem: &str, at: SystemTime) -> bool {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(bundle), provider())
            .build()
            .expect("a verifier");
        verifier
            .verify_client_cert(&der(cert_pem), &[], unix(at))
            .is_ok()
    }

    fn server_leaf(ca: &Authority, name: &str, at: SystemTime) -> String {
        ca.sign(name, &[name.to_owned()], Usage::Server, at, 24 * HOUR)
            .expect("a server certificate")
            .cert_pem
    }

    /// The Secret and bundle ConfigMap `ensure` would write for `plan`, as stored objects.
    fn stored(plan: &Plan) -> (Secret, ConfigMap) {
        let a = &plan.authority;
        let secret = ca_secret(None, SERVER_SIGNER, "cdi", a).expect("a Secret");
        let map = bundle_config_map(None, &format!("{SERVER_SIGNER}-bundle"), "cdi", a)
            .expect("a ConfigMap");
        (secret, map)
    }

    fn fresh_plan(now: SystemTime) -> Plan {
        plan_authority(SERVER_SIGNER, None, None, CertDurations::default(), now).expect("a plan")
    }

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

    mod rotation_decision {
        use super::*;

        fn due(now: SystemTime) -> bool {
            // Valid 48 h from t0, renewed in its last 24 h.
            needs_rotation(t0(), t0() + 48 * HOUR, 24 * HOUR, now)
        }

        #[test]
        fn fresh_ca_is_kept() {
            assert!(!due(t0() + HOUR));
            assert!(!due(t0() + 24 * HOUR - Duration::from_secs(1)));
        }

        #[test]
        fn ca_inside_its_renew_window_is_rotated() {
            assert!(due(t0() + 24 * HOUR));
            assert!(due(t0() + 47 * HOUR));
        }

        #[test]
        fn expired_ca_is_rotated() {
            assert!(due(t0() + 49 * HOUR));
        }

        #[test]
        fn ca_not_yet_valid_is_rotated() {
            assert!(due(t0() - HOUR), "the clock went back");
        }

        #[test]
        fn renew_window_longer_than_the_epoch_means_rotate() {
            assert!(needs_rotation(
                UNIX_EPOCH,
                UNIX_EPOCH + HOUR,
                2 * HOUR,
                UNIX_EPOCH + Duration::from_secs(1)
            ));
        }

        #[test]
        fn renew_before_as_long_as_the_lifetime_is_refused() {
            let durations = CertDurations {
                ca_renew_before: 48 * HOUR,
                ..CertDurations::default()
            };

            let Err(Error::Certificate(message)) = UploadCertificates::generate(durations) else {
                panic!("accepted a CA that would rotate on every check");
            };

            assert!(message.contains("CA renew-before"), "{message}");
        }
    }

    mod stored_authorities {
        use super::*;

        #[test]
        fn nothing_stored_creates_a_ca_and_its_bundle() {
            let plan = fresh_plan(t0());

            assert!(plan.write_secret && plan.write_bundle);
            let a = &plan.authority;
            assert_eq!(a.common_name, "cdi-uploadserver-signer@1700000000");
            assert_eq!(a.not_after, t0() + 48 * HOUR);
            assert_eq!(a.bundle, vec![a.entry()]);
        }

        #[test]
        fn stored_ca_records_validity_in_upstream_annotations() {
            let (secret, map) = stored(&fresh_plan(t0()));

            let ann = secret.metadata.annotations.expect("annotations");
            assert_eq!(ann[NOT_BEFORE], "2023-11-14T22:08:20Z");
            assert_eq!(ann[NOT_AFTER], "2023-11-16T22:13:20Z");
            assert_eq!(ann[ISSUER], "cdi-uploadserver-signer@1700000000");
            assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
            let ann = map.metadata.annotations.expect("annotations");
            assert_eq!(ann[BUNDLE_NOT_AFTER], "2023-11-16T22:13:20Z");
        }

        #[test]
        fn fresh_stored_ca_is_reused_without_writes() {
            let first = fresh_plan(t0());
            let (secret, map) = stored(&first);

            let again = plan_authority(
                SERVER_SIGNER,
                Some(&secret),
                Some(&map),
                CertDurations::default(),
                t0() + HOUR,
            )
            .expect("a plan");

            assert!(!again.write_secret && !again.write_bundle);
            assert_eq!(again.authority.cert_pem, first.authority.cert_pem);
            let leaf = server_leaf(&again.authority, "x.ns.svc", t0() + HOUR);
            let bundle = first.authority.bundle_pem();
            assert!(server_verifies(&bundle, &leaf, "x.ns.svc", t0() + HOUR));
        }

        #[test]
        fn rotated_bundle_trusts_leaves_of_the_old_and_the_new_ca() {
            let old = fresh_plan(t0());
            let (secret, map) = stored(&old);
            let old_leaf = server_leaf(&old.authority, "x.ns.svc", t0() + 20 * HOUR);
            let now = t0() + 25 * HOUR;

            let rotated = plan_authority(
                SERVER_SIGNER,
                Some(&secret),
                Some(&map),
                CertDurations::default(),
                now,
            )
            .expect("a plan");

            assert!(rotated.write_secret && rotated.write_bundle);
            let new = &rotated.authority;
            assert_ne!(new.cert_pem, old.authority.cert_pem);
            assert_eq!(new.bundle, vec![new.entry(), old.authority.entry()]);
            let bundle = new.bundle_pem();
            assert_eq!(split_pem(&bundle).len(), 2);
            let new_leaf = server_leaf(new, "x.ns.svc", now);
            assert!(server_verifies(&bundle, &old_leaf, "x.ns.svc", now));
            assert!(server_verifies(&bundle, &new_leaf, "x.ns.svc", now));
        }

        #[test]
        fn expired_ca_leaves_the_bundle_without_a_rotation() {
            // Renewed 12 h before expiry: the replacement made at 36 h is still fresh at 49 h,
            // when the CA it replaced has expired.
            let durations = CertDurations {
                ca_renew_before: 12 * HOUR,
                ..CertDurations::default()
            };
            let first = fresh_plan(t0());
            let (secret, map) = stored(&first);
            let rotated = plan_authority(
                SERVER_SIGNER,
                Some(&secret),
                Some(&map),
                durations,
                t0() + 36 * HOUR,
            )
            .expect("a plan");
            assert_eq!(rotated.authority.bundle.len(), 2);
            let (secret, map) = stored(&rotated);

            let later = plan_authority(
                SERVER_SIGNER,
                Some(&secret),
                Some(&map),
                durations,
                t0() + 49 * HOUR,
            )
            .expect("a plan");

            assert!(!later.write_secret && later.write_bundle);
            assert_eq!(later.authority.cert_pem, rotated.authority.cert_pem);
            assert_eq!(later.authority.bundle, vec![rotated.authority.entry()]);
        }

        #[test]
        fn bundle_missing_the_current_ca_is_repaired() {
            let first = fresh_plan(t0());
            let (secret, _) = stored(&first);
            let stale = ConfigMap {
                data: Some(BTreeMap::from([(BUNDLE_KEY.to_owned(), String::new())])),
                ..Default::default()
            };

            let plan = plan_authority(
                SERVER_SIGNER,
                Some(&secret),
                Some(&stale),
                CertDurations::default(),
                t0() + HOUR,
            )
            .expect("a plan");

            assert!(!plan.write_secret && plan.write_bundle);
            assert_eq!(plan.authority.bundle_pem(), first.authority.cert_pem);
        }

        #[test]
        fn ca_made_elsewhere_is_replaced_but_trusted_until_it_expires() {
            // As upstream's operator leaves it: library-go annotations, no commonName of ours.
            let theirs = fresh_plan(t0()).authority;
            let mut secret = ca_secret(None, SERVER_SIGNER, "cdi", &theirs).expect("a Secret");
            if let Some(a) = secret.metadata.annotations.as_mut() {
                a.remove(COMMON_NAME);
            }
            let their_leaf = server_leaf(&theirs, "x.ns.svc", t0());
            let now = t0() + HOUR;

            let plan = plan_authority(
                SERVER_SIGNER,
                Some(&secret),
                None,
                CertDurations::default(),
                now,
            )
            .expect("a plan");

            assert!(plan.write_secret && plan.write_bundle);
            assert_ne!(plan.authority.cert_pem, theirs.cert_pem);
            assert_eq!(plan.authority.bundle[1], theirs.entry());
            let bundle = plan.authority.bundle_pem();
            assert!(server_verifies(&bundle, &their_leaf, "x.ns.svc", now));
        }

        #[test]
        fn debug_output_shows_no_keys() {
            let certs = UploadCertificates::generate(CertDurations::default()).expect("CAs");

            let shown = format!("{certs:?}");

            assert!(shown.contains("cdi-uploadserver-client-signer@"), "{shown}");
            assert!(!shown.contains("PRIVATE"), "{shown}");
        }
    }

    /// `ensure` and `refresh` against an in-memory API server.
    mod api {
        use http::{Request, Response};
        use kube::client::Body;
        use serde_json::{Value, json};

        use super::*;

        const NS: &str = "cdi";

        /// Objects by API path, with resourceVersions checked on PUT as the API server does.
        #[derive(Default)]
        struct Store {
            objects: BTreeMap<String, Value>,
            /// Objects another replica writes just before our next POST to this path.
            race: Option<(String, Vec<(String, Value)>)>,
            writes: Vec<String>,
            version: u64,
        }

        fn status(code: u16, reason: &str) -> Value {
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": reason, "code": code, "message": reason})
        }

        impl Store {
            fn put(&mut self, path: String, mut object: Value) -> Value {
                self.version += 1;
                object["metadata"]["resourceVersion"] = json!(self.version.to_string());
                self.objects.insert(path, object.clone());
                object
            }

            fn handle(&mut self, method: &str, path: &str, body: Value) -> (u16, Value) {
                if method != "GET" {
                    self.writes.push(format!("{method} {path}"));
                }
                match method {
                    "GET" => match self.objects.get(path) {
                        Some(o) => (200, o.clone()),
                        None => (404, status(404, "NotFound")),
                    },
                    "POST" => {
                        if self.race.as_ref().is_some_and(|(p, _)| p == path)
                            && let Some((_, theirs)) = self.race.take()
                        {
                            for (p, o) in theirs {
                                self.put(p, o);
                            }
                        }
                        let name = body["metadata"]["name"].as_str().unwrap_or("");
                        let item = format!("{path}/{name}");
                        if self.objects.contains_key(&item) {
                            return (409, status(409, "AlreadyExists"));
                        }
                        (201, self.put(item, body))
                    }
                    "PUT" => {
                        let current = self
                            .objects
                            .get(path)
                            .map(|o| o["metadata"]["resourceVersion"].clone());
                        if current != Some(body["metadata"]["resourceVersion"].clone()) {
                            return (409, status(409, "Conflict"));
                        }
                        (200, self.put(path.to_owned(), body))
                    }
                    _ => (405, status(405, "MethodNotAllowed")),
                }
            }
        }

        fn mock_client() -> (kube::Client, Arc<Mutex<Store>>) {
            let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
            let store: Arc<Mutex<Store>> = Arc::default();
            let served = store.clone();
            tokio::spawn(async move {
                while let Some((request, send)) = handle.next_request().await {
                    let method = request.method().to_string();
                    let path = request.uri().path().to_owned();
                    let bytes = request.into_body().collect_bytes().await.expect("a body");
                    let body = serde_json::from_slice(&bytes).unwrap_or_default();
                    let (code, answer) = served
                        .lock()
                        .expect("the store")
                        .handle(&method, &path, body);
                    let response = Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&answer).expect("JSON")))
                        .expect("a response");
                    send.send_response(response);
                }
            });
            (kube::Client::new(service, NS), store)
        }

        fn path(kind: &str, name: &str) -> String {
            format!("/api/v1/namespaces/{NS}/{kind}/{name}")
        }

        fn writes(store: &Arc<Mutex<Store>>) -> Vec<String> {
            std::mem::take(&mut store.lock().expect("the store").writes)
        }

        #[tokio::test]
        async fn ensure_creates_both_cas_once_and_then_reuses_them() {
            let (client, store) = mock_client();

            let first = UploadCertificates::ensure(&client, NS, CertDurations::default())
                .await
                .expect("CAs created");
            let created = writes(&store);
            let second = UploadCertificates::ensure(&client, NS, CertDurations::default())
                .await
                .expect("CAs loaded");

            assert_eq!(
                created,
                [
                    "POST /api/v1/namespaces/cdi/secrets",
                    "POST /api/v1/namespaces/cdi/configmaps",
                    "POST /api/v1/namespaces/cdi/secrets",
                    "POST /api/v1/namespaces/cdi/configmaps",
                ]
            );
            assert_eq!(writes(&store), Vec::<String>::new());
            assert_eq!(first.server_ca_bundle(), second.server_ca_bundle());
            assert_eq!(first.client_ca_bundle(), second.client_ca_bundle());
            let stored = store.lock().expect("the store").objects
                [&path("configmaps", "cdi-uploadserver-client-signer-bundle")]
                .clone();
            assert_eq!(stored["data"][BUNDLE_KEY], json!(first.client_ca_bundle()));
            let (cert, _) = second
                .client_certificate(SystemTime::now())
                .expect("a cert");
            assert!(client_verifies(
                &first.client_ca_bundle(),
                &cert,
                SystemTime::now()
            ));
        }

        #[tokio::test]
        async fn replica_losing_the_create_race_adopts_the_winners_ca() {
            let (client, store) = mock_client();
            let winner = fresh_plan(SystemTime::now());
            let (secret, map) = stored(&winner);
            store.lock().expect("the store").race = Some((
                format!("/api/v1/namespaces/{NS}/secrets"),
                vec![
                    (
                        path("secrets", SERVER_SIGNER),
                        serde_json::to_value(&secret).expect("JSON"),
                    ),
                    (
                        path("configmaps", "cdi-uploadserver-signer-bundle"),
                        serde_json::to_value(&map).expect("JSON"),
                    ),
                ],
            ));

            let certs = UploadCertificates::ensure(&client, NS, CertDurations::default())
                .await
                .expect("CAs");

            assert_eq!(certs.server_ca_bundle(), winner.authority.bundle_pem());
            assert_eq!(
                writes(&store),
                [
                    "POST /api/v1/namespaces/cdi/secrets",
                    "POST /api/v1/namespaces/cdi/secrets",
                    "POST /api/v1/namespaces/cdi/configmaps",
                ],
                "the lost create, then only the client CA and its bundle"
            );
        }

        #[tokio::test]
        async fn refresh_rotates_a_ca_whose_expiry_was_shortened_by_hand() {
            let (client, store) = mock_client();
            let certs = UploadCertificates::ensure(&client, NS, CertDurations::default())
                .await
                .expect("CAs");
            let old_bundle = certs.server_ca_bundle();
            let now = SystemTime::now();
            let (old_secret, _) = certs
                .upload_server_secret("s", "ns", now)
                .expect("a secret");
            writes(&store);
            {
                // What upstream's rotation test does: not-after one second past not-before.
                let mut store = store.lock().expect("the store");
                let ann = &mut store
                    .objects
                    .get_mut(&path("secrets", SERVER_SIGNER))
                    .expect("CA")["metadata"]["annotations"];
                let not_before =
                    parse_time(ann[NOT_BEFORE].as_str().expect("set")).expect("a time");
                ann[NOT_AFTER] =
                    json!(format_time(not_before + Duration::from_secs(1)).expect("a time"));
            }

            certs.refresh(&client, NS).await.expect("refreshed");

            assert_eq!(
                writes(&store),
                [
                    format!("PUT {}", path("secrets", SERVER_SIGNER)),
                    format!(
                        "PUT {}",
                        path("configmaps", "cdi-uploadserver-signer-bundle")
                    ),
                ]
            );
            let bundle = certs.server_ca_bundle();
            assert_eq!(
                split_pem(&bundle).len(),
                2,
                "the new CA and the one it replaced"
            );
            assert!(bundle.ends_with(&old_bundle));
            assert!(server_verifies(
                &bundle,
                &old_secret["tls.crt"],
                "s.ns.svc",
                now
            ));
            let (new_secret, _) = certs
                .upload_server_secret("s", "ns", now)
                .expect("a secret");
            assert!(!server_verifies(
                &old_bundle,
                &new_secret["tls.crt"],
                "s.ns.svc",
                now
            ));
            assert!(server_verifies(
                &bundle,
                &new_secret["tls.crt"],
                "s.ns.svc",
                now
            ));
        }
    }
}
