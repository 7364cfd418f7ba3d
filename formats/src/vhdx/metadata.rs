//! The vhdx metadata region: a table of items, of which we need the file parameters (block
//! size, has-parent flag), the virtual disk size and the logical sector size. A parent locator
//! or an unknown required item is refused.

use super::error::VhdxError;
use super::header::{Guid, guid, guid_text};
use super::limits::*;
use crate::fields::{le_u16, le_u32, le_u64};

const FILE_PARAMETERS: Guid = guid(
    0xcaa1_6737,
    0xfa36,
    0x4d43,
    [0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b],
);
const VIRTUAL_DISK_SIZE: Guid = guid(
    0x2fa5_4224,
    0xcd1b,
    0x4876,
    [0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8],
);
const PAGE_83_DATA: Guid = guid(
    0xbeca_12ab,
    0xb2e6,
    0x4523,
    [0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46],
);
const LOGICAL_SECTOR_SIZE: Guid = guid(
    0x8141_bf1d,
    0xa96f,
    0x4709,
    [0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f],
);
const PHYSICAL_SECTOR_SIZE: Guid = guid(
    0xcda3_48c7,
    0x445d,
    0x4471,
    [0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56],
);
const PARENT_LOCATOR: Guid = guid(
    0xa8d3_5f2d,
    0xb30b,
    0x454d,
    [0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c],
);

/// The table header before the entries, and the offset items may start at.
const TABLE_HEADER: usize = 32;
const ITEMS_START: u64 = 64 << 10;

/// What the metadata says about the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub block_size: u32,
    pub virtual_size: u64,
    pub logical_sector_size: u32,
}

impl Params {
    /// Payload blocks per sector-bitmap block: the BAT interleaves one bitmap entry after
    /// every this many payload entries.
    pub fn chunk_ratio(&self) -> u64 {
        (1u64 << 23) * u64::from(self.logical_sector_size) / u64::from(self.block_size)
    }

    pub fn data_blocks(&self) -> u64 {
        self.virtual_size.div_ceil(u64::from(self.block_size))
    }

    /// BAT entries a non-differencing disk uses: its payload entries and the bitmap entries
    /// between them.
    pub fn bat_entries(&self) -> u64 {
        let blocks = self.data_blocks();
        blocks + blocks.saturating_sub(1) / self.chunk_ratio()
    }
}

fn malformed(s: String) -> VhdxError {
    VhdxError::MalformedMetadata(s)
}

/// Parses the whole metadata region.
pub fn parse(region: &[u8]) -> Result<Params, VhdxError> {
    if region.len() < TABLE_HEADER || &region[0..8] != b"metadata" {
        return Err(malformed("no \"metadata\" table signature".into()));
    }
    let count = le_u16(region, 10);
    if count > MAX_METADATA_ENTRIES {
        return Err(malformed(format!(
            "{count} entries, over the limit of {MAX_METADATA_ENTRIES}"
        )));
    }
    let (mut block, mut size, mut sector) = (None, None, None);
    for i in 0..usize::from(count) {
        let at = TABLE_HEADER + i * 32;
        let e = region
            .get(at..at + 32)
            .ok_or_else(|| malformed("the table runs past the region".into()))?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&e[0..16]);
        let offset = u64::from(le_u32(e, 16));
        let length = u64::from(le_u32(e, 20));
        let required = le_u32(e, 24) & 4 != 0;
        let item = || -> Result<&[u8], VhdxError> {
            if length == 0 || offset < ITEMS_START || offset + length > region.len() as u64 {
                return Err(malformed(format!(
                    "item {} at {offset:#x} ({length} bytes) is outside the region",
                    guid_text(&id)
                )));
            }
            Ok(&region[offset as usize..(offset + length) as usize])
        };
        let need = |n: u64| -> Result<(), VhdxError> {
            if length < n {
                return Err(malformed(format!(
                    "item {} is {length} bytes, shorter than {n}",
                    guid_text(&id)
                )));
            }
            Ok(())
        };
        match id {
            FILE_PARAMETERS => {
                need(8)?;
                let b = item()?;
                if le_u32(b, 4) & 2 != 0 {
                    return Err(VhdxError::Differencing);
                }
                block = Some(le_u32(b, 0));
            }
            VIRTUAL_DISK_SIZE => {
                need(8)?;
                size = Some(le_u64(item()?, 0));
            }
            LOGICAL_SECTOR_SIZE => {
                need(4)?;
                sector = Some(le_u32(item()?, 0));
            }
            PARENT_LOCATOR => return Err(VhdxError::Differencing),
            PAGE_83_DATA | PHYSICAL_SECTOR_SIZE => {}
            _ if required => return Err(VhdxError::UnknownRequiredItem(guid_text(&id))),
            _ => {}
        }
    }
    let (Some(block_size), Some(virtual_size), Some(logical_sector_size)) = (block, size, sector)
    else {
        return Err(malformed(
            "the file parameters, virtual disk size or logical sector size is missing".into(),
        ));
    };
    if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(malformed(format!(
            "block size {block_size} is not a power of two from {MIN_BLOCK_SIZE} to \
             {MAX_BLOCK_SIZE}"
        )));
    }
    if logical_sector_size != 512 && logical_sector_size != 4096 {
        return Err(malformed(format!(
            "logical sector size {logical_sector_size} is neither 512 nor 4096"
        )));
    }
    if virtual_size > MAX_VIRTUAL_SIZE || virtual_size % u64::from(logical_sector_size) != 0 {
        return Err(malformed(format!(
            "virtual size {virtual_size} is over {MAX_VIRTUAL_SIZE} or not a whole number of \
             sectors"
        )));
    }
    Ok(Params {
        block_size,
        virtual_size,
        logical_sector_size,
    })
}
