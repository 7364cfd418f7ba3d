//! Dynamic vhd: the BAT names each block's sector; each block is a sector bitmap (a bit per
//! sector, most significant bit first: set = stored here, clear = reads as zeros) and the block
//! data. Blocks are registered with the router as the BAT is read, their bitmaps parsed when
//! the stream reaches them, and the data runs the bitmap marks routed to their guest offsets.

use bytes::Bytes;

use super::footer::{DynamicHeader, FOOTER_LEN, Footer, HEADER_LEN};
use crate::decoder::router::{Kind, MetaPiece, Router};
use crate::decoder::{DecodeError, Decoder, DecoderStats, OpenContext, Output, Stash};
use crate::fields::be_u32;

const SECTOR: u64 = 512;
const TAG_BAT: u64 = u64::MAX;
const UNALLOCATED: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct DynamicDecoder {
    size: u64,
    block_size: u64,
    bitmap_bytes: u64,
    router: Router<Box<dyn Stash + Send>>,
}

impl DynamicDecoder {
    pub fn new(
        footer: Footer,
        header: DynamicHeader,
        ctx: OpenContext,
        out: &mut dyn Output,
    ) -> Result<Self, DecodeError> {
        let block_size = u64::from(header.block_size);
        let blocks = footer.current_size.div_ceil(block_size);
        if blocks > u64::from(header.max_table_entries) {
            return Err(super::VhdError::MalformedHeader(format!(
                "the BAT has {} entries but the {}-byte disk needs {blocks}",
                header.max_table_entries, footer.current_size
            ))
            .into());
        }
        let mut router = Router::new("vhd", ctx.image_len, ctx.stash, ctx.budget);
        router.claim(0, FOOTER_LEN as u64, "footer copy")?;
        router.claim(footer.data_offset, HEADER_LEN as u64, "dynamic header")?;
        router.map(
            header.table_offset,
            blocks * 4,
            Kind::Meta {
                tag: TAG_BAT,
                align: 4,
            },
            "BAT",
            out,
        )?;
        if blocks == 0 {
            router.tables_complete();
        }
        Ok(DynamicDecoder {
            size: footer.current_size,
            block_size,
            bitmap_bytes: header.bitmap_bytes(),
            router,
        })
    }

    fn on_meta(&mut self, piece: MetaPiece, out: &mut dyn Output) -> Result<(), DecodeError> {
        if piece.tag == TAG_BAT {
            let first = piece.offset / 4;
            for (k, e) in piece.bytes.chunks_exact(4).enumerate() {
                let sector = be_u32(e, 0);
                if sector == UNALLOCATED {
                    continue;
                }
                let block = first + k as u64;
                self.router.defer_meta(
                    u64::from(sector) * SECTOR,
                    self.bitmap_bytes,
                    block,
                    "block bitmap",
                    out,
                )?;
            }
            if piece.last {
                self.router.tables_complete();
            }
            return Ok(());
        }
        self.on_bitmap(
            piece.tag,
            piece.start + self.bitmap_bytes,
            &piece.bytes,
            out,
        )
    }

    /// Routes the runs of sectors a block's bitmap marks as present.
    fn on_bitmap(
        &mut self,
        block: u64,
        data_host: u64,
        bitmap: &[u8],
        out: &mut dyn Output,
    ) -> Result<(), DecodeError> {
        let guest = block * self.block_size;
        let sectors = (self.block_size.min(self.size - guest)).div_ceil(SECTOR);
        let present = |s: u64| bitmap[(s / 8) as usize] & (0x80 >> (s % 8)) != 0;
        let mut s = 0;
        while s < sectors {
            if !present(s) {
                s += 1;
                continue;
            }
            let first = s;
            while s < sectors && present(s) {
                s += 1;
            }
            let from = guest + first * SECTOR;
            let len = ((s - first) * SECTOR).min(self.size - from);
            self.router.map(
                data_host + first * SECTOR,
                len,
                Kind::Data { guest: from },
                "block data",
                out,
            )?;
        }
        Ok(())
    }
}

impl Decoder for DynamicDecoder {
    fn virtual_size(&self) -> Option<u64> {
        Some(self.size)
    }

    fn feed(&mut self, bytes: Bytes, out: &mut dyn Output) -> Result<(), DecodeError> {
        self.router.begin(bytes);
        while let Some(piece) = self.router.next(out)? {
            self.on_meta(piece, out)?;
        }
        self.router.check_budget()
    }

    fn finish(&mut self, _out: &mut dyn Output) -> Result<DecoderStats, DecodeError> {
        self.router.finish()?;
        Ok(self.router.stats())
    }
}
