//! Named limits for untrusted vmdk input, each with its reason.

/// A grain is decoded in one buffer per worker: 2 MiB (4096 sectors) at most. VMware and qemu
/// write 64 KiB grains (128 sectors).
pub const MAX_GRAIN_SECTORS: u64 = 4096;

/// Grain table entries per table: the specification fixes 512; up to 64 Ki keeps one table at
/// 256 KiB, delivered whole.
pub const MAX_GTES_PER_GT: u32 = 65536;

/// Grain directory entries: 16 Mi entries (64 MiB of directory) covers 32 PiB at 64 KiB grains
/// and the specification's 512 entries per table; more is a hostile header.
pub const MAX_GD_ENTRIES: u64 = 1 << 24;

/// An embedded or stand-alone descriptor is parsed whole in memory; real ones are under 10 KiB.
pub const MAX_DESCRIPTOR_BYTES: u64 = 1 << 20;

/// The embedded descriptor must end within the leading bytes read before decoding starts (qemu
/// and VMware put it at sector 1).
pub const MAX_DESCRIPTOR_END: u64 = 2 << 20;

/// Longest descriptor line quoted in an error message.
pub const MAX_QUOTED_LINE: usize = 200;

/// Extent file names listed in a refusal.
pub const MAX_LISTED_FILES: usize = 16;
