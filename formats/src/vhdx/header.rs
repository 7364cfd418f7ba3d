//! The vhdx header section: the file identifier, two headers (the valid one with the higher
//! sequence number is current) and two region tables (the first valid one is used), each
//! protected by a CRC-32C.

use super::crc32c::crc32c_skipping;
use super::error::VhdxError;
use super::limits::*;
use crate::fields::{le_u16, le_u32, le_u64};

const HEADER_OFFSETS: [usize; 2] = [64 << 10, 128 << 10];
const HEADER_LEN: usize = 4 << 10;
const REGION_OFFSETS: [usize; 2] = [192 << 10, 256 << 10];
const REGION_TABLE_LEN: usize = 64 << 10;

/// A GUID as stored on disk (the first three fields little-endian).
pub type Guid = [u8; 16];

/// A GUID from its usual text form's fields.
pub(crate) const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> Guid {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// A GUID in its usual text form.
pub(crate) fn guid_text(g: &Guid) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        g[10..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

pub(crate) const BAT_REGION: Guid = guid(
    0x2dc2_7766,
    0xf623,
    0x4200,
    [0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08],
);
pub(crate) const METADATA_REGION: Guid = guid(
    0x8b7c_a206,
    0x4790,
    0x4b9a,
    [0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e],
);

/// The current header's fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub sequence: u64,
    pub log_guid: Guid,
    pub log_length: u32,
    pub log_offset: u64,
}

/// A region: where it is and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    pub length: u64,
}

/// The regions we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regions {
    pub bat: Region,
    pub metadata: Region,
}

fn valid(b: &[u8], signature: &[u8; 4]) -> bool {
    &b[0..4] == signature && le_u32(b, 4) == crc32c_skipping(b, 4)
}

/// Reads the header section (at least its first 320 KiB).
pub fn parse(section: &[u8]) -> Result<(Header, Regions), VhdxError> {
    let needed = REGION_OFFSETS[1] + REGION_TABLE_LEN;
    if section.len() < needed {
        return Err(VhdxError::TruncatedHeader {
            needed,
            available: section.len(),
        });
    }
    if &section[0..8] != b"vhdxfile" {
        return Err(VhdxError::BadIdentifier);
    }
    let header = HEADER_OFFSETS
        .iter()
        .map(|&at| &section[at..at + HEADER_LEN])
        .filter(|b| valid(b, b"head"))
        .max_by_key(|b| le_u64(b, 8))
        .ok_or(VhdxError::NoValidCopy { what: "header" })?;
    let version = le_u16(header, 66);
    if version != 1 {
        return Err(VhdxError::UnsupportedVersion {
            what: "header",
            version,
        });
    }
    let mut log_guid = [0u8; 16];
    log_guid.copy_from_slice(&header[48..64]);
    let h = Header {
        sequence: le_u64(header, 8),
        log_guid,
        log_length: le_u32(header, 68),
        log_offset: le_u64(header, 72),
    };
    if h.log_guid != [0u8; 16] {
        return Err(VhdxError::LogNotEmpty(guid_text(&h.log_guid)));
    }
    let table = REGION_OFFSETS
        .iter()
        .map(|&at| &section[at..at + REGION_TABLE_LEN])
        .find(|b| valid(b, b"regi"))
        .ok_or(VhdxError::NoValidCopy {
            what: "region table",
        })?;
    Ok((h, regions(table)?))
}

fn regions(table: &[u8]) -> Result<Regions, VhdxError> {
    let count = le_u32(table, 8);
    if count > MAX_REGION_ENTRIES {
        return Err(VhdxError::MalformedRegions(format!(
            "{count} entries, over the limit of {MAX_REGION_ENTRIES}"
        )));
    }
    let (mut bat, mut metadata) = (None, None);
    for i in 0..count as usize {
        let e = &table[16 + i * 32..16 + (i + 1) * 32];
        let mut id = [0u8; 16];
        id.copy_from_slice(&e[0..16]);
        let region = Region {
            offset: le_u64(e, 16),
            length: u64::from(le_u32(e, 24)),
        };
        let required = le_u32(e, 28) & 1 != 0;
        let slot = match id {
            BAT_REGION => &mut bat,
            METADATA_REGION => &mut metadata,
            _ if required => return Err(VhdxError::UnknownRequiredRegion(guid_text(&id))),
            _ => continue,
        };
        if slot.is_some() {
            return Err(VhdxError::MalformedRegions(format!(
                "region {} is listed twice",
                guid_text(&id)
            )));
        }
        if !region.offset.is_multiple_of(ALIGNMENT)
            || !region.length.is_multiple_of(ALIGNMENT)
            || region.length == 0
            || region.offset < HEADER_SECTION
        {
            return Err(VhdxError::MalformedRegions(format!(
                "region {} at {:#x} ({} bytes) is not on 1 MiB boundaries after the header \
                 section",
                guid_text(&id),
                region.offset,
                region.length
            )));
        }
        *slot = Some(region);
    }
    match (bat, metadata) {
        (Some(bat), Some(metadata)) => Ok(Regions { bat, metadata }),
        _ => Err(VhdxError::MalformedRegions(
            "the BAT or the metadata region is missing".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_print_like_their_text_form() {
        assert_eq!(
            guid_text(&BAT_REGION),
            "2dc27766-f623-4200-9d64-115e9bfd4a08"
        );
    }
}
