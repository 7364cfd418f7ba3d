//! Routes a table-based image's bytes, fed in file order, to where its tables say they belong.
//!
//! A decoder registers *regions* of the host file as it learns about them: metadata it wants to
//! parse (delivered back to it as [`MetaPiece`]s), raw guest data (sent to the output as slices
//! of the fed bytes, without a copy), or bytes to skip. Bytes no region claims yet are
//! *unknown*: kept in the stash until the decoder says its tables are complete, because a table
//! read later may still name them. A region registered over bytes that
//! already went by is served from the stash. Regions never overlap each other or anything
//! claimed before (a structure landing on another is refused), and every region must have been
//! seen when the stream ends.
//!
//! Formats whose tables name many blocks register them with [`Router::defer_data`] (or
//! [`Router::defer_meta`]): a compact entry
//! in a heap ordered by host offset, made a region only when the stream reaches it, and merged
//! with the previous entry when both continue each other (images written in order then cost one
//! entry in all). Memory then grows with the blocks still ahead, not with the whole table.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::limits::BOOKKEEPING_ENTRY_BYTES;
use super::{CompressedBlock, DecodeError, LayoutError, Output, Stash, Stashed};

/// What a region of the host file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Header or table bytes, handed back to the decoder in pieces that are whole multiples of
    /// `align` bytes (the last piece of a region may be shorter when the region is).
    Meta { tag: u64, align: usize },
    /// Guest data at `guest`.
    Data { guest: u64 },
    /// Bytes the decoder does not need (a redundant copy of a table): claimed, then dropped.
    Skip,
}

/// Metadata bytes for the decoder to parse.
#[derive(Debug)]
pub(crate) struct MetaPiece {
    pub tag: u64,
    /// Host offset where the region starts.
    pub start: u64,
    /// Offset of `bytes` within the region.
    pub offset: u64,
    pub bytes: Bytes,
    /// The region is complete with this piece.
    pub last: bool,
}

#[derive(Debug)]
struct Region {
    start: u64,
    end: u64,
    /// Bytes of the region handled so far.
    done: u64,
    kind: Kind,
    /// Meta: a partial entry carried to the next piece.
    carry: BytesMut,
}

/// An output for registering regions before the stream starts, when nothing can be replayed
/// yet: any use is a bug, reported as a closed output.
#[derive(Debug)]
pub(crate) struct NoOutput;

impl Output for NoOutput {
    fn data(&mut self, _: u64, _: Bytes) -> Result<(), super::OutputClosed> {
        Err(super::OutputClosed)
    }
    fn zero(&mut self, _: u64, _: u64) -> Result<(), super::OutputClosed> {
        Err(super::OutputClosed)
    }
    fn compressed(&mut self, _: CompressedBlock) -> Result<(), super::OutputClosed> {
        Err(super::OutputClosed)
    }
}

/// A region registered for later: data for `guest`, or metadata delivered whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Deferred {
    host: u64,
    len: u64,
    /// Data: the guest offset; Meta: the tag.
    value: u64,
    meta: bool,
    what: &'static str,
}

/// Host ranges claimed so far, merged; for overlap checks.
#[derive(Debug, Default)]
struct Claimed(BTreeMap<u64, u64>);

