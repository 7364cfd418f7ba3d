//! Checking tokens (the upload proxy's side).

use std::fmt;
use std::time::{Duration, SystemTime};

use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::claims::{Claims, unix_seconds};
use crate::pem;
use crate::{API_SERVER_ISSUER, GroupVersionResource, LEEWAY, Operation, Payload, TokenError};

/// Checks tokens against one or more RSA public keys (several while keys rotate): the PS256
/// signature, `iss`, the times with a leeway, then the payload.
#[derive(Clone)]
pub struct Validator {
    keys: Vec<DecodingKey>,
    issuer: String,
    leeway: Duration,
    jwt: Validation,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl Validator {
    /// A validator trusting every key of the PEM bundle `pem` (`PUBLIC KEY` or
    /// `RSA PUBLIC KEY` blocks; text between blocks is ignored), for tokens of
    /// [`API_SERVER_ISSUER`] with [`LEEWAY`].
    pub fn from_public_pem(pem: &[u8]) -> Result<Self, TokenError> {
        let text = String::from_utf8_lossy(pem);
        let blocks = pem::blocks(&text);
        if blocks.is_empty() {
            return Err(TokenError::NoPublicKey);
        }
        let mut keys = Vec::with_capacity(blocks.len());
        for (index, block) in blocks.iter().enumerate() {
            if !matches!(block.label, "PUBLIC KEY" | "RSA PUBLIC KEY") {
                return Err(TokenError::NotAPublicKey(block.label.to_owned()));
            }
            let key = DecodingKey::from_rsa_pem(block.text.as_bytes())
                .map_err(|source| TokenError::ReadingPublicKey { index, source })?;
            keys.push(key);
        }

        // Only the signature and the shape are left to jsonwebtoken: times are checked below
        // against the `now` we are given, the issuer to report it.
        let mut jwt = Validation::new(Algorithm::PS256);
        jwt.required_spec_claims.clear();
        jwt.validate_exp = false;
        jwt.validate_nbf = false;
        jwt.validate_aud = false;
        Ok(Validator {
            keys,
            issuer: API_SERVER_ISSUER.to_owned(),
            leeway: LEEWAY,
            jwt,
        })
    }

    /// The same keys, trusting another issuer.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// The same keys, another clock-skew allowance.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How many keys are trusted.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The payload of an upload token, checked at `now`: see [`Validator::validate_for`].
    pub fn validate(&self, token: &str, now: SystemTime) -> Result<Payload, TokenError> {
        self.validate_for(token, &Operation::Upload, now)
    }

    /// The payload of a token for `operation`, checked at `now`: signature, issuer, times,
    /// then the operation, the resource (`persistentvolumeclaims`) and a non-empty name and
    /// namespace. [`TokenError::kind`] tells the untrusted (401) from the misused (400).
    pub fn validate_for(
        &self,
        token: &str,
        operation: &Operation,
        now: SystemTime,
    ) -> Result<Payload, TokenError> {
        self.validate_payload(
            token,
            operation,
            &GroupVersionResource::persistent_volume_claims(),
            now,
        )
    }

    /// The payload of a token for `operation` on `resource`, checked at `now`.
    pub(crate) fn validate_payload(
        &self,
        token: &str,
        operation: &Operation,
        resource: &GroupVersionResource,
        now: SystemTime,
    ) -> Result<Payload, TokenError> {
        let claims = self.verified_claims(token)?;
        self.check_registered(&claims, now)?;
        check_payload(&claims.payload, operation, resource)?;
        Ok(claims.payload)
    }

    fn verified_claims(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(TokenError::Malformed)?;
        if header.alg != Algorithm::PS256 {
            return Err(TokenError::WrongAlgorithm(format!("{:?}", header.alg)));
        }
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.jwt) {
                Ok(data) => return Ok(data.claims),
                Err(e) if *e.kind() == JwtErrorKind::InvalidSignature => continue,
                Err(e) => return Err(TokenError::Malformed(e)),
            }
        }
        Err(TokenError::BadSignature)
    }

    fn check_registered(&self, claims: &Claims, now: SystemTime) -> Result<(), TokenError> {
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer {
                found: claims.iss.clone(),
                expected: self.issuer.clone(),
            });
        }
        let now = unix_seconds(now);
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        if let Some(expired_at) = claims.exp
            && now.saturating_sub(leeway) > expired_at
        {
            return Err(TokenError::Expired { expired_at });
        }
        for not_before in [claims.nbf, claims.iat].into_iter().flatten() {
            if now.saturating_add(leeway) < not_before {
                return Err(TokenError::NotYetValid { not_before });
            }
        }
        Ok(())
    }
}

fn check_payload(
    payload: &Payload,
    operation: &Operation,
    resource: &GroupVersionResource,
) -> Result<(), TokenError> {
    if &payload.operation != operation {
        return Err(TokenError::WrongOperation {
            found: payload.operation.as_str().to_owned(),
            expected: operation.clone(),
        });
    }
    if payload.resource.resource != resource.resource {
        return Err(TokenError::WrongResource {
            found: payload.resource.resource.clone(),
            expected: resource.resource.clone(),
        });
    }
    if payload.name.is_empty() {
        return Err(TokenError::MissingName);
    }
    if payload.namespace.is_empty() {
        return Err(TokenError::MissingNamespace);
    }
    Ok(())
}
