//! The vhd footer (the last sector of every vhd; dynamic disks copy it to the first) and the
//! dynamic disk header, big-endian and checksummed, read field by field.

use super::error::VhdError;
use super::limits::*;
use crate::decoder::limits::MAX_VIRTUAL_SIZE;
use crate::fields::{be_u32, be_u64};

pub(crate) const FOOTER_LEN: usize = 512;
pub(crate) const HEADER_LEN: usize = 1024;
const VERSION_1_0: u32 = 0x0001_0000;

/// The disk types a footer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    Fixed,
    Dynamic,
    Differencing,
}

/// A validated footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    pub data_offset: u64,
    pub current_size: u64,
    pub disk_type: DiskType,
}

/// The one's complement of the sum of every byte, the checksum field counted as zero.
fn checksum(b: &[u8], field: usize) -> u32 {
    let sum = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !(field..field + 4).contains(i))
        .fold(0u32, |acc, (_, &x)| acc.wrapping_add(u32::from(x)));
    !sum
}

fn check(b: &[u8], field: usize, what: &'static str) -> Result<(), VhdError> {
    let stored = be_u32(b, field);
    let computed = checksum(b, field);
    if stored != computed {
        return Err(VhdError::Checksum {
            what,
            stored,
            computed,
        });
    }
    Ok(())
}

impl Footer {
    pub fn parse(b: &[u8]) -> Result<Footer, VhdError> {
        let b = b.get(..FOOTER_LEN).ok_or(VhdError::Truncated {
            what: "footer",
            needed: FOOTER_LEN,
            available: b.len(),
        })?;
        if &b[0..8] != b"conectix" {
            return Err(VhdError::BadCookie {
                what: "footer",
                expected: "conectix",
            });
        }
        check(b, 64, "footer")?;
        let version = be_u32(b, 12);
        if version != VERSION_1_0 {
            return Err(VhdError::UnsupportedVersion {
                what: "footer",
                version,
            });
        }
        let disk_type = match be_u32(b, 60) {
            2 => DiskType::Fixed,
            3 => DiskType::Dynamic,
            4 => DiskType::Differencing,
            other => return Err(VhdError::DiskType(other)),
        };
        let current_size = be_u64(b, 48);
        if current_size > MAX_VIRTUAL_SIZE {
            return Err(VhdError::MalformedHeader(format!(
                "disk size {current_size} exceeds the limit of {MAX_VIRTUAL_SIZE} bytes"
            )));
        }
        Ok(Footer {
            data_offset: be_u64(b, 16),
            current_size,
            disk_type,
        })
    }
}

/// A validated dynamic disk header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicHeader {
    pub table_offset: u64,
    pub max_table_entries: u32,
    pub block_size: u32,
}

/// The parent's name as a differencing header records it (UTF-16 big-endian).
pub(crate) fn parent_name(b: &[u8]) -> String {
    let Some(raw) = b.get(64..576) else {
        return String::new();
    };
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

impl DynamicHeader {
    pub fn parse(b: &[u8]) -> Result<DynamicHeader, VhdError> {
        let b = b.get(..HEADER_LEN).ok_or(VhdError::Truncated {
            what: "dynamic header",
            needed: HEADER_LEN,
            available: b.len(),
        })?;
        if &b[0..8] != b"cxsparse" {
            return Err(VhdError::BadCookie {
                what: "dynamic header",
                expected: "cxsparse",
            });
        }
        check(b, 36, "dynamic header")?;
        let version = be_u32(b, 24);
        if version != VERSION_1_0 {
            return Err(VhdError::UnsupportedVersion {
                what: "dynamic header",
                version,
            });
        }
        let h = DynamicHeader {
            table_offset: be_u64(b, 16),
            max_table_entries: be_u32(b, 28),
            block_size: be_u32(b, 32),
        };
        if !h.block_size.is_power_of_two()
            || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&h.block_size)
        {
            return Err(VhdError::MalformedHeader(format!(
                "block size {} is not a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}",
                h.block_size
            )));
        }
        if h.max_table_entries > MAX_BAT_ENTRIES {
            return Err(VhdError::MalformedHeader(format!(
                "{} BAT entries exceed the limit of {MAX_BAT_ENTRIES}",
                h.max_table_entries
            )));
        }
        Ok(h)
    }

    /// Bytes of the sector bitmap in front of each block: a bit per sector, padded to a sector.
    pub fn bitmap_bytes(&self) -> u64 {
        (u64::from(self.block_size) / 512)
            .div_ceil(8)
            .next_multiple_of(512)
    }
}

/// Checks the last sector of a stream for a fixed-vhd footer. `None`: not a vhd footer at
/// all; `Some(size)`: the `size` bytes before it are the disk. A footer that is there but
/// damaged, names another disk type, or another size, is an error.
pub fn fixed_footer(tail: &[u8], stream_len: u64) -> Result<Option<u64>, VhdError> {
    if tail.len() < FOOTER_LEN || &tail[tail.len() - FOOTER_LEN..][..8] != b"conectix" {
        return Ok(None);
    }
    let f = Footer::parse(&tail[tail.len() - FOOTER_LEN..])?;
    if f.disk_type != DiskType::Fixed {
        return Err(VhdError::MalformedHeader(format!(
            "the file ends with a {:?} vhd footer but has no footer copy at its start",
            f.disk_type
        )));
    }
    let data_len = stream_len.saturating_sub(FOOTER_LEN as u64);
    if f.current_size != data_len {
        return Err(VhdError::FixedSize {
            footer_size: f.current_size,
            data_len,
        });
    }
    Ok(Some(f.current_size))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A footer with its checksum set.
    pub(crate) fn footer(disk_type: u32, size: u64, data_offset: u64) -> Vec<u8> {
        let mut b = vec![0u8; FOOTER_LEN];
        b[0..8].copy_from_slice(b"conectix");
        b[8..12].copy_from_slice(&2u32.to_be_bytes());
        b[12..16].copy_from_slice(&VERSION_1_0.to_be_bytes());
        b[16..24].copy_from_slice(&data_offset.to_be_bytes());
        b[40..48].copy_from_slice(&size.to_be_bytes());
        b[48..56].copy_from_slice(&size.to_be_bytes());
        b[60..64].copy_from_slice(&disk_type.to_be_bytes());
        let sum = checksum(&b, 64);
        b[64..68].copy_from_slice(&sum.to_be_bytes());
        b
    }

    #[test]
    fn a_fixed_footer_is_found_at_the_end_only_when_valid() {
        let f = footer(2, 4096, u64::MAX);
        assert_eq!(fixed_footer(&f, 4096 + 512), Ok(Some(4096)));
        assert!(matches!(
            fixed_footer(&f, 8192 + 512),
            Err(VhdError::FixedSize {
                footer_size: 4096,
                data_len: 8192
            })
        ));
        let mut bad = f.clone();
        bad[100] ^= 1;
        assert!(matches!(
            fixed_footer(&bad, 4608),
            Err(VhdError::Checksum { .. })
        ));
        assert_eq!(fixed_footer(&[0u8; 512], 4608), Ok(None));
        let dynamic = footer(3, 4096, 512);
        assert!(matches!(
            fixed_footer(&dynamic, 4608),
            Err(VhdError::MalformedHeader(_))
        ));
    }
}
