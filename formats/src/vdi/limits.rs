//! Named limits for untrusted vdi input, each with its reason.

/// Largest block accepted: VirtualBox uses 1 MiB. Blocks are only routed, never held, so this
/// bounds arithmetic and refuses nonsense.
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;

/// Smallest block accepted: a sector.
pub const MIN_BLOCK_SIZE: u32 = 512;

/// Block map entries: 2^26 (256 MiB of map, 64 TiB at 1 MiB blocks); more is a hostile header.
pub const MAX_BLOCKS: u32 = 1 << 26;

/// Smallest header size (after the pre-header) holding every field we read.
pub const MIN_HEADER_SIZE: u64 = 0x140;

/// The header (and so the leading bytes read before decoding starts).
pub const HEADER_LEN: usize = 512;
