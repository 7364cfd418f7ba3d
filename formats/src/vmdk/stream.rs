//! streamOptimized: compressed grains, each behind a marker that names its sector, read in one
//! pass. The metadata area before the first grain (header, descriptor and, in qemu's layout,
//! the grain tables) goes through the router; everything after it is a sequence of markers.
//!
//! What proves the stream complete depends on where the grain directory is:
//! - in the metadata area (qemu): the tables list every grain and its sector; an
//!   order-independent fingerprint of (grain, sector) pairs over the tables must equal the one
//!   over the markers seen, so a stream cut between grains, a grain missing or one in the wrong
//!   place is refused;
//! - at the end (VMware's layout, `gdOffset` = -1): the end-of-stream marker must be seen; the
//!   grain tables and directory after the grains are skipped (the markers already say where
//!   each grain goes) and the footer is checked.

use bytes::{Bytes, BytesMut};

use super::error::VmdkError;
use super::header::{GD_AT_END, SECTOR, SparseHeader};
use super::tables::{GrainTables, VmdkRouter};
use crate::decoder::limits::MAX_COMPRESSED_BLOCK;
use crate::decoder::{
    Codec, CompressedBlock, DecodeError, Decoder, DecoderStats, LayoutError, OpenContext, Output,
};
use crate::fields::{le_u32, le_u64, mix};

const MARKER_EOS: u32 = 0;
const MARKER_GT: u32 = 1;
const MARKER_GD: u32 = 2;
const MARKER_FOOTER: u32 = 3;
/// Bytes of a grain marker before the compressed data: lba (u64) and size (u32).
const GRAIN_MARKER: usize = 12;

/// Count and sum of mixed (grain, sector) pairs: equal on both sides when the same grains sit
/// at the same sectors, in whatever order they were counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Fingerprint {
    count: u64,
    sum: u64,
}

impl Fingerprint {
    fn add(&mut self, grain: u64, sector: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(mix(grain ^ mix(sector)));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Skipping up to this host offset (padding, skipped metadata), then a marker.
    Skip(u64),
    /// At a marker (its first bytes may be in `carry`).
    Marker,
    /// Gathering a grain's compressed bytes.
    Grain { marker: u64, lba: u64, size: usize },
    /// Reading the footer sector that follows a footer marker, ending at the offset given.
    Footer(u64),
    /// After the end-of-stream marker: the rest is ignored.
    End,
}

#[derive(Debug)]
pub(crate) struct StreamDecoder {
    h: SparseHeader,
    meta_end: u64,
    /// The metadata area's tables, when the grain directory is in it.
    tables: Option<(VmdkRouter, GrainTables)>,
    listed: Fingerprint,
    seen: Fingerprint,
    pos: u64,
    state: State,
    carry: BytesMut,
    next_lba: u64,
    compressed_blocks: u64,
}

impl StreamDecoder {
    pub fn new(
        h: SparseHeader,
        ctx: OpenContext,
        out: &mut dyn Output,
    ) -> Result<Self, DecodeError> {
        let meta_end = h.overhead * SECTOR;
        if meta_end < h.descriptor_end().max(SECTOR) {
            return Err(VmdkError::MalformedHeader(format!(
                "the metadata area ({} sectors) does not hold the header and descriptor",
                h.overhead
            ))
            .into());
        }
        let tables = if h.gd_offset == GD_AT_END {
            None
        } else {
            let image_len = ctx.image_len.map(|l| l.min(meta_end)).or(Some(meta_end));
            Some(GrainTables::open(
                h.clone(),
                image_len,
                Some(meta_end),
                ctx,
                out,
            )?)
        };
        Ok(StreamDecoder {
            meta_end,
            tables,
            listed: Fingerprint::default(),
            seen: Fingerprint::default(),
            pos: 0,
            state: State::Skip(meta_end),
            carry: BytesMut::new(),
            next_lba: 0,
            compressed_blocks: 0,
            h,
        })
    }

