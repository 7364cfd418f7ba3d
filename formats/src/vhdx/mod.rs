//! Microsoft vhdx, fixed and dynamic: the header section (file identifier, two checksummed
//! headers, two region tables), the metadata region (block size, disk size, sector size), the
//! BAT (a state and a 1 MiB-granular file offset per payload block, with sector-bitmap entries
//! interleaved) and the payload blocks. A non-empty log is refused (its updates would have to
//! be replayed first), and so are differencing disks.
//!
//! qemu puts the BAT before the metadata that says how to read it: the BAT region is only
//! registered once the metadata is parsed, so its bytes wait in the stash (or are re-read from
//! a local file) meanwhile.

mod crc32c;
mod error;
mod header;
pub mod limits;
mod metadata;

use bytes::Bytes;

use crate::decoder::router::{Kind, MetaPiece, NoOutput, Router};
use crate::decoder::{DecodeError, Decoder, DecoderSpec, DecoderStats, OpenContext, Output, Stash};
use crate::detect::Format;

pub use crc32c::crc32c_skipping;
pub use error::VhdxError;
pub use header::{Header, Region, Regions};
pub use metadata::Params;

use limits::{ALIGNMENT, HEADER_SECTION, MAX_METADATA_REGION};

/// How the data path makes a vhdx decoder.
pub const SPEC: DecoderSpec = DecoderSpec {
    format: Format::Vhdx,
    head_len: |_| Ok(HEADER_SECTION as usize),
    open,
};

const TAG_METADATA: u64 = 0;
const TAG_BAT: u64 = 1;

const PAYLOAD_NOT_PRESENT: u64 = 0;
const PAYLOAD_UNDEFINED: u64 = 1;
const PAYLOAD_ZERO: u64 = 2;
const PAYLOAD_UNMAPPED: u64 = 3;
const PAYLOAD_FULLY_PRESENT: u64 = 6;
const PAYLOAD_PARTIALLY_PRESENT: u64 = 7;

fn open(head: &[u8], ctx: OpenContext) -> Result<Box<dyn Decoder>, DecodeError> {
    let (h, regions) = header::parse(head)?;
    if regions.metadata.length > MAX_METADATA_REGION {
        return Err(VhdxError::MalformedRegions(format!(
            "the metadata region is {} bytes, over the limit of {MAX_METADATA_REGION}",
            regions.metadata.length
        ))
        .into());
    }
    let mut router = Router::new("vhdx", ctx.image_len, ctx.stash, ctx.budget);
    router.claim(0, HEADER_SECTION, "header section")?;
    if h.log_length > 0 {
        let log = u64::from(h.log_length);
        if !h.log_offset.is_multiple_of(ALIGNMENT) || !log.is_multiple_of(ALIGNMENT) {
            return Err(VhdxError::MalformedRegions(format!(
                "the log at {:#x} ({log} bytes) is not on 1 MiB boundaries",
                h.log_offset
            ))
            .into());
        }
        // Empty (its GUID is zero): its bytes are not needed.
        router.map(h.log_offset, log, Kind::Skip, "log", &mut NoOutput)?;
    }
    router.map(
        regions.metadata.offset,
        regions.metadata.length,
        Kind::Meta {
            tag: TAG_METADATA,
            align: regions.metadata.length as usize,
        },
        "metadata region",
        &mut NoOutput,
    )?;
    // Claimed now so that nothing else lands there; read once the metadata says how.
    router.claim(regions.bat.offset, regions.bat.length, "BAT region")?;
    Ok(Box::new(VhdxDecoder {
        bat: regions.bat,
        params: None,
        router,
    }))
}

#[derive(Debug)]
struct VhdxDecoder {
    bat: Region,
    params: Option<Params>,
    router: Router<Box<dyn Stash + Send>>,
}

impl VhdxDecoder {
    fn on_metadata(&mut self, region: &[u8], out: &mut dyn Output) -> Result<(), DecodeError> {
        let params = metadata::parse(region)?;
        let bat_bytes = params.bat_entries() * 8;
        if bat_bytes > self.bat.length {
            return Err(VhdxError::MalformedRegions(format!(
                "the BAT region holds {} bytes but the disk needs {bat_bytes}",
                self.bat.length
            ))
            .into());
        }
        self.params = Some(params);
        out.disk_size(params.virtual_size)?;
        if bat_bytes == 0 {
            self.router.tables_complete();
            return Ok(());
        }
        self.router.map_claimed(
            self.bat.offset,
            bat_bytes,
            Kind::Meta {
                tag: TAG_BAT,
                align: 8,
            },
            "BAT",
            out,
        )
    }

    fn on_bat(&mut self, piece: MetaPiece, out: &mut dyn Output) -> Result<(), DecodeError> {
        let Some(p) = self.params else {
            return Ok(());
        };
        let ratio = p.chunk_ratio();
        let block_size = u64::from(p.block_size);
        let first = piece.offset / 8;
        for (k, raw) in piece.bytes.chunks_exact(8).enumerate() {
            let index = first + k as u64;
            if (index + 1).is_multiple_of(ratio + 1) {
                // A sector bitmap entry: only differencing disks use them.
                continue;
            }
            let block = index - index / (ratio + 1);
            let entry = u64::from_le_bytes(raw.try_into().unwrap_or_default());
            let guest = block * block_size;
            if guest >= p.virtual_size {
                continue;
            }
            let len = block_size.min(p.virtual_size - guest);
            let bad = |reason| VhdxError::BadBlock {
                block,
                entry,
                reason,
            };
            match entry & 7 {
                PAYLOAD_NOT_PRESENT | PAYLOAD_UNDEFINED | PAYLOAD_UNMAPPED => {}
                PAYLOAD_ZERO => out.zero(guest, len)?,
                PAYLOAD_FULLY_PRESENT => {
                    let offset = (entry >> 20) * ALIGNMENT;
                    if offset < HEADER_SECTION {
                        return Err(bad("its data would be in the header section").into());
                    }
                    self.router
                        .defer_data(offset, len, guest, "payload block", out)?;
                }
                PAYLOAD_PARTIALLY_PRESENT => return Err(VhdxError::Differencing.into()),
                _ => return Err(bad("unknown block state").into()),
            }
        }
        if piece.last {
            self.router.tables_complete();
        }
        Ok(())
    }
}

impl Decoder for VhdxDecoder {
    fn virtual_size(&self) -> Option<u64> {
        self.params.map(|p| p.virtual_size)
    }

    fn feed(&mut self, bytes: Bytes, out: &mut dyn Output) -> Result<(), DecodeError> {
        self.router.begin(bytes);
        while let Some(piece) = self.router.next(out)? {
            if piece.tag == TAG_METADATA {
                self.on_metadata(&piece.bytes, out)?;
            } else {
                self.on_bat(piece, out)?;
            }
        }
        self.router.check_budget()
    }

    fn finish(&mut self, _out: &mut dyn Output) -> Result<DecoderStats, DecodeError> {
        self.router.finish()?;
        Ok(self.router.stats())
    }
}
