//! Named limits for untrusted vhdx input, each with its reason.

/// The header section: file identifier, two headers and two region tables in the first MiB.
pub const HEADER_SECTION: u64 = 1 << 20;

/// Regions, log and payload blocks are placed on 1 MiB boundaries (MS-VHDX).
pub const ALIGNMENT: u64 = 1 << 20;

/// Region table entries, as MS-VHDX caps them.
pub const MAX_REGION_ENTRIES: u32 = 2047;

/// Metadata table entries, as MS-VHDX caps them.
pub const MAX_METADATA_ENTRIES: u16 = 2047;

/// The metadata region is parsed whole in memory; qemu and Hyper-V make it 1 MiB.
pub const MAX_METADATA_REGION: u64 = 16 << 20;

/// Block sizes MS-VHDX allows: 1 MiB to 256 MiB, powers of two.
pub const MIN_BLOCK_SIZE: u32 = 1 << 20;
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;

/// 64 TiB: the largest virtual disk MS-VHDX allows.
pub const MAX_VIRTUAL_SIZE: u64 = 64 << 40;