    fn feed_tables(&mut self, bytes: Bytes, out: &mut dyn Output) -> Result<(), DecodeError> {
        let Some((router, tables)) = self.tables.as_mut() else {
            return Ok(());
        };
        let listed = &mut self.listed;
        router.begin(bytes);
        while let Some(piece) = router.next(out)? {
            tables.on_meta(router, piece, out, &mut |_, g, sector, _| {
                listed.add(g, sector);
                Ok(())
            })?;
        }
        router.check_budget()
    }

    /// Takes `want` bytes starting at `b[*i..]`, joining pieces in `carry` when needed.
    fn gather(&mut self, b: &Bytes, i: &mut usize, want: usize) -> Option<Bytes> {
        if self.carry.is_empty() && b.len() - *i >= want {
            let out = b.slice(*i..*i + want);
            *i += want;
            return Some(out);
        }
        let take = (want - self.carry.len()).min(b.len() - *i);
        self.carry.extend_from_slice(&b[*i..*i + take]);
        *i += take;
        (self.carry.len() == want).then(|| std::mem::take(&mut self.carry).freeze())
    }

    fn bad_marker(offset: u64, reason: impl Into<String>) -> DecodeError {
        VmdkError::BadMarker {
            offset,
            reason: reason.into(),
        }
        .into()
    }

    fn feed_markers(
        &mut self,
        b: Bytes,
        base: u64,
        out: &mut dyn Output,
    ) -> Result<(), DecodeError> {
        let mut i = 0usize;
        while i < b.len() {
            let at = base + i as u64;
            match self.state {
                State::End => return Ok(()),
                State::Skip(until) => {
                    let n = (until - at).min((b.len() - i) as u64) as usize;
                    i += n;
                    if base + i as u64 == until {
                        self.state = State::Marker;
                    }
                }
                State::Marker => {
                    let marker = at - self.carry.len() as u64;
                    let want = if self.carry.len() >= GRAIN_MARKER {
                        SECTOR as usize
                    } else {
                        GRAIN_MARKER
                    };
                    let Some(head) = self.gather(&b, &mut i, want) else {
                        continue;
                    };
                    let value = le_u64(&head, 0);
                    let size = le_u32(&head, 8);
                    if size != 0 {
                        self.start_grain(marker, value, size)?;
                    } else if head.len() < SECTOR as usize {
                        // A metadata marker fills its sector: gather the rest.
                        self.carry.extend_from_slice(&head);
                    } else {
                        self.on_metadata_marker(marker, value, le_u32(&head, 12))?;
                    }
                }
                State::Grain { marker, lba, size } => {
                    let Some(data) = self.gather(&b, &mut i, size) else {
                        continue;
                    };
                    self.emit_grain(lba, data, out)?;
                    let end = marker + (GRAIN_MARKER + size) as u64;
                    self.state = State::Skip(end.next_multiple_of(SECTOR));
                }
                State::Footer(end) => {
                    let Some(footer) = self.gather(&b, &mut i, SECTOR as usize) else {
                        continue;
                    };
                    self.check_footer(&footer)?;
                    self.state = State::Skip(end);
                }
            }
        }
        Ok(())
    }

    fn start_grain(&mut self, marker: u64, lba: u64, size: u32) -> Result<(), DecodeError> {
        if u64::from(size) > MAX_COMPRESSED_BLOCK {
            return Err(Self::bad_marker(
                marker,
                format!("{size} compressed bytes, over the limit of {MAX_COMPRESSED_BLOCK}"),
            ));
        }
        if !lba.is_multiple_of(self.h.grain_sectors) {
            return Err(Self::bad_marker(
                marker,
                format!("sector {lba} is not at a grain boundary"),
            ));
        }
        if lba >= self.h.capacity {
            return Err(Self::bad_marker(
                marker,
                format!("sector {lba} is beyond the capacity of {}", self.h.capacity),
            ));
        }
        if lba < self.next_lba {
            return Err(VmdkError::GrainOrder {
                offset: marker,
                lba,
                previous_end: self.next_lba,
            }
            .into());
        }
        self.next_lba = lba + self.h.grain_sectors;
        self.seen.add(lba / self.h.grain_sectors, marker / SECTOR);
        self.state = State::Grain {
            marker,
            lba,
            size: size as usize,
        };
        Ok(())
    }

