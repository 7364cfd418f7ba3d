//! Making tokens (the API server's side).

use std::fmt;
use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::claims::{Claims, unix_seconds};
use crate::pem;
use crate::{API_SERVER_ISSUER, Payload, TOKEN_LIFETIME, TokenError};

/// Signs tokens with an RSA private key: PS256, `iss` = [`API_SERVER_ISSUER`] and a lifetime of
/// [`TOKEN_LIFETIME`] unless changed (extended clone tokens:
/// `.with_issuer(CONTROLLER_ISSUER).with_lifetime(EXTENDED_CLONE_TOKEN_LIFETIME)`).
#[derive(Clone)]
pub struct Issuer {
    key: EncodingKey,
    issuer: String,
    lifetime: Duration,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// An issuer signing with the RSA private key `pem` (`RSA PRIVATE KEY` or `PRIVATE KEY`).
    /// The key is tried once here, so an unusable key fails at start-up, not per request.
    pub fn from_rsa_pem(pem: &[u8]) -> Result<Self, TokenError> {
        let text = String::from_utf8_lossy(pem);
        match pem::blocks(&text).as_slice() {
            [one] if matches!(one.label, "RSA PRIVATE KEY" | "PRIVATE KEY") => {}
            [one] => return Err(TokenError::NotAPrivateKey(format!("a {:?}", one.label))),
            blocks => {
                return Err(TokenError::NotAPrivateKey(format!(
                    "{} PEM blocks",
                    blocks.len()
                )));
            }
        }
        let key = EncodingKey::from_rsa_pem(pem).map_err(TokenError::ReadingPrivateKey)?;
        jsonwebtoken::crypto::sign(b"probe", &key, Algorithm::PS256)
            .map_err(TokenError::ReadingPrivateKey)?;
        Ok(Issuer {
            key,
            issuer: API_SERVER_ISSUER.to_owned(),
            lifetime: TOKEN_LIFETIME,
        })
    }

    /// The same key, another `iss`.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// The same key, another lifetime (`exp` = `now` + `lifetime`).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// A token carrying `payload`, issued at `now` (`iat` = `nbf` = `now`).
    pub fn issue(&self, payload: &Payload, now: SystemTime) -> Result<String, TokenError> {
        let issued = unix_seconds(now);
        let lifetime = i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            iss: self.issuer.clone(),
            iat: Some(issued),
            nbf: Some(issued),
            exp: Some(issued.saturating_add(lifetime)),
            payload: payload.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::PS256), &claims, &self.key)
            .map_err(TokenError::Signing)
    }

    /// An upload token for claim `name` in `namespace` (what an `UploadTokenRequest` returns).
    pub fn issue_upload(
        &self,
        name: &str,
        namespace: &str,
        now: SystemTime,
    ) -> Result<String, TokenError> {
        self.issue(&Payload::upload(name, namespace), now)
    }
}