impl Claimed {
    /// Claims `[start, end)`; false when any of it was claimed before.
    fn claim(&mut self, start: u64, end: u64) -> bool {
        if let Some((_, &e)) = self.0.range(..end).next_back()
            && e > start
        {
            return false;
        }
        let mut new_start = start;
        let mut new_end = end;
        if let Some((&s, &e)) = self.0.range(..=start).next_back()
            && e == start
        {
            new_start = s;
            self.0.remove(&s);
        }
        if let Some(&e) = self.0.get(&end) {
            new_end = e;
            self.0.remove(&end);
        }
        self.0.insert(new_start, new_end);
        true
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Router<S> {
    format: &'static str,
    image_len: Option<u64>,
    /// Regions not yet complete, by start.
    pending: BTreeMap<u64, Region>,
    claimed: Claimed,
    stash: S,
    /// Unknown pieces put in the stash: start → end.
    stashed: BTreeMap<u64, u64>,
    keep_unknown: bool,
    release_when_idle: bool,
    /// Regions registered for later, by host offset (a min-heap), and the last one deferred,
    /// held back while the next may extend it.
    deferred: std::collections::BinaryHeap<std::cmp::Reverse<Deferred>>,
    held: Option<Deferred>,
    /// Meta pieces served from the stash, waiting for the decoder.
    backlog: VecDeque<MetaPiece>,
    backlog_bytes: usize,
    /// The piece being dispatched, where it starts, and the next byte to dispatch.
    piece: Bytes,
    piece_start: u64,
    at: u64,
    budget: usize,
    stashed_pieces: u64,
    from_stash: u64,
    peak: usize,
}

impl<S: Stash> Router<S> {
    pub fn new(format: &'static str, image_len: Option<u64>, stash: S, budget: usize) -> Self {
        Router {
            format,
            image_len,
            pending: BTreeMap::new(),
            claimed: Claimed::default(),
            stash,
            stashed: BTreeMap::new(),
            deferred: std::collections::BinaryHeap::new(),
            held: None,
            keep_unknown: true,
            release_when_idle: false,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            piece: Bytes::new(),
            piece_start: 0,
            at: 0,
            budget,
            stashed_pieces: 0,
            from_stash: 0,
            peak: 0,
        }
    }

    /// Host bytes fed so far.
    pub fn position(&self) -> u64 {
        self.piece_start + self.piece.len() as u64
    }

    /// Claims `[offset, offset + len)` for a structure the decoder handles itself (headers it
    /// parsed from the head), so nothing else may land there.
    pub fn claim(&mut self, offset: u64, len: u64, what: &'static str) -> Result<(), DecodeError> {
        let end = self.check_bounds(offset, len, what)?;
        if len > 0 && !self.claimed.claim(offset, end) {
            return Err(self.overlap(what, offset));
        }
        Ok(())
    }

    /// Registers a region; its bytes are dispatched as they arrive (or now, from the stash, for
    /// the part that already went by). `what` names it in errors.
    pub fn map(
        &mut self,
        offset: u64,
        len: u64,
        kind: Kind,
        what: &'static str,
        out: &mut dyn Output,
    ) -> Result<(), DecodeError> {
        if len == 0 {
            return Ok(());
        }
        self.claim(offset, len, what)?;
        self.map_claimed(offset, len, kind, what, out)
    }

    /// As [`Router::map`], for a range the decoder claimed before (with [`Router::claim`]).
    pub fn map_claimed(
        &mut self,
        offset: u64,
        len: u64,
        kind: Kind,
        what: &'static str,
        out: &mut dyn Output,
    ) -> Result<(), DecodeError> {
        if len == 0 {
            return Ok(());
        }
        let end = self.check_bounds(offset, len, what)?;
        let mut region = Region {
            start: offset,
            end,
            done: 0,
            kind,
            carry: BytesMut::new(),
        };
        if offset < self.at {
            self.replay(&mut region, end.min(self.at), what, out)?;
            if end <= self.at {
                return Ok(());
            }
        }
        self.pending.insert(offset, region);
        Ok(())
    }

    /// Registers guest data at `[offset, offset + len)` for when the stream gets there (at once
    /// when it went by already). Bounds are checked now, overlaps when it becomes a region.
    pub fn defer_data(
        &mut self,
        offset: u64,
        len: u64,
        guest: u64,
        what: &'static str,
        out: &mut dyn Output,
    ) -> Result<(), DecodeError> {
        self.defer(
            Deferred {
                host: offset,
                len,
                value: guest,
                meta: false,
                what,
            },
            out,
        )
    }

    /// Registers metadata at `[offset, offset + len)`, delivered whole under `tag`, for when
    /// the stream gets there (at once when it went by already).
    pub fn defer_meta(
        &mut self,
        offset: u64,
        len: u64,
        tag: u64,
        what: &'static str,
        out: &mut dyn Output,
    ) -> Result<(), DecodeError> {
        self.defer(
            Deferred {
                host: offset,
                len,
                value: tag,
                meta: true,
                what,
            },
            out,
        )
    }

    fn defer(&mut self, d: Deferred, out: &mut dyn Output) -> Result<(), DecodeError> {
        if d.len == 0 {
            return Ok(());
        }
        self.check_bounds(d.host, d.len, d.what)?;
        if d.host < self.at {
            return self.register(d, out);
        }
        if let Some(held) = self.held.as_mut()
            && !held.meta
            && !d.meta
            && held.host + held.len == d.host
            && held.value + held.len == d.value
            && held.what == d.what
        {
            held.len += d.len;
            return Ok(());
        }
        if let Some(previous) = self.held.replace(d) {
            self.deferred.push(std::cmp::Reverse(previous));
        }
        Ok(())
    }

    fn register(&mut self, d: Deferred, out: &mut dyn Output) -> Result<(), DecodeError> {
        let kind = if d.meta {
            Kind::Meta {
                tag: d.value,
                align: usize::try_from(d.len).unwrap_or(usize::MAX),
            }
        } else {
            Kind::Data { guest: d.value }
        };
        self.map(d.host, d.len, kind, d.what, out)
    }

    /// Makes regions of the deferred entries that start before `hi`.
    fn register_due(&mut self, hi: u64, out: &mut dyn Output) -> Result<(), DecodeError> {
        if let Some(held) = self.held.take() {
            self.deferred.push(std::cmp::Reverse(held));
        }
        while let Some(std::cmp::Reverse(d)) = self.deferred.peek().copied()
            && d.host < hi
        {
            self.deferred.pop();
            self.register(d, out)?;
        }
        Ok(())
    }

    /// Every table is known: no region will be registered over bytes that went by, so unknown
    /// bytes are dropped from now on and the stash is emptied.
    pub fn tables_complete(&mut self) {
        self.keep_unknown = false;
        self.release_when_idle = true;
    }

    /// Starts dispatching `bytes`, the next piece of the stream.
    pub fn begin(&mut self, bytes: Bytes) {
        self.piece_start = self.position();
        self.at = self.piece_start;
        self.piece = bytes;
    }

    /// Dispatches the current piece up to the next metadata the decoder must parse; `None` when
    /// the piece is done.
    pub fn next(&mut self, out: &mut dyn Output) -> Result<Option<MetaPiece>, DecodeError> {
        loop {
            if let Some(p) = self.backlog.pop_front() {
                self.backlog_bytes -= p.bytes.len();
                return Ok(Some(p));
            }
            if self.release_when_idle {
                self.release_when_idle = false;
                for (&start, _) in std::mem::take(&mut self.stashed).iter() {
                    self.stash.release(start);
                }
            }
            let hi = self.position();
            if self.at >= hi {
                return Ok(None);
            }
            self.register_due(hi, out)?;
            if let Some(p) = self.backlog.pop_front() {
                self.backlog_bytes -= p.bytes.len();
                return Ok(Some(p));
            }
            let current = self
                .pending
                .range(..=self.at)
                .next_back()
                .filter(|(_, r)| r.end > self.at)
                .map(|(&s, _)| s);
            let from = self.at;
            match current {
                Some(start) => {
                    let end = self.pending.get(&start).map_or(from, |r| r.end);
                    let to = end.min(hi);
                    let bytes = self.slice(from, to);
                    self.at = to;
                    let Some(mut region) = self.pending.remove(&start) else {
                        continue;
                    };
                    let piece = self.deliver(&mut region, bytes, out)?;
                    if region.done < region.end - region.start {
                        self.pending.insert(start, region);
                    }
                    if piece.is_some() {
                        return Ok(piece);
                    }
                }
                None => {
                    let next = self
                        .pending
                        .range(from..)
                        .next()
                        .map_or(u64::MAX, |(&s, _)| s);
                    let to = next.min(hi);
                    self.at = to;
                    if self.keep_unknown {
                        let bytes = self.slice(from, to);
                        self.stash.put(from, &bytes).map_err(DecodeError::Stash)?;
                        self.stashed.insert(from, to);
                        self.stashed_pieces += 1;
                    }
                }
            }
        }
    }

    /// After each fed piece: fails when the bookkeeping outgrew the budget.
    pub fn check_budget(&mut self) -> Result<(), DecodeError> {
        let carried: usize = self.pending.values().map(|r| r.carry.capacity()).sum();
        let used = (self.pending.len() + self.claimed.len() + self.stashed.len())
            * BOOKKEEPING_ENTRY_BYTES
            + self.deferred.len() * std::mem::size_of::<Deferred>()
            + carried
            + self.backlog_bytes;
        self.peak = self.peak.max(used);
        if used > self.budget {
            return Err(LayoutError::MetadataBudget {
                format: self.format,
                budget: self.budget,
            }
            .into());
        }
        Ok(())
    }

    /// The stream ended: every region must have been seen.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        if let Some(held) = self.held.take() {
            self.deferred.push(std::cmp::Reverse(held));
        }
        if let Some(std::cmp::Reverse(d)) = self.deferred.peek() {
            let needed = self
                .pending
                .values()
                .next()
                .map_or(d.host, |r| (r.start + r.done).min(d.host));
            return Err(LayoutError::Truncated {
                format: self.format,
                needed,
                len: self.position(),
            }
            .into());
        }
        if let Some(region) = self.pending.values().next() {
            return Err(LayoutError::Truncated {
                format: self.format,
                needed: region.start + region.done,
                len: self.position(),
            }
            .into());
        }
        Ok(())
    }

