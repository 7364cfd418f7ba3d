//! Named limits for untrusted vhd input, each with its reason.

/// Smallest block size accepted: 8 sectors, so a block's sector bitmap is at least one byte.
pub const MIN_BLOCK_SIZE: u32 = 4096;

/// Largest block size accepted: a block's bitmap is read whole (256 MiB blocks have a 64 KiB
/// bitmap); Microsoft's tools use 2 MiB (and 512 KiB).
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;

/// BAT entries: 16 Mi (64 MiB of table) covers 32 TiB at 2 MiB blocks, far above the format's
/// 2040 GiB; more is a hostile header.
pub const MAX_BAT_ENTRIES: u32 = 1 << 24;

/// The dynamic header must lie within the leading bytes read before decoding starts (every
/// tool puts it right after the footer copy, at 512).
pub const MAX_HEADER_OFFSET: u64 = 1 << 20;
