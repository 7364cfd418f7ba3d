//! Cross-namespace clones: the requester's right to read the source was checked when the
//! DataVolume was created (`cdi-apiserver`'s mutating webhook asks a SubjectAccessReview and
//! adds a clone token, signed by its key, naming source and target). Before anything is
//! created, the token is checked here; without a valid one the DataVolume fails.

use std::time::SystemTime;

use cdi_crds::DataVolume;
use cdi_crds::annotations::clone;
use cdi_token::{CloneRequest, CloneSourceKind, Validator};

use super::source::CloneSource;
use crate::Context;
use crate::datavolume::plan::PlanError;

/// Upstream's event reason for a clone that cannot be done.
const REASON: &str = "ErrUnableToClone";

/// Checks that `dv` may clone `source` from another namespace, against the trusted keys.
pub fn check(ctx: &Context, dv: &DataVolume, source: &CloneSource) -> Result<(), PlanError> {
    check_with(ctx.clone_tokens.as_deref(), dv, source, SystemTime::now())
}

/// [`check`] with the validator and the time given.
pub fn check_with(
    validator: Option<&Validator>,
    dv: &DataVolume,
    source: &CloneSource,
    now: SystemTime,
) -> Result<(), PlanError> {
    let target_ns = dv.metadata.namespace.as_deref().unwrap_or_default();
    let target = dv.metadata.name.as_deref().unwrap_or_default();
    let denied = |why: String| {
        PlanError::failed(
            REASON,
            format!(
                "cloning {} into namespace {target_ns} is not authorized: {why}",
                source.describe()
            ),
        )
    };
    let Some(validator) = validator else {
        return Err(denied(
            "this controller was not given cdi-apiserver's token key (--token-public-key), so \
             it cannot check cross-namespace clones"
                .into(),
        ));
    };
    let token = dv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(clone::TOKEN));
    if token.is_none() {
        return Err(denied(format!(
            "the DataVolume carries no {} annotation, which cdi-apiserver's webhook adds when \
             the creator may clone from {}; check that the webhook is installed",
            clone::TOKEN,
            source.namespace()
        )));
    }
    let (kind, namespace, name) = match source {
        CloneSource::Pvc { namespace, name } => (CloneSourceKind::Pvc, namespace, name),
        CloneSource::Snapshot { namespace, name } => (CloneSourceKind::Snapshot, namespace, name),
    };
    let request = CloneRequest {
        source: cdi_token::CloneSource {
            kind,
            namespace: namespace.clone(),
            name: name.clone(),
        },
        target_namespace: target_ns.to_owned(),
        target_name: target.to_owned(),
    };
    validator
        .validate_clone(token.map(String::as_str), &request, now)
        .map(|_| ())
        .map_err(|e| denied(format!("its clone token is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::fixtures::dv;
    use cdi_token::{Issuer, Payload};
    use serde_json::json;

    fn keys() -> (String, String) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        (pair.serialize_pem(), pair.public_key_pem())
    }

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn source() -> CloneSource {
        CloneSource::Pvc {
            namespace: "golden".into(),
            name: "fedora".into(),
        }
    }

    fn with_token(token: Option<String>) -> DataVolume {
        let mut d = dv(
            "vm-disk",
            json!({"pvc": {"namespace": "golden", "name": "fedora"}}),
        );
        if let Some(t) = token {
            d.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(clone::TOKEN.into(), t);
        }
        d
    }

    /// A case: name, the validator, the token, when it is checked, and what a refusal says.
    type Case<'a> = (
        &'static str,
        Option<&'a Validator>,
        Option<String>,
        SystemTime,
        Option<&'static str>,
    );

    #[test]
    fn only_a_valid_token_for_this_source_and_target_authorizes() {
        let (private, public) = keys();
        let (other_private, _) = keys();
        let issuer = Issuer::from_rsa_pem(private.as_bytes()).expect("issuer");
        let forger = Issuer::from_rsa_pem(other_private.as_bytes()).expect("issuer");
        let validator = Validator::from_public_pem(public.as_bytes()).expect("validator");
        let ns = crate::fixtures::NAMESPACE;
        let right = Payload::clone_claim("fedora", "golden", "vm-disk", ns);
        let token =
            |issuer: &Issuer, payload: &Payload| Some(issuer.issue(payload, t0()).expect("token"));
        let cases: Vec<Case> = vec![
            (
                "valid",
                Some(&validator),
                token(&issuer, &right),
                t0(),
                None,
            ),
            (
                "no key",
                None,
                token(&issuer, &right),
                t0(),
                Some("--token-public-key"),
            ),
            (
                "no token",
                Some(&validator),
                None,
                t0(),
                Some("webhook is installed"),
            ),
            (
                "signed by another key",
                Some(&validator),
                token(&forger, &right),
                t0(),
                Some("not valid"),
            ),
            (
                "expired",
                Some(&validator),
                token(&issuer, &right),
                t0() + Duration::from_secs(3600),
                Some("not valid"),
            ),
            (
                "another target",
                Some(&validator),
                token(
                    &issuer,
                    &Payload::clone_claim("fedora", "golden", "other-disk", ns),
                ),
                t0(),
                Some("not valid"),
            ),
            (
                "another source",
                Some(&validator),
                token(
                    &issuer,
                    &Payload::clone_claim("secret-db", "golden", "vm-disk", ns),
                ),
                t0(),
                Some("not valid"),
            ),
        ];
        for (name, validator, token, now, refused) in cases {
            let result = check_with(validator, &with_token(token), &source(), now);
            match (result, refused) {
                (Ok(()), None) => {}
                (Err(e), Some(text)) => {
                    assert!(e.terminal, "{name}: a denial fails the DataVolume");
                    assert_eq!(e.reason, REASON, "{name}");
                    assert!(e.message.contains(text), "{name}: {}", e.message);
                    assert!(
                        e.message.contains("claim golden/fedora"),
                        "{name}: {}",
                        e.message
                    );
                }
                (other, _) => panic!("{name}: {other:?}"),
            }
        }
    }
}
