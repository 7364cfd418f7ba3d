//! CEL validation rules (`x-kubernetes-validations`) carried by the CRD schemas.
//!
//! Upstream CDI checks these in its validating webhook; putting them in the CRD lets the API
//! server refuse a bad object at admission with no webhook to deploy. Each type's rules are a
//! `pub const` slice next to the type so tests can find them in the generated schema, and each
//! message says what is wrong and what to change. The API server prefixes the message with the
//! path of the object that failed (`spec.source: Invalid value: "object": ...`), so messages name
//! fields relative to that object.
//!
//! Rules use `has()`, `size()`, comparisons, short list literals, `startsWith` with short
//! prefixes, and `matches` only on length-bounded strings, which keeps the API server's cost
//! estimate far below its limits.

use serde::Serialize;

/// One entry of `x-kubernetes-validations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ValidationRule {
    /// The CEL expression; `self` is the object (or value) the rule is attached to.
    pub rule: &'static str,
    /// What the API server reports when the expression is false.
    pub message: &'static str,
}

/// The schema key the API server reads rules from.
pub const VALIDATIONS_KEY: &str = "x-kubernetes-validations";
