//! StorageProfiles: one per StorageClass (same name), telling DataVolumes with the `storage`
//! API which access and volume modes to use. Defaults come from a table of known provisioners
//! ([`capabilities`]); the status is a pure function of the class and the profile's spec
//! ([`status`]); [`reconcile`] keeps them current.

pub mod capabilities;
pub mod reconcile;
pub mod status;
