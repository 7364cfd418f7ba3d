//! L1 and L2 table entries: bit layouts decoded into enums, with reserved bits checked.

use super::error::Qcow2Error;
use super::header::Header;
use super::limits::MAX_HOST_OFFSET;

/// Subclusters per cluster with extended L2 entries.
pub const SUBCLUSTERS: u32 = 32;

const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;
const ZERO: u64 = 1;
const L1_RESERVED: u64 = !(OFFSET_MASK | COPIED);
const L2_STANDARD_RESERVED: u64 = !(OFFSET_MASK | COPIED | COMPRESSED | ZERO);

/// An active-layer L1 entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L1Entry {
    Unallocated,
    /// Host offset of the L2 table (cluster-aligned).
    Table(u64),
}

impl L1Entry {
    pub fn decode(raw: u64, index: u64, header: &Header) -> Result<L1Entry, Qcow2Error> {
        if raw & L1_RESERVED != 0 {
            return Err(Qcow2Error::MalformedL1Entry { index, entry: raw });
        }
        let offset = raw & OFFSET_MASK;
        if offset == 0 {
            return Ok(L1Entry::Unallocated);
        }
        if !offset.is_multiple_of(header.cluster_size()) {
            return Err(Qcow2Error::Misaligned {
                what: "L2 table",
                offset,
                cluster_size: header.cluster_size(),
            });
        }
        Ok(L1Entry::Table(offset))
    }
}

/// What one guest cluster reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Entry {
    /// Reads as zeros: unallocated (no backing file is allowed), or the zero flag, or with
    /// extended L2 every subcluster unallocated or zero.
    Zero,
    /// Data in one host cluster. `subclusters` has bit i set when subcluster i holds data; the
    /// others read as zeros. Without extended L2 it is all ones.
    Data { host_offset: u64, subclusters: u32 },
    /// A compressed cluster: `host_offset` is byte-granular, `host_end` is the end of its last
    /// 512-byte sector (an upper bound, which may overlap the next compressed cluster).
    Compressed { host_offset: u64, host_end: u64 },
}

impl L2Entry {
    /// Decodes one entry. `raw` is the 64-bit word; `bitmap` the extended-L2 word, if any.
    pub fn decode(
        raw: u64,
        bitmap: Option<u64>,
        guest: u64,
        header: &Header,
    ) -> Result<L2Entry, Qcow2Error> {
        let bad = |reason| Qcow2Error::MalformedL2Entry {
            guest,
            entry: raw,
            reason,
        };
        if raw & COMPRESSED != 0 {
            if raw & COPIED != 0 {
                return Err(bad("a compressed cluster has the COPIED flag set"));
            }
            if bitmap.is_some_and(|b| b != 0) {
                return Err(bad("a compressed cluster has a non-zero subcluster bitmap"));
            }
            let x = 62 - (header.cluster_bits - 8);
            let host_offset = raw & ((1u64 << x) - 1);
            let extra_sectors = (raw >> x) & ((1u64 << (header.cluster_bits - 8)) - 1);
            if host_offset == 0 || host_offset >= MAX_HOST_OFFSET {
                return Err(bad("a compressed cluster has an invalid host offset"));
            }
            let host_end = (host_offset & !511) + (extra_sectors + 1) * 512;
            return Ok(L2Entry::Compressed {
                host_offset,
                host_end,
            });
        }
        if raw & L2_STANDARD_RESERVED != 0 {
            return Err(bad("reserved bits are set"));
        }
        let offset = raw & OFFSET_MASK;
        if !offset.is_multiple_of(header.cluster_size()) {
            return Err(Qcow2Error::Misaligned {
                what: "data cluster",
                offset,
                cluster_size: header.cluster_size(),
            });
        }
        match bitmap {
            None => {
                if raw & ZERO != 0 {
                    if header.version < 3 {
                        return Err(bad("the zero flag is not allowed in a version 2 image"));
                    }
                    return Ok(L2Entry::Zero);
                }
                if offset == 0 {
                    return Ok(L2Entry::Zero);
                }
                Ok(L2Entry::Data {
                    host_offset: offset,
                    subclusters: u32::MAX,
                })
            }
            Some(bitmap) => {
                if raw & ZERO != 0 {
                    return Err(bad("bit 0 is reserved with extended L2 entries"));
                }
                let alloc = bitmap as u32;
                let zero = (bitmap >> 32) as u32;
                if alloc & zero != 0 {
                    return Err(bad("a subcluster is marked both allocated and zero"));
                }
                if offset == 0 {
                    if alloc != 0 {
                        return Err(bad(
                            "subclusters are allocated but the cluster has no offset",
                        ));
                    }
                    return Ok(L2Entry::Zero);
                }
                if alloc == 0 {
                    return Ok(L2Entry::Zero);
                }
                Ok(L2Entry::Data {
                    host_offset: offset,
                    subclusters: alloc,
                })
            }
        }
    }
}
