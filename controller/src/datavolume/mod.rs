//! The DataVolume controller: renders the claim ([`plan`]), reads the transfer's state back from
//! the claim into the DataVolume's status ([`status`]), and applies both ([`reconcile`]).

pub mod plan;
pub mod reconcile;
pub mod status;
