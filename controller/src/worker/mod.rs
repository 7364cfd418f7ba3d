//! The worker controller: for every claim annotated with an import source or as an upload
//! target, runs the pod that fills it ([`importer`], [`upload`]), copies the pod's state onto
//! the claim's annotations ([`state`], [`termination`]) and cleans up when it is done
//! ([`reconcile`]).

pub mod importer;
pub mod reconcile;
pub mod state;
pub mod termination;
pub mod upload;

use std::collections::BTreeMap;

use cdi_crds::annotations::{clone, import};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

/// The kind of worker a claim asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerKind {
    Importer,
    UploadServer,
}

/// The worker a claim's annotations ask for, if any.
pub fn worker_kind(claim: &PersistentVolumeClaim) -> Option<WorkerKind> {
    let a = claim.metadata.annotations.as_ref()?;
    if a.contains_key(import::ENDPOINT) || a.contains_key(import::SOURCE) {
        Some(WorkerKind::Importer)
    } else if a.contains_key(clone::UPLOAD_TARGET) {
        Some(WorkerKind::UploadServer)
    } else {
        None
    }
}

/// The claim's annotations (empty when it has none).
pub fn annotations(claim: &PersistentVolumeClaim) -> BTreeMap<String, String> {
    claim.metadata.annotations.clone().unwrap_or_default()
}

/// Security settings CDI gives worker pods ("restricted"): UID and group 107.
pub const WORKER_UID: i64 = 107;
