//! The DataSource controller: resolves each DataSource to the claim or snapshot it names
//! (through at most one other DataSource) and keeps its `Ready` condition and resolved
//! `status.source`, which clones by `sourceRef` read ([`status`] decides, [`reconcile`]
//! observes and writes).

pub mod reconcile;
pub mod status;