    fn on_metadata_marker(
        &mut self,
        marker: u64,
        sectors: u64,
        kind: u32,
    ) -> Result<(), DecodeError> {
        let body = marker + SECTOR;
        self.state = match kind {
            MARKER_EOS => State::End,
            MARKER_GT | MARKER_GD => {
                let end = sectors
                    .checked_mul(SECTOR)
                    .and_then(|n| body.checked_add(n))
                    .ok_or_else(|| Self::bad_marker(marker, "metadata size overflows"))?;
                State::Skip(end)
            }
            MARKER_FOOTER if sectors == 1 => State::Footer(body + SECTOR),
            MARKER_FOOTER => {
                return Err(Self::bad_marker(
                    marker,
                    format!("a footer of {sectors} sectors (must be 1)"),
                ));
            }
            other => {
                return Err(Self::bad_marker(
                    marker,
                    format!("unknown marker type {other}"),
                ));
            }
        };
        Ok(())
    }

    fn check_footer(&self, footer: &[u8]) -> Result<(), DecodeError> {
        let f = SparseHeader::parse(footer).map_err(|e| VmdkError::BadFooter(e.to_string()))?;
        if f.capacity != self.h.capacity || f.grain_sectors != self.h.grain_sectors {
            return Err(VmdkError::BadFooter(format!(
                "capacity {} and grain size {} differ from the header's {} and {}",
                f.capacity, f.grain_sectors, self.h.capacity, self.h.grain_sectors
            ))
            .into());
        }
        Ok(())
    }

    fn emit_grain(
        &mut self,
        lba: u64,
        data: Bytes,
        out: &mut dyn Output,
    ) -> Result<(), DecodeError> {
        let guest = lba * SECTOR;
        let grain_bytes = self.h.grain_bytes();
        self.compressed_blocks += 1;
        out.compressed(CompressedBlock {
            guest_offset: guest,
            guest_len: grain_bytes.min(self.h.virtual_size() - guest) as usize,
            block_size: grain_bytes as usize,
            codec: Codec::Zlib,
            data,
        })?;
        Ok(())
    }
}

impl Decoder for StreamDecoder {
    fn virtual_size(&self) -> Option<u64> {
        Some(self.h.virtual_size())
    }

    fn feed(&mut self, mut bytes: Bytes, out: &mut dyn Output) -> Result<(), DecodeError> {
        let base = self.pos;
        self.pos += bytes.len() as u64;
        if base < self.meta_end {
            let n = ((self.meta_end - base) as usize).min(bytes.len());
            let meta = bytes.split_to(n);
            self.feed_tables(meta, out)?;
            if bytes.is_empty() {
                return Ok(());
            }
            return self.feed_markers(bytes, base + n as u64, out);
        }
        self.feed_markers(bytes, base, out)
    }

    fn finish(&mut self, _out: &mut dyn Output) -> Result<DecoderStats, DecodeError> {
        let truncated = LayoutError::Truncated {
            format: "vmdk",
            needed: self.pos.max(self.meta_end),
            len: self.pos,
        };
        let mid_structure = matches!(self.state, State::Grain { .. } | State::Footer(_))
            || (self.state == State::Marker && !self.carry.is_empty());
        let mut stats = DecoderStats::default();
        match self.tables.as_mut() {
            Some((router, tables)) => {
                router.finish()?;
                if !tables.complete() || mid_structure || self.pos < self.meta_end {
                    return Err(truncated.into());
                }
                if self.seen != self.listed {
                    if self.seen.count < self.listed.count && self.state != State::End {
                        return Err(truncated.into());
                    }
                    return Err(VmdkError::GrainsMismatch {
                        seen: self.seen.count,
                        listed: self.listed.count,
                    }
                    .into());
                }
                stats = router.stats();
            }
            None if self.state != State::End => return Err(truncated.into()),
            None => {}
        }
        stats.compressed_blocks = self.compressed_blocks;
        Ok(stats)
    }
}
