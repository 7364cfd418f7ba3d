//! Cloning into a DataVolume's claim (`source.pvc`, `source.snapshot`, `sourceRef`): where the
//! data comes from ([`source`]), whether a cross-namespace clone is allowed ([`authorize`]), how
//! it is cloned ([`strategy`]), and the DataVolume side of each strategy ([`flow`]); the worker
//! controller runs host-assisted copies.

pub mod authorize;
pub mod flow;
pub mod source;
pub mod strategy;
