//! Helpers shared by the certificate tests: fixed times, and rustls verifiers that check what
//! TLS clients and servers would accept.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use rustls::server::WebPkiClientVerifier;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::authority::*;
use super::store::*;
use super::*;

pub(super) const HOUR: Duration = Duration::from_secs(3600);

/// 2023-11-14T22:13:20Z, a fixed start so times in assertions are exact.
pub(super) fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub(super) fn roots(bundle: &str) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(cert.expect("a PEM certificate")).expect("a CA");
    }
    Arc::new(roots)
}

pub(super) fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
}

pub(super) fn unix(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(UNIX_EPOCH).expect("after 1970"))
}

/// Whether a TLS client trusting `bundle` accepts `cert_pem` for `name` at `at`.
pub(super) fn server_verifies(bundle: &str, cert_pem: &str, name: &str, at: SystemTime) -> bool {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(bundle), provider())
        .build()
        .expect("a verifier");
    let name = ServerName::try_from(name.to_owned()).expect("a DNS name");
    verifier
        .verify_server_cert(&der(cert_pem), &[], &name, &[], unix(at))
        .is_ok()
}

/// Whether a TLS server trusting `bundle` accepts the client certificate `cert_pem`.
pub(super) fn client_verifies(bundle: &str, cert_pem: &str, at: SystemTime) -> bool {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(bundle), provider())
        .build()
        .expect("a verifier");
    verifier
        .verify_client_cert(&der(cert_pem), &[], unix(at))
        .is_ok()
}

pub(super) fn server_leaf(ca: &Authority, name: &str, at: SystemTime) -> String {
    ca.sign(name, &[name.to_owned()], Usage::Server, at, 24 * HOUR)
        .expect("a server certificate")
        .cert_pem
}

/// The Secret and bundle ConfigMap `ensure` would write for `plan`, as stored objects.
pub(super) fn stored(plan: &Plan) -> (Secret, ConfigMap) {
    let a = &plan.authority;
    let secret = ca_secret(None, SERVER_SIGNER, "cdi", a).expect("a Secret");
    let map =
        bundle_config_map(None, &format!("{SERVER_SIGNER}-bundle"), "cdi", a).expect("a ConfigMap");
    (secret, map)
}

pub(super) fn fresh_plan(now: SystemTime) -> Plan {
    plan_authority(SERVER_SIGNER, None, None, CertDurations::default(), now).expect("a plan")
}
