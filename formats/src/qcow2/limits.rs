//! Named limits for untrusted qcow2 input. Every number bounds memory, time or arithmetic that
//! an image's header could otherwise drive; each says why it is what it is.

/// 512-byte clusters: the smallest the qcow2 specification allows.
pub const MIN_CLUSTER_BITS: u32 = 9;

/// 2 MiB clusters: the largest the specification allows (and qemu creates).
pub const MAX_CLUSTER_BITS: u32 = 21;

/// Extended L2 entries need at least 16 KiB clusters (32 subclusters of at least 512 bytes).
pub const MIN_EXTENDED_L2_CLUSTER_BITS: u32 = 14;

/// 32 MiB of L1 table, as qemu's `QCOW_MAX_L1_SIZE`: the L1 table is held in memory while the
/// stream is read, and no image qemu creates needs more.
pub const MAX_L1_TABLE_BYTES: u64 = 32 * 1024 * 1024;

/// 8 MiB of refcount table, as qemu's `QCOW_MAX_REFTABLE_SIZE`; we only read it to know which
/// clusters are refcount blocks, so a larger one is a malformed or hostile image.
pub const MAX_REFCOUNT_TABLE_BYTES: u64 = 8 * 1024 * 1024;

/// 64 PiB virtual size: above what qemu will create (its L1 limit caps 64 KiB-cluster images at
/// 256 TiB) and far below where offset arithmetic could overflow `u64`.
pub const MAX_VIRTUAL_SIZE: u64 = 1 << 56;

/// Internal snapshots, as qemu's `QCOW_MAX_SNAPSHOTS`.
pub const MAX_SNAPSHOTS: u32 = 65536;

/// Refcount widths are 2^refcount_order bits; the specification allows orders 0..=6.
pub const MAX_REFCOUNT_ORDER: u32 = 6;

/// Host offsets live in bits 9..=55 of table entries: anything at or beyond 2^56 is malformed.
pub const MAX_HOST_OFFSET: u64 = 1 << 56;

/// Longest backing-file name quoted in an error message (qemu's limit is 1023 bytes).
pub const MAX_BACKING_NAME_BYTES: usize = 1023;
