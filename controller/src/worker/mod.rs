//! The worker controller: for every claim annotated with an import source, as an upload
//! target or as a clone target, runs the pod that fills it ([`kind`] says what differs between
//! kinds; [`pod`] holds what their pods share; [`importer`], [`upload`] render each, and
//! [`cloner`] the source side of a host-assisted clone), copies the pod's state onto
//! the claim's annotations ([`state`], [`termination`]) and cleans up when it is done
//! ([`reconcile`]).

pub mod cloner;
pub mod importer;
pub mod kind;
pub mod pod;
pub mod reconcile;
pub mod state;
pub mod termination;
pub mod upload;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

pub use kind::WorkerKind;

/// The claim's annotations (empty when it has none).
pub fn annotations(claim: &PersistentVolumeClaim) -> BTreeMap<String, String> {
    claim.metadata.annotations.clone().unwrap_or_default()
}

/// Security settings CDI gives worker pods ("restricted"): UID and group 107.
pub const WORKER_UID: i64 = 107;
