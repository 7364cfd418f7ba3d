//! monolithicSparse: uncompressed grains placed by the grain tables, routed to their guest
//! offsets as the stream passes them (tables normally come first; grains that arrive before
//! their table are stashed).

use bytes::Bytes;

use super::header::{SECTOR, SparseHeader};
use super::tables::{GrainTables, VmdkRouter};
use crate::decoder::{DecodeError, Decoder, DecoderStats, OpenContext, Output};

#[derive(Debug)]
pub(crate) struct SparseDecoder {
    h: SparseHeader,
    router: VmdkRouter,
    tables: GrainTables,
}

impl SparseDecoder {
    pub fn new(
        h: SparseHeader,
        ctx: OpenContext,
        out: &mut dyn Output,
    ) -> Result<Self, DecodeError> {
        let image_len = ctx.image_len;
        let (router, tables) = GrainTables::open(h.clone(), image_len, None, ctx, out)?;
        Ok(SparseDecoder { h, router, tables })
    }
}

impl Decoder for SparseDecoder {
    fn virtual_size(&self) -> Option<u64> {
        Some(self.h.virtual_size())
    }

    fn feed(&mut self, bytes: Bytes, out: &mut dyn Output) -> Result<(), DecodeError> {
        let grain_bytes = self.h.grain_bytes();
        let vsize = self.h.virtual_size();
        self.router.begin(bytes);
        while let Some(piece) = self.router.next(out)? {
            self.tables.on_meta(
                &mut self.router,
                piece,
                out,
                &mut |router, g, sector, out| {
                    let guest = g * grain_bytes;
                    let len = grain_bytes.min(vsize - guest);
                    router.defer_data(sector * SECTOR, len, guest, "grain", out)
                },
            )?;
        }
        self.router.check_budget()
    }

    fn finish(&mut self, _out: &mut dyn Output) -> Result<DecoderStats, DecodeError> {
        self.router.finish()?;
        Ok(self.router.stats())
    }
}
