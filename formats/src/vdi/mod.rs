//! VirtualBox vdi, dynamic and static: a header, a block map (one entry per guest block: the
//! index of the block in the file, or free, or zero) and the blocks. Undo and differencing
//! images are refused.
//!
//! Header layout (little-endian): a 64-byte text, the signature `0xbeda107f` at 0x40, version
//! at 0x44; then (version 1.1) header size, image type, flags, a 256-byte comment, the block
//! map offset (0x154), the data offset (0x158), legacy geometry, the disk size (0x170), block
//! size (0x178), bytes of extra data before each block (0x17c), blocks in the image (0x180),
//! blocks allocated (0x184) and the image, modification, link and parent UUIDs.

mod error;
pub mod limits;

use bytes::Bytes;

use crate::decoder::limits::MAX_VIRTUAL_SIZE;
use crate::decoder::router::{Kind, MetaPiece, NoOutput, Router};
use crate::decoder::{DecodeError, Decoder, DecoderSpec, DecoderStats, OpenContext, Output, Stash};
use crate::detect::Format;
use crate::fields::{le_u32, le_u64};

pub use error::VdiError;
use limits::*;

/// How the data path makes a vdi decoder.
pub const SPEC: DecoderSpec = DecoderSpec {
    format: Format::Vdi,
    head_len: |_| Ok(HEADER_LEN),
    open,
};

const SIGNATURE: u32 = 0xbeda_107f;
const VERSION_1_1: u32 = 0x0001_0001;
const TYPE_DYNAMIC: u32 = 1;
const TYPE_STATIC: u32 = 2;
const BLOCK_FREE: u32 = u32::MAX;
const BLOCK_ZERO: u32 = u32::MAX - 1;
const TAG_MAP: u64 = 0;

/// A validated vdi header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub image_type: u32,
    pub blocks_offset: u64,
    pub data_offset: u64,
    pub disk_size: u64,
    pub block_size: u32,
    pub block_extra: u32,
    pub blocks: u32,
}

impl Header {
    pub fn parse(b: &[u8]) -> Result<Header, VdiError> {
        if b.len() < HEADER_LEN {
            return Err(VdiError::TruncatedHeader {
                needed: HEADER_LEN,
                available: b.len(),
            });
        }
        if le_u32(b, 0x40) != SIGNATURE {
            return Err(VdiError::BadSignature);
        }
        let version = le_u32(b, 0x44);
        if version != VERSION_1_1 {
            return Err(VdiError::UnsupportedVersion(version));
        }
        let h = Header {
            image_type: le_u32(b, 0x4c),
            blocks_offset: u64::from(le_u32(b, 0x154)),
            data_offset: u64::from(le_u32(b, 0x158)),
            disk_size: le_u64(b, 0x170),
            block_size: le_u32(b, 0x178),
            block_extra: le_u32(b, 0x17c),
            blocks: le_u32(b, 0x180),
        };
        if h.image_type != TYPE_DYNAMIC && h.image_type != TYPE_STATIC {
            return Err(VdiError::ImageType(h.image_type));
        }
        let malformed = |s: String| Err(VdiError::MalformedHeader(s));
        let header_size = u64::from(le_u32(b, 0x48));
        if header_size < MIN_HEADER_SIZE || 0x48 + header_size > HEADER_LEN as u64 {
            return malformed(format!("header size {header_size} is out of range"));
        }
        if !h.block_size.is_power_of_two()
            || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&h.block_size)
        {
            return malformed(format!(
                "block size {} is not a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}",
                h.block_size
            ));
        }
        if h.block_extra > MAX_BLOCK_SIZE {
            return malformed(format!("{} extra bytes per block", h.block_extra));
        }
        if h.blocks > MAX_BLOCKS {
            return malformed(format!(
                "{} blocks exceed the limit of {MAX_BLOCKS}",
                h.blocks
            ));
        }
        if h.disk_size > MAX_VIRTUAL_SIZE
            || h.disk_size > u64::from(h.blocks) * u64::from(h.block_size)
        {
            return malformed(format!(
                "disk size {} does not fit in {} blocks of {} bytes",
                h.disk_size, h.blocks, h.block_size
            ));
        }
        if h.blocks_offset < HEADER_LEN as u64 {
            return malformed(format!(
                "the block map at {:#x} overlaps the header",
                h.blocks_offset
            ));
        }
        Ok(h)
    }

    fn stride(&self) -> u64 {
        u64::from(self.block_size) + u64::from(self.block_extra)
    }

    /// Guest blocks the disk size needs (the map may list more).
    fn needed_blocks(&self) -> u64 {
        self.disk_size.div_ceil(u64::from(self.block_size))
    }
}

fn open(head: &[u8], ctx: OpenContext) -> Result<Box<dyn Decoder>, DecodeError> {
    let h = Header::parse(head)?;
    let mut router = Router::new("vdi", ctx.image_len, ctx.stash, ctx.budget);
    router.claim(0, HEADER_LEN as u64, "header")?;
    router.map(
        h.blocks_offset,
        h.needed_blocks() * 4,
        Kind::Meta {
            tag: TAG_MAP,
            align: 4,
        },
        "block map",
        &mut NoOutput,
    )?;
    if h.needed_blocks() == 0 {
        router.tables_complete();
    }
    Ok(Box::new(VdiDecoder { h, router }))
}

#[derive(Debug)]
struct VdiDecoder {
    h: Header,
    router: Router<Box<dyn Stash + Send>>,
}

impl VdiDecoder {
    fn on_map(&mut self, piece: MetaPiece, out: &mut dyn Output) -> Result<(), DecodeError> {
        let block_size = u64::from(self.h.block_size);
        let first = piece.offset / 4;
        for (k, e) in piece.bytes.chunks_exact(4).enumerate() {
            let index = first + k as u64;
            let guest = index * block_size;
            let len = block_size.min(self.h.disk_size - guest);
            match le_u32(e, 0) {
                BLOCK_FREE => {}
                BLOCK_ZERO => out.zero(guest, len)?,
                entry if entry >= self.h.blocks => {
                    return Err(VdiError::BadBlock {
                        index,
                        entry,
                        blocks: self.h.blocks,
                    }
                    .into());
                }
                entry => {
                    let host = self.h.data_offset
                        + u64::from(entry) * self.h.stride()
                        + u64::from(self.h.block_extra);
                    self.router.defer_data(host, len, guest, "block", out)?;
                }
            }
        }
        if piece.last {
            self.router.tables_complete();
        }
        Ok(())
    }
}

impl Decoder for VdiDecoder {
    fn virtual_size(&self) -> Option<u64> {
        Some(self.h.disk_size)
    }

    fn feed(&mut self, bytes: Bytes, out: &mut dyn Output) -> Result<(), DecodeError> {
        self.router.begin(bytes);
        while let Some(piece) = self.router.next(out)? {
            self.on_map(piece, out)?;
        }
        self.router.check_budget()
    }

    fn finish(&mut self, _out: &mut dyn Output) -> Result<DecoderStats, DecodeError> {
        self.router.finish()?;
        Ok(self.router.stats())
    }
}
