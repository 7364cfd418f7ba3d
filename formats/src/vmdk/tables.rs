//! Grain directory and grain tables, walked as the router delivers them: the directory names
//! the tables, each table entry a grain. Both vmdk decoders use this; they differ in what they
//! do with a grain entry.

use super::error::VmdkError;
use super::header::{SECTOR, SparseHeader};
use crate::decoder::router::{Kind, MetaPiece, Router};
use crate::decoder::{DecodeError, OpenContext, Output, Stash};
use crate::fields::le_u32;

const TAG_GD: u64 = 1 << 60;
const TAG_RGD: u64 = 2 << 60;
const TAG_GT: u64 = 3 << 60;
const INDEX: u64 = (1 << 60) - 1;

pub(crate) type VmdkRouter = Router<Box<dyn Stash + Send>>;

/// What a decoder does with an allocated grain entry: (router, grain index, sector, output).
pub(crate) type OnGrain<'a> =
    dyn FnMut(&mut VmdkRouter, u64, u64, &mut dyn Output) -> Result<(), DecodeError> + 'a;

/// Walks the tables; see the module documentation.
#[derive(Debug)]
pub(crate) struct GrainTables {
    h: SparseHeader,
    /// Tables must end at or before this host offset (stream-optimized images keep them in
    /// the metadata area before the grains).
    limit: Option<u64>,
    gd_done: bool,
    gts_pending: u64,
}

impl GrainTables {
    fn new(h: SparseHeader, limit: Option<u64>) -> Self {
        GrainTables {
            h,
            limit,
            gd_done: false,
            gts_pending: 0,
        }
    }

    /// A router over the image with the header and the embedded descriptor claimed, and the
    /// tables registered from the grain directory on.
    pub fn open(
        h: SparseHeader,
        image_len: Option<u64>,
        limit: Option<u64>,
        ctx: OpenContext,
        out: &mut dyn Output,
    ) -> Result<(VmdkRouter, Self), DecodeError> {
        let mut router = Router::new("vmdk", image_len, ctx.stash, ctx.budget);
        router.claim(0, SECTOR, "header")?;
        if h.descriptor_sectors > 0 {
            router.claim(
                h.descriptor_offset * SECTOR,
                h.descriptor_sectors * SECTOR,
                "descriptor",
            )?;
        }
        let mut tables = GrainTables::new(h, limit);
        tables.start(&mut router, out)?;
        Ok((router, tables))
    }

    fn check_limit(&self, what: &'static str, offset: u64, len: u64) -> Result<(), VmdkError> {
        match self.limit {
            Some(limit) if offset.saturating_add(len) > limit => {
                Err(VmdkError::TableOutsideMetadata { what, offset })
            }
            _ => Ok(()),
        }
    }

    /// Registers the grain directory (and the redundant one, only to skip its bytes).
    pub fn start(
        &mut self,
        router: &mut VmdkRouter,
        out: &mut dyn Output,
    ) -> Result<(), DecodeError> {
        let gd_len = self.h.gd_entries() * 4;
        let gd = self.h.gd_offset.saturating_mul(SECTOR);
        self.check_limit("grain directory", gd, gd_len)?;
        router.map(
            gd,
            gd_len,
            Kind::Meta {
                tag: TAG_GD,
                align: 4,
            },
            "grain directory",
            out,
        )?;
        if self.h.redundant_tables() {
            // Only so that its tables are skipped instead of kept: a redundant directory that
            // lands somewhere odd is simply not used.
            let _ = router.map(
                self.h.rgd_offset.saturating_mul(SECTOR),
                gd_len,
                Kind::Meta {
                    tag: TAG_RGD,
                    align: 4,
                },
                "redundant grain directory",
                out,
            );
        }
        Ok(())
    }

    pub fn complete(&self) -> bool {
        self.gd_done && self.gts_pending == 0
    }

    /// Handles a piece of a table; `grain(router, grain index, sector, out)` is called for each
    /// allocated grain entry (zeroed grains go to the output as zero ranges).
    pub fn on_meta(
        &mut self,
        router: &mut VmdkRouter,
        piece: MetaPiece,
        out: &mut dyn Output,
        grain: &mut OnGrain<'_>,
    ) -> Result<(), DecodeError> {
        let gt_len = u64::from(self.h.gtes_per_gt) * 4;
        let first = piece.offset / 4;
        let entries = piece.bytes.chunks_exact(4).map(|e| u64::from(le_u32(e, 0)));
        match piece.tag & !INDEX {
            TAG_GD => {
                for (k, sector) in entries.enumerate() {
                    if sector == 0 {
                        continue;
                    }
                    let index = first + k as u64;
                    let offset = sector * SECTOR;
                    self.check_limit("grain table", offset, gt_len)?;
                    router.defer_meta(offset, gt_len, TAG_GT | index, "grain table", out)?;
                    self.gts_pending += 1;
                }
                self.gd_done |= piece.last;
            }
            TAG_RGD => {
                for sector in entries.filter(|&s| s != 0) {
                    let _ = router.map(
                        sector * SECTOR,
                        gt_len,
                        Kind::Skip,
                        "redundant grain table",
                        out,
                    );
                }
            }
            TAG_GT => {
                let table = piece.tag & INDEX;
                let vsize = self.h.virtual_size();
                let grain_bytes = self.h.grain_bytes();
                for (j, sector) in entries.enumerate() {
                    let g = table * u64::from(self.h.gtes_per_gt) + j as u64;
                    let guest = g * grain_bytes;
                    if guest >= vsize {
                        break;
                    }
                    match sector {
                        0 => {}
                        1 if self.h.zero_grains() => {
                            out.zero(guest, grain_bytes.min(vsize - guest))?;
                        }
                        s => grain(router, g, s, out)?,
                    }
                }
                self.gts_pending -= 1;
            }
            _ => {}
        }
        if self.complete() {
            router.tables_complete();
        }
        Ok(())
    }
}
