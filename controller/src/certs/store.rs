//! The stored form of the upload CAs: a `kubernetes.io/tls` Secret per CA and a bundle
//! ConfigMap beside it. `plan_authority` decides what to write from what is stored and the
//! time; `ensure_authority` reads, plans and writes.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::KeyPair;

use super::authority::{Authority, BundleEntry, split_pem};
use super::{BUNDLE_KEY, CertDurations, format_time, later, needs_rotation, parse_time};
use crate::Error;

/// When a CA became valid (RFC 3339), as library-go records it.
pub(super) const NOT_BEFORE: &str = "auth.openshift.io/certificate-not-before";
/// When a CA expires (RFC 3339), as library-go records it.
pub(super) const NOT_AFTER: &str = "auth.openshift.io/certificate-not-after";
/// The common name of the certificate's issuer (a CA's own, as it signs itself).
pub(super) const ISSUER: &str = "auth.openshift.io/certificate-issuer";
/// The common name this controller gave a CA: it rebuilds the issuer name from it, so a CA
/// without it (made by upstream's operator) is trusted until it expires but replaced at once.
pub(super) const COMMON_NAME: &str = "cdi.kubevirt.io/cert.commonName";
/// On a bundle ConfigMap: the expiry of each of its certificates, in order, comma-separated.
pub(super) const BUNDLE_NOT_AFTER: &str = "cdi.kubevirt.io/ca-bundle.notAfter";

/// Writes attempted for one CA before giving up on replicas that keep racing us.
const MAX_ATTEMPTS: usize = 5;

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// A CA as found in its Secret.
pub(super) enum StoredCa {
    /// One this controller wrote, whose key it can sign with.
    Usable(Authority),
    /// A certificate made elsewhere, or whose key or times cannot be read: kept in the
    /// bundle until it expires, replaced as signer.
    Unusable(BundleEntry),
}

/// Reads a CA Secret; `None` when it holds no certificate at all. An unreadable expiry is
/// taken as `unknown_expiry`.
pub(super) fn read_ca_secret(secret: &Secret, unknown_expiry: SystemTime) -> Option<StoredCa> {
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
pub(super) fn read_bundle(map: &ConfigMap, unknown_expiry: SystemTime) -> Vec<BundleEntry> {
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
pub(super) struct Plan {
    /// The CA to sign with, its bundle filled in.
    pub(super) authority: Authority,
    /// The CA is new: its Secret must be written.
    pub(super) write_secret: bool,
    /// The bundle ConfigMap is missing or differs from the authority's bundle.
    pub(super) write_bundle: bool,
}

/// Decides, from the stored Secret and bundle ConfigMap of the CA `prefix` and the time,
/// which CA to use and what to write: the stored CA while it is outside its renew-before
/// window, else a new one; the bundle is the CA in use followed by every other certificate
/// (stored bundle and replaced CA) that has not expired.
pub(super) fn plan_authority(
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
pub(super) fn ca_secret(
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
pub(super) fn bundle_config_map(
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
pub(super) fn lost_race<T>(written: Result<T, kube::Error>) -> Result<bool, Error> {
    match written {
        Ok(_) => Ok(false),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Loads the CA `name` in `namespace`, creating or rotating it and bringing its bundle up to
/// date; when another writer gets there first, re-reads and decides again.
pub(super) async fn ensure_authority(
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
    use super::super::testing::*;
    use super::*;
    use crate::certs::*;

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
}
