//! Cloning a claim into a DataVolume's claim (`source.pvc`, `source.snapshot`, `sourceRef`).
//! So far the strategy decision ([`strategy`]); the clone flows that carry it out follow.

pub mod strategy;
