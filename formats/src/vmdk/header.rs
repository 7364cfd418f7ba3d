//! The hosted sparse extent header (VMware Virtual Disk Format 5.0, "KDMV"), read field by field
//! and range-checked before anything else is looked at.

use super::error::VmdkError;
use super::limits::*;
use crate::decoder::limits::MAX_VIRTUAL_SIZE;
use crate::fields::{le_u16, le_u32, le_u64};

pub(crate) const MAGIC: &[u8; 4] = b"KDMV";
pub(crate) const SECTOR: u64 = 512;
pub(crate) const HEADER_LEN: usize = 512;

/// The grain directory is at the end of the stream (stream-optimized images): its real offset
/// is in the footer.
pub const GD_AT_END: u64 = u64::MAX;

const FLAG_NEWLINE_TEST: u32 = 1 << 0;
const FLAG_REDUNDANT_GT: u32 = 1 << 1;
const FLAG_ZERO_GRAIN: u32 = 1 << 2;
const FLAG_COMPRESSED: u32 = 1 << 16;
const FLAG_MARKERS: u32 = 1 << 17;

/// A validated sparse extent header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseHeader {
    pub version: u32,
    pub flags: u32,
    /// In sectors.
    pub capacity: u64,
    /// In sectors.
    pub grain_sectors: u64,
    pub descriptor_offset: u64,
    pub descriptor_sectors: u64,
    pub gtes_per_gt: u32,
    pub rgd_offset: u64,
    pub gd_offset: u64,
    /// Sectors before the first grain.
    pub overhead: u64,
    pub unclean_shutdown: bool,
    pub compress_algorithm: u16,
}

impl SparseHeader {
    /// Parses the first sector of a sparse extent (or its footer copy).
    pub fn parse(b: &[u8]) -> Result<SparseHeader, VmdkError> {
        if b.len() < HEADER_LEN {
            return Err(VmdkError::TruncatedHeader {
                needed: HEADER_LEN,
                available: b.len(),
            });
        }
        if &b[0..4] != MAGIC {
            return Err(VmdkError::BadMagic);
        }
        let h = SparseHeader {
            version: le_u32(b, 4),
            flags: le_u32(b, 8),
            capacity: le_u64(b, 12),
            grain_sectors: le_u64(b, 20),
            descriptor_offset: le_u64(b, 28),
            descriptor_sectors: le_u64(b, 36),
            gtes_per_gt: le_u32(b, 44),
            rgd_offset: le_u64(b, 48),
            gd_offset: le_u64(b, 56),
            overhead: le_u64(b, 64),
            unclean_shutdown: b[72] != 0,
            compress_algorithm: le_u16(b, 77),
        };
        if !(1..=3).contains(&h.version) {
            return Err(VmdkError::UnsupportedVersion(h.version));
        }
        if h.flags & FLAG_NEWLINE_TEST != 0 && b[73..77] != *b"\n \r\n" {
            return Err(VmdkError::CorruptedNewlines);
        }
        let malformed = |s: String| Err(VmdkError::MalformedHeader(s));
        if !h.grain_sectors.is_power_of_two() || h.grain_sectors > MAX_GRAIN_SECTORS {
            return malformed(format!(
                "grain size of {} sectors is not a power of two up to {MAX_GRAIN_SECTORS}",
                h.grain_sectors
            ));
        }
        if h.gtes_per_gt == 0 || h.gtes_per_gt > MAX_GTES_PER_GT {
            return malformed(format!(
                "{} entries per grain table is outside 1..={MAX_GTES_PER_GT}",
                h.gtes_per_gt
            ));
        }
        if h.capacity > MAX_VIRTUAL_SIZE / SECTOR {
            return malformed(format!(
                "capacity of {} sectors exceeds the limit of {} bytes",
                h.capacity, MAX_VIRTUAL_SIZE
            ));
        }
        if h.gd_entries() > MAX_GD_ENTRIES {
            return malformed(format!(
                "{} grain directory entries exceed the limit of {MAX_GD_ENTRIES}",
                h.gd_entries()
            ));
        }
        if h.compress_algorithm > 1 {
            return Err(VmdkError::UnknownCompression(h.compress_algorithm));
        }
        let descriptor_end = h
            .descriptor_offset
            .checked_add(h.descriptor_sectors)
            .and_then(|s| s.checked_mul(SECTOR));
        if h.descriptor_sectors > 0
            && (h.descriptor_offset == 0
                || descriptor_end.is_none_or(|end| end > MAX_DESCRIPTOR_END))
        {
            return malformed(format!(
                "the embedded descriptor (sectors {}+{}) must lie after the header and end \
                 within the first {MAX_DESCRIPTOR_END} bytes",
                h.descriptor_offset, h.descriptor_sectors
            ));
        }
        if h.overhead == 0 || h.overhead > MAX_VIRTUAL_SIZE / SECTOR {
            return malformed(format!(
                "overhead of {} sectors is out of range",
                h.overhead
            ));
        }
        Ok(h)
    }

    pub fn virtual_size(&self) -> u64 {
        self.capacity * SECTOR
    }

    pub fn grain_bytes(&self) -> u64 {
        self.grain_sectors * SECTOR
    }

    /// Guest bytes one grain table covers.
    pub fn gt_coverage(&self) -> u64 {
        self.grain_bytes() * u64::from(self.gtes_per_gt)
    }

    pub fn gd_entries(&self) -> u64 {
        self.capacity
            .div_ceil(self.grain_sectors * u64::from(self.gtes_per_gt))
    }

    pub fn compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    pub fn markers(&self) -> bool {
        self.flags & FLAG_MARKERS != 0
    }

    pub fn zero_grains(&self) -> bool {
        self.flags & FLAG_ZERO_GRAIN != 0
    }

    pub fn redundant_tables(&self) -> bool {
        self.flags & FLAG_REDUNDANT_GT != 0 && self.rgd_offset != 0 && self.rgd_offset != GD_AT_END
    }

    /// Where the embedded descriptor ends (0 without one).
    pub fn descriptor_end(&self) -> u64 {
        if self.descriptor_sectors == 0 {
            0
        } else {
            (self.descriptor_offset + self.descriptor_sectors) * SECTOR
        }
    }
}
