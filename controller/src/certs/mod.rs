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
//! (`store::plan_authority`) of the stored objects and the time; `store::ensure_authority`
//! only reads, calls it and writes, re-reading when another replica wrote first (409).
//! `authority` holds the certificate work itself (generating, signing, bundles), with no I/O.

mod authority;
pub mod client_secret;
mod store;
#[cfg(test)]
mod testing;

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::Timestamp;

use self::authority::{Authority, Usage};
use self::store::ensure_authority;
use crate::Error;

/// The client certificate name upload servers accept (their `CLIENT_NAME`).
pub const UPLOAD_CLIENT_NAME: &str = "client.upload-server.cdi.kubevirt.io";
/// Secret of the CA that signs upload servers' serving certificates.
pub const SERVER_SIGNER: &str = "cdi-uploadserver-signer";
/// Secret of the CA that signs the upload proxy's client certificates.
pub const CLIENT_SIGNER: &str = "cdi-uploadserver-client-signer";
/// ConfigMap key of a CA bundle.
pub const BUNDLE_KEY: &str = "ca-bundle.crt";

/// The longest lifetime accepted, which keeps every time computed here within range.
const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

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

    /// A client certificate with common name `name` (a cloner's: the upload server of a clone
    /// target accepts only the name of its clone), signed by the current client CA: PEM
    /// certificate and PEM key.
    pub fn client_certificate_named(
        &self,
        name: &str,
        now: SystemTime,
    ) -> Result<(String, String), Error> {
        let signed = self
            .read()
            .client
            .sign(name, &[], Usage::Client, now, self.durations.leaf)?;
        Ok((signed.cert_pem, signed.key_pem))
    }

    /// As [`client_certificate`](Self::client_certificate), with the certificate's expiry.
    pub fn client_certificate_with_expiry(
        &self,
        now: SystemTime,
    ) -> Result<(String, String, SystemTime), Error> {
        let signed = self.read().client.sign(
            UPLOAD_CLIENT_NAME,
            &[],
            Usage::Client,
            now,
            self.durations.leaf,
        )?;
        Ok((signed.cert_pem, signed.key_pem, signed.not_after))
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
pub(super) fn whole_seconds(t: SystemTime) -> SystemTime {
    t.duration_since(UNIX_EPOCH)
        .map_or(t, |d| UNIX_EPOCH + Duration::from_secs(d.as_secs()))
}

pub(super) fn later(t: SystemTime, by: Duration) -> Result<SystemTime, Error> {
    t.checked_add(by)
        .ok_or_else(|| Error::Certificate(format!("a lifetime of {by:?} overflows the clock")))
}

/// RFC 3339 in UTC, as Go's `time.RFC3339` writes it.
pub(super) fn format_time(t: SystemTime) -> Result<String, Error> {
    Timestamp::try_from(t)
        .map(|t| t.to_string())
        .map_err(|e| Error::Certificate(format!("formatting a certificate time: {e}")))
}

pub(super) fn parse_time(s: &str) -> Option<SystemTime> {
    s.trim().parse::<Timestamp>().ok().map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::authority::split_pem;
    use super::store::{NOT_AFTER, NOT_BEFORE};
    use super::testing::*;
    use super::*;

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
