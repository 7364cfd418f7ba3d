//! Upload and clone tokens in upstream CDI's format, so tokens from either implementation are
//! accepted by the other.
//!
//! A token is a compact JWS (a JWT) signed **PS256** with the API server's RSA key. Its claims
//! object holds the registered claims (`iss`, `iat`, `nbf`, `exp`; seconds since the epoch) and,
//! beside them, CDI's private payload:
//!
//! ```text
//! {"iss":"cdi-apiserver","iat":1700000000,"nbf":1700000000,"exp":1700000300,
//!  "operation":"Upload","name":"disk","namespace":"vms",
//!  "resource":{"group":"","version":"v1","resource":"persistentvolumeclaims"}}
//! ```
//!
//! Clone tokens add `"params":{"targetNamespace":…,"targetName":…}` and name the *source*
//! claim (or snapshot, with resource `volumesnapshots`); `clone.rs` issues them for a
//! [`CloneRequest`] and checks a DataVolume's token against the clone it asks for.
//!
//! ```text
//!  cdi-apiserver: Issuer (private key) ──issue(payload, now)──► token ──► virtctl / browser
//!  cdi-uploadproxy: Validator (public keys) ◄──Authorization: Bearer <token>──┘
//!       validate(token, now) ─► Payload | TokenError (kind → 401 or 400)
//! ```
//!
//! The clock is always passed in (`now`), so expiry is tested without sleeping. Only PS256 is
//! accepted: `alg: none`, HMAC (including the "public key as HMAC secret" trick) and PKCS#1
//! v1.5 RSA signatures are refused before any claim is read.
#![forbid(unsafe_code)]

mod claims;
mod clone;
mod error;
mod issuer;
mod payload;
mod pem;
mod validator;

use std::time::Duration;

pub use clone::{CloneRequest, CloneSource, CloneSourceKind};
pub use error::{ErrorKind, TokenError};
pub use issuer::Issuer;
pub use payload::{GroupVersionResource, Operation, Payload, params};
pub use validator::Validator;

/// Issuer (`iss`) of upload tokens and of the short-lived clone tokens: CDI's API server.
pub const API_SERVER_ISSUER: &str = "cdi-apiserver";
/// Issuer of the extended clone tokens the controller makes for long-running clones.
pub const CONTROLLER_ISSUER: &str = "cdi-deployment";
/// How long an upload or clone token from the API server is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// How long an extended clone token is valid (upstream: 10 years).
pub const EXTENDED_CLONE_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(10);
