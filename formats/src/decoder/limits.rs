//! Bounds shared by every decoder. Each format's own limits sit in its `limits.rs`.

/// Leading bytes a decoder may ask to see before it starts: the largest header area of any
/// format (a qcow2 header cluster is at most 2 MiB; vhdx's header section is 1 MiB).
pub const MAX_HEAD_LEN: usize = 2 << 20;

/// 64 PiB virtual size, as for qcow2: far above any real disk and far below where offset
/// arithmetic could overflow `u64`.
pub const MAX_VIRTUAL_SIZE: u64 = 1 << 56;

/// A compressed block gathered in memory is at most this long: a 2 MiB block that deflate
/// expanded (incompressible data grows by well under 1%), with room to spare.
pub const MAX_COMPRESSED_BLOCK: u64 = 4 << 20;

/// What the router counts per pending region, claimed interval or stashed piece when it checks
/// its budget (map node, key and value, rounded up).
pub const BOOKKEEPING_ENTRY_BYTES: usize = 64;
