//! Named limits for untrusted OVA input, each with its reason.

/// The OVF descriptor is read whole into memory; real ones are a few KiB to a few hundred.
pub const MAX_OVF_BYTES: u64 = 4 << 20;

/// A pax extended header or GNU long name is read whole; real ones are under a KiB.
pub const MAX_PAX_BYTES: u64 = 64 << 10;

/// Attributes parsed per OVF element.
pub const MAX_ATTRIBUTES: usize = 256;

/// Disk file names listed in a refusal.
pub const MAX_LISTED_DISKS: usize = 16;
