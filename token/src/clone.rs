//! Clone tokens: what a clone reads and fills, the token cdi-apiserver issues for it when it
//! admits the DataVolume, and the check the controller makes before it starts the clone.
//!
//! ```text
//!  DataVolume CREATE ─► cdi-apiserver webhook: allowed? ─► Issuer::issue_clone(request, now)
//!                                                              │ annotation storage.clone.token
//!  cdi-controller ◄────────────────────────────────────────────┘
//!    Validator::validate_clone(annotation, request it derived from the DataVolume, now)
//!      ─► Payload | TokenError (MissingToken, Expired, BadSignature, WrongCloneSource, ...)
//! ```

use std::fmt;
use std::time::SystemTime;

use crate::{GroupVersionResource, Issuer, Operation, Payload, TokenError, Validator};

/// What kind of object a clone reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloneSourceKind {
    /// A PersistentVolumeClaim (`source.pvc`, or a DataSource naming one).
    Pvc,
    /// A VolumeSnapshot (`source.snapshot`, or a DataSource naming one).
    Snapshot,
}

impl CloneSourceKind {
    /// The resource a clone token for this kind of source names.
    pub fn resource(self) -> GroupVersionResource {
        match self {
            CloneSourceKind::Pvc => GroupVersionResource::persistent_volume_claims(),
            CloneSourceKind::Snapshot => GroupVersionResource::volume_snapshots(),
        }
    }
}

impl fmt::Display for CloneSourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloneSourceKind::Pvc => "PersistentVolumeClaim",
            CloneSourceKind::Snapshot => "VolumeSnapshot",
        })
    }
}

/// The object a clone reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CloneSource {
    /// Claim or snapshot.
    pub kind: CloneSourceKind,
    /// Its namespace (never empty: a DataVolume's empty source namespace means its own).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl fmt::Display for CloneSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A clone: `source` into the DataVolume `target_name` in `target_namespace`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CloneRequest {
    /// What is read.
    pub source: CloneSource,
    /// Namespace of the DataVolume (and claim) being filled.
    pub target_namespace: String,
    /// Name of the DataVolume being filled.
    pub target_name: String,
}

impl CloneRequest {
    /// The token payload for this clone.
    pub fn payload(&self) -> Payload {
        Payload::clone_source(&self.source, &self.target_name, &self.target_namespace)
    }

    /// Whether source and target share a namespace (such clones need no permission beyond
    /// creating the DataVolume).
    pub fn is_same_namespace(&self) -> bool {
        self.source.namespace == self.target_namespace
    }
}

impl Issuer {
    /// The clone token for `request`, issued at `now` (what the DataVolume webhook adds).
    pub fn issue_clone(
        &self,
        request: &CloneRequest,
        now: SystemTime,
    ) -> Result<String, TokenError> {
        self.issue(&request.payload(), now)
    }
}

impl Validator {
    /// Checks a DataVolume's clone token (`token`: its annotation, `None` when unset) against
    /// the clone the DataVolume asks for, at `now`: signature, issuer and times, operation
    /// `Clone`, the source's resource, namespace and name, and the target in `params`. Each
    /// failure is its own [`TokenError`] variant, whose message says what did not match.
    pub fn validate_clone(
        &self,
        token: Option<&str>,
        request: &CloneRequest,
        now: SystemTime,
    ) -> Result<Payload, TokenError> {
        let token = token
            .filter(|t| !t.trim().is_empty())
            .ok_or(TokenError::MissingToken)?;
        let payload = self.validate_payload(
            token,
            &Operation::Clone,
            &request.source.kind.resource(),
            now,
        )?;
        let source = (payload.namespace.as_str(), payload.name.as_str());
        if source
            != (
                request.source.namespace.as_str(),
                request.source.name.as_str(),
            )
        {
            return Err(TokenError::WrongCloneSource {
                found: format!("{}/{}", payload.namespace, payload.name),
                expected: format!("{}/{}", request.source.namespace, request.source.name),
            });
        }
        let target = payload.clone_target().unwrap_or_default();
        if target
            != (
                request.target_namespace.as_str(),
                request.target_name.as_str(),
            )
        {
            return Err(TokenError::WrongCloneTarget {
                found: format!("{}/{}", target.0, target.1),
                expected: format!("{}/{}", request.target_namespace, request.target_name),
            });
        }
        Ok(payload)
    }
}
