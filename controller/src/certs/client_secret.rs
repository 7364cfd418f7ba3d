//! The upload proxy's client certificate, kept in Secret [`CLIENT_CERT_SECRET`] beside the CAs:
//! signed by the client CA (upload servers trust it), reissued before it expires. Which write
//! is due is a pure function of the stored Secret and the time.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use super::store::{NOT_AFTER, lost_race};
use super::{CertDurations, UploadCertificates, format_time, parse_time};
use crate::Error;

/// Secret holding the proxy's client certificate (`tls.crt`, `tls.key`), as upstream names it.
pub const CLIENT_CERT_SECRET: &str = "cdi-uploadserver-client-cert";

/// Whether the stored Secret must be (re)written at `now`: missing, unreadable, or inside its
/// renew-before window.
pub fn needs_write(stored: Option<&Secret>, durations: CertDurations, now: SystemTime) -> bool {
    let Some(secret) = stored else {
        return true;
    };
    let has_data = secret
        .data
        .as_ref()
        .is_some_and(|d| d.contains_key("tls.crt") && d.contains_key("tls.key"));
    let not_after = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NOT_AFTER))
        .and_then(|t| parse_time(t));
    match (has_data, not_after) {
        (true, Some(t)) => {
            super::needs_rotation(SystemTime::UNIX_EPOCH, t, durations.leaf_renew_before, now)
        }
        _ => true,
    }
}

/// The Secret object for a freshly signed client certificate.
fn secret(namespace: &str, certs: &UploadCertificates, now: SystemTime) -> Result<Secret, Error> {
    let (cert, key, not_after) = certs.client_certificate_with_expiry(now)?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(CLIENT_CERT_SECRET.into()),
            namespace: Some(namespace.into()),
            annotations: Some(BTreeMap::from([(
                NOT_AFTER.to_owned(),
                format_time(not_after)?,
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(cert.into_bytes())),
            ("tls.key".to_owned(), ByteString(key.into_bytes())),
        ])),
        ..Secret::default()
    })
}

/// Writes the proxy's client certificate Secret when it is missing or due.
pub async fn ensure(
    client: &kube::Client,
    namespace: &str,
    certs: &UploadCertificates,
) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let stored = secrets.get_opt(CLIENT_CERT_SECRET).await?;
    let now = SystemTime::now();
    if !needs_write(stored.as_ref(), certs.durations, now) {
        return Ok(());
    }
    let object = secret(namespace, certs, now)?;
    let post = PostParams::default();
    let written = match &stored {
        None => secrets.create(&post, &object).await,
        Some(s) => {
            let mut object = object;
            object.metadata.resource_version = s.metadata.resource_version.clone();
            secrets.replace(CLIENT_CERT_SECRET, &post, &object).await
        }
    };
    // Another replica wrote a fresh one first: theirs serves as well as ours.
    if !lost_race(written)? {
        tracing::info!(
            namespace,
            secret = CLIENT_CERT_SECRET,
            "Upload proxy client certificate written."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stored(not_after: Option<&str>, with_data: bool) -> Secret {
        Secret {
            metadata: ObjectMeta {
                annotations: not_after
                    .map(|t| BTreeMap::from([(NOT_AFTER.to_owned(), t.to_owned())])),
                ..ObjectMeta::default()
            },
            data: with_data.then(|| {
                BTreeMap::from([
                    ("tls.crt".to_owned(), ByteString(b"c".to_vec())),
                    ("tls.key".to_owned(), ByteString(b"k".to_vec())),
                ])
            }),
            ..Secret::default()
        }
    }

    #[test]
    fn missing_unreadable_or_due_secrets_are_written_and_fresh_ones_kept() {
        let d = CertDurations::default();
        let now = parse_time("2026-12-02T12:00:00Z").expect("time");
        let later =
            format_time(now + d.leaf_renew_before + Duration::from_secs(3600)).expect("fmt");
        let soon = format_time(now + d.leaf_renew_before - Duration::from_secs(60)).expect("fmt");
        assert!(needs_write(None, d, now));
        assert!(needs_write(Some(&stored(None, true)), d, now));
        assert!(needs_write(Some(&stored(Some(&later), false)), d, now));
        assert!(needs_write(Some(&stored(Some(&soon), true)), d, now));
        assert!(!needs_write(Some(&stored(Some(&later), true)), d, now));
    }

    #[test]
    fn written_secret_records_the_certificates_expiry() {
        let certs = UploadCertificates::generate(CertDurations::default()).expect("certs");
        let now = SystemTime::now();
        let s = secret("cdi", &certs, now).expect("secret");
        assert!(!needs_write(Some(&s), CertDurations::default(), now));
        let data = s.data.expect("data");
        let cert = String::from_utf8(data["tls.crt"].0.clone()).expect("pem");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