    pub fn stats(&self) -> super::DecoderStats {
        super::DecoderStats {
            compressed_blocks: 0,
            stashed_pieces: self.stashed_pieces,
            from_stash: self.from_stash,
            peak_metadata_bytes: self.peak,
            spilled_bytes: self.stash.spilled_bytes(),
            qcow2: None,
        }
    }

    fn slice(&self, from: u64, to: u64) -> Bytes {
        let lo = (from - self.piece_start) as usize;
        let hi = (to - self.piece_start) as usize;
        self.piece.slice(lo..hi)
    }

    fn check_bounds(&self, offset: u64, len: u64, what: &'static str) -> Result<u64, DecodeError> {
        let end = offset.checked_add(len);
        match (end, self.image_len) {
            (Some(end), Some(image_len)) if end <= image_len => Ok(end),
            (Some(end), None) => Ok(end),
            _ => Err(LayoutError::BeyondEnd {
                format: self.format,
                what,
                offset,
                len,
                image_len: self.image_len.unwrap_or(u64::MAX),
            }
            .into()),
        }
    }

    fn overlap(&self, what: &'static str, offset: u64) -> DecodeError {
        LayoutError::Overlap {
            format: self.format,
            what,
            offset,
        }
        .into()
    }

    /// Serves `[region.start, seen_end)`, which went by already, from the stash.
    fn replay(
        &mut self,
        region: &mut Region,
        seen_end: u64,
        what: &'static str,
        out: &mut dyn Output,
    ) -> Result<(), DecodeError> {
        self.from_stash += 1;
        let mut at = region.start;
        let pieces: Vec<(u64, u64)> = self
            .stashed
            .range(..seen_end)
            .rev()
            .take_while(|&(_, &e)| e > region.start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (start, end) in pieces.into_iter().rev() {
            if start > at {
                break;
            }
            let need = end.min(seen_end);
            let Some(stashed) = self
                .stash
                .get(start, (need - start) as usize)
                .map_err(DecodeError::Stash)?
            else {
                break;
            };
            let bytes = match stashed {
                Stashed::Zero => Bytes::from(vec![0u8; (need - at) as usize]),
                Stashed::Bytes(b) => {
                    let bytes = b.slice(((at - start) as usize).min(b.len())..);
                    if (bytes.len() as u64) < need - at {
                        // A random-access source that came up short: the file shrank.
                        break;
                    }
                    bytes.slice(..(need - at) as usize)
                }
            };
            if let Some(piece) = self.deliver(region, bytes, out)? {
                self.backlog_bytes += piece.bytes.len();
                self.backlog.push_back(piece);
            }
            at = need;
        }
        if at < seen_end {
            return Err(LayoutError::Released {
                format: self.format,
                what,
                offset: at,
            }
            .into());
        }
        Ok(())
    }

    /// Hands the next `bytes` of `region` on.
    fn deliver(
        &mut self,
        region: &mut Region,
        bytes: Bytes,
        out: &mut dyn Output,
    ) -> Result<Option<MetaPiece>, DecodeError> {
        let offset = region.done;
        region.done += bytes.len() as u64;
        let complete = region.done == region.end - region.start;
        match region.kind {
            Kind::Data { guest } => {
                out.data(guest + offset, bytes)?;
                Ok(None)
            }
            Kind::Skip => Ok(None),
            Kind::Meta { tag, align } => {
                let start_of_piece = offset - region.carry.len() as u64;
                let bytes = if region.carry.is_empty() {
                    bytes
                } else {
                    region.carry.extend_from_slice(&bytes);
                    std::mem::take(&mut region.carry).freeze()
                };
                let whole = if complete {
                    bytes.len()
                } else {
                    bytes.len() / align * align
                };
                if whole < bytes.len() {
                    region.carry.extend_from_slice(&bytes[whole..]);
                }
                if whole == 0 {
                    return Ok(None);
                }
                Ok(Some(MetaPiece {
                    tag,
                    start: region.start,
                    offset: start_of_piece,
                    bytes: bytes.slice(..whole),
                    last: complete,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::{MemoryStash, OutputClosed};

    #[derive(Default)]
    struct Collect {
        data: Vec<(u64, Vec<u8>)>,
        compressed: Vec<(u64, Vec<u8>)>,
    }

    impl Output for Collect {
        fn data(&mut self, guest: u64, bytes: Bytes) -> Result<(), OutputClosed> {
            self.data.push((guest, bytes.to_vec()));
            Ok(())
        }
        fn zero(&mut self, _: u64, _: u64) -> Result<(), OutputClosed> {
            Ok(())
        }
        fn compressed(&mut self, b: CompressedBlock) -> Result<(), OutputClosed> {
            self.compressed.push((b.guest_offset, b.data.to_vec()));
            Ok(())
        }
    }

    fn router() -> Router<MemoryStash> {
        Router::new("test", None, MemoryStash::new(), 1 << 20)
    }

    /// Feeds `bytes` in pieces of `step`; for every meta piece, calls `on_meta`.
    fn feed(
        r: &mut Router<MemoryStash>,
        bytes: &[u8],
        step: usize,
        out: &mut Collect,
        mut on_meta: impl FnMut(&mut Router<MemoryStash>, MetaPiece, &mut Collect),
    ) {
        for chunk in bytes.chunks(step) {
            r.begin(Bytes::copy_from_slice(chunk));
            while let Some(p) = r.next(out).expect("next") {
                on_meta(r, p, out);
            }
        }
    }

    #[test]
    fn claimed_ranges_merge_and_refuse_overlaps() {
        let mut c = Claimed::default();
        assert!(c.claim(10, 20));
        assert!(c.claim(20, 30));
        assert!(c.claim(0, 10));
        assert_eq!(c.len(), 1);
        assert!(!c.claim(29, 31));
        assert!(!c.claim(5, 6));
        assert!(c.claim(30, 31));
        assert!(c.claim(40, 41));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn data_after_its_table_is_sent_as_slices_in_any_piece_size() {
        // A table at 0 (one u64 entry: the host offset of 8 data bytes), data later.
        let mut img = vec![0u8; 64];
        img[..8].copy_from_slice(&40u64.to_le_bytes());
        img[40..48].copy_from_slice(b"DATADATA");
        for step in [1, 3, 8, 64] {
            let mut r = router();
            let mut out = Collect::default();
            r.map(0, 8, Kind::Meta { tag: 7, align: 8 }, "table", &mut out)
                .expect("map");
            feed(&mut r, &img, step, &mut out, |r, p, out| {
                assert_eq!((p.tag, p.offset, p.bytes.len(), p.last), (7, 0, 8, true));
                let host = u64::from_le_bytes(p.bytes[..8].try_into().expect("8"));
                r.map(host, 8, Kind::Data { guest: 1000 }, "data", out)
                    .expect("map data");
            });
            r.finish().expect("complete");
            let got: Vec<u8> = out.data.iter().flat_map(|(_, b)| b.clone()).collect();
            assert_eq!(got, b"DATADATA", "step {step}");
            assert_eq!(out.data[0].0, 1000);
        }
    }

    #[test]
    fn data_before_its_table_comes_from_the_stash() {
        let mut img = vec![0u8; 64];
        img[8..16].copy_from_slice(b"EARLYBIT");
        img[56..64].copy_from_slice(&8u64.to_le_bytes());
        for step in [5, 64] {
            let mut r = router();
            let mut out = Collect::default();
            r.map(56, 8, Kind::Meta { tag: 1, align: 8 }, "table", &mut out)
                .expect("map");
            feed(&mut r, &img, step, &mut out, |r, p, out| {
                let host = u64::from_le_bytes(p.bytes[..8].try_into().expect("8"));
                r.map(host, 8, Kind::Data { guest: 0 }, "data", out)
                    .expect("map data");
                r.tables_complete();
            });
            r.finish().expect("complete");
            let got: Vec<u8> = out.data.iter().flat_map(|(_, b)| b.clone()).collect();
            assert_eq!(got, b"EARLYBIT", "step {step}");
            assert!(r.stats().from_stash > 0);
        }
    }

    #[test]
    fn once_tables_are_complete_passed_bytes_are_released() {
        let img = vec![1u8; 32];
        let mut r = router();
        let mut out = Collect::default();
        r.tables_complete();
        feed(&mut r, &img, 32, &mut out, |_, _, _| {});
        let err = r
            .map(0, 4, Kind::Data { guest: 0 }, "data", &mut out)
            .expect_err("released");
        assert!(matches!(
            err,
            DecodeError::Layout(LayoutError::Released { offset: 0, .. })
        ));
    }

    #[test]
    fn overlapping_regions_and_regions_past_the_end_are_refused() {
        let mut r = Router::new("test", Some(100), MemoryStash::new(), 1 << 20);
        let mut out = Collect::default();
        r.claim(0, 10, "header").expect("claim");
        let err = r
            .map(5, 10, Kind::Data { guest: 0 }, "data", &mut out)
            .expect_err("overlap");
        assert!(matches!(
            err,
            DecodeError::Layout(LayoutError::Overlap { offset: 5, .. })
        ));
        let err = r
            .map(95, 10, Kind::Data { guest: 0 }, "data", &mut out)
            .expect_err("beyond");
        assert!(matches!(
            err,
            DecodeError::Layout(LayoutError::BeyondEnd { .. })
        ));
        let err = r
            .map(u64::MAX - 1, 10, Kind::Data { guest: 0 }, "data", &mut out)
            .expect_err("overflow");
        assert!(matches!(
            err,
            DecodeError::Layout(LayoutError::BeyondEnd { .. })
        ));
    }

    #[test]
    fn a_region_not_seen_by_the_end_is_truncation() {
        let mut r = router();
        let mut out = Collect::default();
        r.map(10, 10, Kind::Data { guest: 0 }, "data", &mut out)
            .expect("map");
        feed(&mut r, &[0u8; 15], 15, &mut out, |_, _, _| {});
        let err = r.finish().expect_err("truncated");
        assert!(matches!(
            err,
            DecodeError::Layout(LayoutError::Truncated {
                needed: 15,
                len: 15,
                ..
            })
        ));
    }

    #[test]
    fn deferred_blocks_written_in_order_cost_one_entry() {
        let mut r = Router::new("test", None, MemoryStash::new(), 1000);
        let mut out = Collect::default();
        for i in 0..1000u64 {
            r.defer_data(100 + i * 10, 10, i * 10, "block", &mut out)
                .expect("defer");
        }
        r.check_budget().expect("merged into one entry");
        let img: Vec<u8> = (0..10_100u32).map(|i| i as u8).collect();
        feed(&mut r, &img, 4096, &mut out, |_, _, _| {});
        r.finish().expect("complete");
        let mut disk = vec![0u8; 10_000];
        for (at, b) in &out.data {
            disk[*at as usize..*at as usize + b.len()].copy_from_slice(b);
        }
        assert!(disk[..] == img[100..]);
    }

    #[test]
    fn deferred_blocks_out_of_order_arrive_in_file_order() {
        let mut r = router();
        let mut out = Collect::default();
        r.defer_data(40, 8, 0, "block", &mut out).expect("defer");
        r.defer_data(8, 8, 8, "block", &mut out).expect("defer");
        r.defer_meta(20, 4, 9, "bitmap", &mut out).expect("defer");
        let img: Vec<u8> = (0..64u8).collect();
        let mut metas = Vec::new();
        feed(&mut r, &img, 64, &mut out, |_, p, _| {
            metas.push((p.tag, p.start))
        });
        r.finish().expect("complete");
        assert_eq!(metas, vec![(9, 20)]);
        assert_eq!(
            out.data,
            vec![(8, (8..16).collect()), (0, (40..48).collect())]
        );
    }

    #[test]
    fn the_budget_bounds_bookkeeping() {
        let mut r = Router::new("test", None, MemoryStash::new(), 1000);
        let mut out = Collect::default();
        for i in 0..100u64 {
            r.map(i * 10, 5, Kind::Data { guest: i * 5 }, "data", &mut out)
                .expect("map");
        }
        let err = r.check_budget().expect_err("over budget");
        assert!(matches!(
            err,
            DecodeError::Layout(LayoutError::MetadataBudget { .. })
        ));
    }
}
