//! The claims object of a token: the registered claims and CDI's payload side by side, as
//! go-jose writes them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};

use crate::Payload;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    #[serde(default)]
    pub iss: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub iat: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub nbf: Option<i64>,
    /// Required here (go-jose would accept a token without it, which never expires).
    #[serde(deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    #[serde(flatten)]
    pub payload: Payload,
}

/// A JWT NumericDate: seconds since the epoch, which RFC 7519 allows to be fractional.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let seconds = f64::deserialize(d)?;
    if !seconds.is_finite() {
        return Err(serde::de::Error::custom(
            "a NumericDate must be a finite number",
        ));
    }
    // Saturating float-to-int conversion: absurd dates stay absurd, never wrap.
    Ok(Some(seconds.floor() as i64))
}

/// `now` as whole seconds since the epoch (negative before it).
pub(crate) fn unix_seconds(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}
