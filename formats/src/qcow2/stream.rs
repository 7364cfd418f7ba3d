//! One-pass qcow2 → raw conversion over a non-seekable stream.
//!
//! The caller feeds the image cluster by cluster, in file order. Each cluster is either known
//! (header, L1, L2, refcount metadata, a data cluster or compressed bytes that a parsed L2 table
//! names) and handled at once, or unknown, and then kept in a [`Stash`](crate::decoder::Stash)
//! (keyed by the cluster's host offset) until an L2 table read later names it. Data goes out
//! through [`ConvertSink`] tagged with its guest offset, in whatever order the file holds it;
//! everything never written reads as zeros.

use std::collections::{BTreeMap, HashMap};
use std::io;

use bytes::Bytes;

use super::compressed::CompressedCluster;
use super::entries::{L1Entry, L2Entry, SUBCLUSTERS};
use super::error::Qcow2Error;
use super::header::Header;
use super::limits::MAX_HOST_OFFSET;
use crate::decoder::{Stash, Stashed};

/// Receives the converted image.
pub trait ConvertSink {
    type Error;
    /// `bytes` belong at `guest_offset` of the raw image.
    fn data(&mut self, guest_offset: u64, bytes: Bytes) -> Result<(), Self::Error>;
    /// A compressed cluster to decode (on any thread) and write at its guest offset.
    fn compressed(&mut self, cluster: CompressedCluster) -> Result<(), Self::Error>;
}

/// Why conversion stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E> {
    #[error(transparent)]
    Image(#[from] Qcow2Error),
    #[error("keeping not-yet-mapped clusters failed: {0}")]
    Stash(#[source] io::Error),
    #[error("the converted data could not be delivered")]
    Sink(#[source] E),
}

/// What the converter saw, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConverterStats {
    pub data_clusters: u64,
    pub compressed_clusters: u64,
    pub stashed_clusters: u64,
    pub from_stash: u64,
    pub peak_metadata_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meta {
    Header,
    L1,
    RefcountTable(u64),
    RefcountBlock(u64),
    L2(u64),
}

impl Meta {
    fn name(self) -> &'static str {
        match self {
            Meta::Header => "header",
            Meta::L1 => "L1 table",
            Meta::RefcountTable(_) => "refcount table",
            Meta::RefcountBlock(_) => "refcount block",
            Meta::L2(_) => "L2 table",
        }
    }
}

/// Consecutive host clusters mapped to consecutive guest clusters.
#[derive(Debug, Clone, Copy)]
struct DataRun {
    len: u64,
    guest: u64,
    subclusters: u32,
}

#[derive(Debug)]
struct Assembly {
    start: u64,
    end: u64,
    buf: Vec<u8>,
    guest: u64,
}

/// Converts a qcow2 stream fed cluster by cluster. See the module documentation.
#[derive(Debug)]
pub struct StreamConverter<S> {
    header: Header,
    cs: u64,
    image_len: Option<u64>,
    next_cluster: u64,
    fed_end: u64,
    meta: BTreeMap<u64, Meta>,
    l1: Vec<u8>,
    l1_clusters_left: u64,
    data: BTreeMap<u64, DataRun>,
    shared: BTreeMap<u64, Vec<(u64, u32)>>,
    compressed: BTreeMap<u64, Vec<(u64, u64)>>,
    compressed_pending: usize,
    assembling: Vec<Assembly>,
    /// Stashed clusters with known refcounts: references not yet consumed.
    remaining: HashMap<u64, u64>,
    /// Refcount blocks by their index in the refcount table, kept to answer [`Self::refcount`].
    refblocks: BTreeMap<u64, Bytes>,
    stash: S,
    budget: usize,
    stats: ConverterStats,
}

impl<S: Stash> StreamConverter<S> {
    /// `budget` bounds the memory held for mappings and partly assembled compressed clusters
    /// (the stash accounts for its own). `image_len` is the stream length, when known.
    pub fn new(header: Header, image_len: Option<u64>, stash: S, budget: usize) -> Self {
        let cs = header.cluster_size();
        let mut meta = BTreeMap::new();
        meta.insert(0, Meta::Header);
        let l1_bytes = header.l1_entries_needed() * 8;
        let l1_clusters = header.l1_table_bytes().div_ceil(cs);
        let l1_first = header.l1_table_offset / cs;
        let l1_needed_clusters = l1_bytes.div_ceil(cs);
        for c in 0..l1_clusters {
            meta.insert(l1_first + c, Meta::L1);
        }
        let rt_first = header.refcount_table_offset / cs;
        for c in 0..header.refcount_table_clusters {
            meta.insert(rt_first + c, Meta::RefcountTable(c));
        }
        StreamConverter {
            cs,
            image_len,
            next_cluster: 0,
            fed_end: 0,
            meta,
            l1: vec![0; l1_bytes as usize],
            l1_clusters_left: l1_needed_clusters,
            data: BTreeMap::new(),
            shared: BTreeMap::new(),
            compressed: BTreeMap::new(),
            compressed_pending: 0,
            assembling: Vec::new(),
            remaining: HashMap::new(),
            refblocks: BTreeMap::new(),
            stash,
            budget,
            stats: ConverterStats::default(),
            header,
        }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn stash(&self) -> &S {
        &self.stash
    }

    /// Host offset of the next byte expected.
    pub fn position(&self) -> u64 {
        self.next_cluster * self.cs
    }

    /// Feeds the next host cluster. `bytes` is one cluster long, or shorter for the last one.
    pub fn feed_cluster<K: ConvertSink>(
        &mut self,
        bytes: Bytes,
        sink: &mut K,
    ) -> Result<(), StreamError<K::Error>> {
        let h = self.next_cluster;
        self.next_cluster += 1;
        let lo = h * self.cs;
        let hi = lo + bytes.len() as u64;
        self.fed_end = hi;
        let covered = self.feed_compressed(&bytes, lo, hi, sink)?;

        if let Some(&kind) = self.meta.get(&h) {
            self.on_metadata(kind, h, &bytes, sink)?;
        } else if let Some(guests) = self.take_data(h) {
            for (guest, subclusters) in guests {
                self.emit_data(guest, subclusters, &bytes, sink)?;
            }
        } else {
            // Unknown bytes: keep them unless the refcount says every reference to this
            // cluster is already accounted for (free clusters have none).
            let known = covered.len() as u64;
            match self.refcount(h) {
                Some(refs) if refs <= known => {}
                refs => {
                    self.stash
                        .put(h * self.cs, &bytes)
                        .map_err(StreamError::Stash)?;
                    self.stats.stashed_clusters += 1;
                    if let Some(refs) = refs {
                        self.remaining.insert(h, refs - known);
                    }
                }
            }
        }
        self.check_budget()
    }

    /// Ends the stream: completes compressed clusters cut by EOF, then checks that everything
    /// the image refers to was seen.
    pub fn finish<K: ConvertSink>(
        mut self,
        sink: &mut K,
    ) -> Result<(ConverterStats, S), StreamError<K::Error>> {
        let len = self.fed_end;
        let eof = len;
        for a in std::mem::take(&mut self.assembling) {
            // The descriptor's sector count may run past the end of the file.
            if a.start + a.buf.len() as u64 >= eof.min(a.end) {
                self.emit_compressed(a.guest, Bytes::from(a.buf), sink)?;
            } else {
                return Err(Qcow2Error::Truncated { needed: a.end, len }.into());
            }
        }
        if self.l1_clusters_left > 0 {
            return Err(Qcow2Error::Truncated {
                needed: self.header.l1_table_offset,
                len,
            }
            .into());
        }
        for (&c, &kind) in self.meta.range(self.next_cluster..) {
            if !matches!(kind, Meta::RefcountBlock(_)) {
                return Err(Qcow2Error::Truncated {
                    needed: c * self.cs,
                    len,
                }
                .into());
            }
        }
        if let Some((&c, _)) = self.data.first_key_value() {
            return Err(Qcow2Error::Truncated {
                needed: c * self.cs,
                len,
            }
            .into());
        }
        if let Some((&start, _)) = self.compressed.first_key_value() {
            return Err(Qcow2Error::Truncated { needed: start, len }.into());
        }
        Ok((self.stats, self.stash))
    }

    fn metadata_bytes(&self) -> usize {
        self.meta.len() * 40
            + self.data.len() * 48
            + self.shared.len() * 64
            + self.compressed_pending * 56
            + self
                .assembling
                .iter()
                .map(|a| a.buf.capacity() + 64)
                .sum::<usize>()
            + self.remaining.len() * 32
            + self.refblocks.len() * (self.cs as usize + 64)
            + self.l1.len()
    }

    fn check_budget<E>(&mut self) -> Result<(), StreamError<E>> {
        let used = self.metadata_bytes();
        self.stats.peak_metadata_bytes = self.stats.peak_metadata_bytes.max(used);
        if used > self.budget {
            return Err(Qcow2Error::MetadataBudget {
                budget: self.budget,
            }
            .into());
        }
        Ok(())
    }

    /// Gives the bytes of `[lo, hi)` to compressed clusters being assembled or starting here.
    /// Returns the ranges of this cluster they cover.
    fn feed_compressed<K: ConvertSink>(
        &mut self,
        bytes: &Bytes,
        lo: u64,
        hi: u64,
        sink: &mut K,
    ) -> Result<Vec<(u64, u64)>, StreamError<K::Error>> {
        let mut covered = Vec::new();
        if !self.assembling.is_empty() {
            let mut done = Vec::new();
            for (i, a) in self.assembling.iter_mut().enumerate() {
                let from = (a.start + a.buf.len() as u64).max(lo);
                let to = a.end.min(hi);
                if from < to {
                    a.buf
                        .extend_from_slice(&bytes[(from - lo) as usize..(to - lo) as usize]);
                    covered.push((from, to));
                }
                if a.end <= hi {
                    done.push(i);
                }
            }
            for i in done.into_iter().rev() {
                let a = self.assembling.swap_remove(i);
                self.emit_compressed(a.guest, Bytes::from(a.buf), sink)?;
            }
        }
        let starting: Vec<u64> = self.compressed.range(lo..hi).map(|(&s, _)| s).collect();
        for start in starting {
            let entries = self.compressed.remove(&start).unwrap_or_default();
            self.compressed_pending -= entries.len();
            for (end, guest) in entries {
                let to = end.min(hi);
                covered.push((start, to));
                let part = bytes.slice((start - lo) as usize..(to - lo) as usize);
                if end <= hi {
                    self.emit_compressed(guest, part, sink)?;
                } else {
                    let mut buf = Vec::with_capacity((end - start) as usize);
                    buf.extend_from_slice(&part);
                    self.assembling.push(Assembly {
                        start,
                        end,
                        buf,
                        guest,
                    });
                }
            }
        }
        Ok(covered)
    }

    fn on_metadata<K: ConvertSink>(
        &mut self,
        kind: Meta,
        h: u64,
        bytes: &[u8],
        sink: &mut K,
    ) -> Result<(), StreamError<K::Error>> {
        match kind {
            Meta::Header => Ok(()),
            Meta::RefcountBlock(index) => {
                self.keep_refblock(index, bytes);
                Ok(())
            }
            Meta::L1 => {
                let first = self.header.l1_table_offset / self.cs;
                let at = ((h - first) * self.cs) as usize;
                if at < self.l1.len() {
                    let n = bytes.len().min(self.l1.len() - at);
                    self.l1[at..at + n].copy_from_slice(&bytes[..n]);
                    self.l1_clusters_left -= 1;
                    if self.l1_clusters_left == 0 {
                        self.on_l1(sink)?;
                    }
                }
                Ok(())
            }
            Meta::RefcountTable(index) => self.on_refcount_table(index, bytes),
            Meta::L2(l1_index) => self.on_l2(l1_index, bytes, sink),
        }
    }

    fn on_l1<K: ConvertSink>(&mut self, sink: &mut K) -> Result<(), StreamError<K::Error>> {
        let l1 = std::mem::take(&mut self.l1);
        for (index, raw) in l1.chunks_exact(8).enumerate() {
            let index = index as u64;
            let raw = u64::from_be_bytes(raw.try_into().expect("8 bytes"));
            let L1Entry::Table(offset) = L1Entry::decode(raw, index, &self.header)? else {
                continue;
            };
            self.check_in_image("L2 table", offset, self.cs)?;
            let c = offset / self.cs;
            self.claim(c, "L2 table")?;
            self.meta.insert(c, Meta::L2(index));
            if c < self.next_cluster {
                let table = self.take_stashed(c, "L2 table")?;
                self.on_l2(index, &table.slice(0..self.cs as usize), sink)?;
            }
        }
        Ok(())
    }

    fn on_refcount_table<E>(&mut self, index: u64, bytes: &[u8]) -> Result<(), StreamError<E>> {
        let per_cluster = self.cs / 8;
        for (i, raw) in bytes.chunks_exact(8).enumerate() {
            let raw = u64::from_be_bytes(raw.try_into().expect("8 bytes"));
            if raw == 0 {
                continue;
            }
            if !raw.is_multiple_of(self.cs) || raw >= MAX_HOST_OFFSET {
                return Err(Qcow2Error::Misaligned {
                    what: "refcount block",
                    offset: raw,
                    cluster_size: self.cs,
                }
                .into());
            }
            let block = index * per_cluster + i as u64;
            let c = raw / self.cs;
            self.claim(c, "refcount block")?;
            if c < self.next_cluster {
                // Seen already and stashed as unknown: keep its counts, drop its bytes.
                if let Some(Stashed::Bytes(b)) = self
                    .stash
                    .get(c * self.cs, self.cs as usize)
                    .map_err(StreamError::Stash)?
                {
                    self.keep_refblock(block, &b);
                } else {
                    self.keep_refblock(block, &vec![0u8; self.cs as usize]);
                }
                self.stash.release(c * self.cs);
                self.remaining.remove(&c);
            } else {
                self.meta.insert(c, Meta::RefcountBlock(block));
            }
        }
        Ok(())
    }

    fn keep_refblock(&mut self, block: u64, bytes: &[u8]) {
        // With lazy refcounts left dirty the counts may be stale: never rely on them.
        if !self.header.dirty() {
            self.refblocks.insert(block, Bytes::copy_from_slice(bytes));
        }
    }

    /// The refcount of host cluster `c`, when its refcount block has been seen.
    fn refcount(&self, c: u64) -> Option<u64> {
        let width = 1u64 << self.header.refcount_order;
        let per_block = self.cs * 8 / width;
        let block = self.refblocks.get(&(c / per_block))?;
        let i = c % per_block;
        Some(if width >= 8 {
            let bytes = (width / 8) as usize;
            let at = i as usize * bytes;
            block
                .get(at..at + bytes)?
                .iter()
                .fold(0u64, |acc, &b| acc << 8 | u64::from(b))
        } else {
            let per_byte = 8 / width;
            let byte = *block.get((i / per_byte) as usize)?;
            (u64::from(byte) >> ((i % per_byte) * width)) & ((1 << width) - 1)
        })
    }

    fn on_l2<K: ConvertSink>(
        &mut self,
        l1_index: u64,
        table: &[u8],
        sink: &mut K,
    ) -> Result<(), StreamError<K::Error>> {
        let entry_bytes = self.header.l2_entry_bytes() as usize;
        let base = l1_index * self.header.l2_coverage();
        for (j, raw) in table.chunks_exact(entry_bytes).enumerate() {
            let guest = base + j as u64 * self.cs;
            if guest >= self.header.virtual_size {
                break;
            }
            let word = u64::from_be_bytes(raw[0..8].try_into().expect("8 bytes"));
            let bitmap = (entry_bytes == 16)
                .then(|| u64::from_be_bytes(raw[8..16].try_into().expect("8 bytes")));
            match L2Entry::decode(word, bitmap, guest, &self.header)? {
                L2Entry::Zero => {}
                L2Entry::Data {
                    host_offset,
                    subclusters,
                } => {
                    self.check_in_image("data cluster", host_offset, 1)?;
                    let c = host_offset / self.cs;
                    self.claim(c, "data cluster")?;
                    if c < self.next_cluster {
                        let cluster = self.take_stashed(c, "data cluster")?;
                        self.stats.from_stash += 1;
                        if let Stashed::Bytes(bytes) = cluster {
                            self.emit_data(guest, subclusters, &bytes, sink)?;
                        } else {
                            self.stats.data_clusters += 1;
                        }
                    } else {
                        self.map_data(c, guest, subclusters);
                    }
                }
                L2Entry::Compressed {
                    host_offset,
                    host_end,
                } => {
                    self.check_in_image("compressed cluster", host_offset, 1)?;
                    let host_end = self.image_len.map_or(host_end, |len| host_end.min(len));
                    self.claim(host_offset / self.cs, "compressed cluster")?;
                    self.map_compressed(host_offset, host_end, guest, sink)?;
                }
            }
        }
        Ok(())
    }

    fn map_data(&mut self, c: u64, guest: u64, subclusters: u32) {
        if let Some((&start, run)) = self.data.range(..=c).next_back()
            && c < start + run.len
        {
            self.shared.entry(c).or_default().push((guest, subclusters));
            return;
        }
        let before = self.run_start_ending_at(c);
        if let Some(run) = self.data.get_mut(&before)
            && run.subclusters == u32::MAX
            && subclusters == u32::MAX
            && run.guest + run.len * self.cs == guest
        {
            run.len += 1;
            return;
        }
        self.data.insert(
            c,
            DataRun {
                len: 1,
                guest,
                subclusters,
            },
        );
    }

    fn run_start_ending_at(&self, c: u64) -> u64 {
        match self.data.range(..c).next_back() {
            Some((&start, run)) if start + run.len == c => start,
            _ => u64::MAX,
        }
    }

    fn take_data(&mut self, h: u64) -> Option<Vec<(u64, u32)>> {
        let mut guests = Vec::new();
        if let Some(entry) = self.data.first_entry()
            && *entry.key() == h
        {
            let run = entry.remove();
            guests.push((run.guest, run.subclusters));
            if run.len > 1 {
                let rest = DataRun {
                    len: run.len - 1,
                    guest: run.guest + self.cs,
                    ..run
                };
                self.data.insert(h + 1, rest);
            }
        }
        if let Some(more) = self.shared.remove(&h) {
            guests.extend(more);
        }
        (!guests.is_empty()).then_some(guests)
    }

    fn map_compressed<K: ConvertSink>(
        &mut self,
        start: u64,
        end: u64,
        guest: u64,
        sink: &mut K,
    ) -> Result<(), StreamError<K::Error>> {
        let pos = self.fed_end;
        if start >= pos {
            self.compressed.entry(start).or_default().push((end, guest));
            self.compressed_pending += 1;
            return Ok(());
        }
        // Some or all of its bytes went by already: gather them from the stash.
        let seen_end = end.min(pos);
        let mut buf = Vec::with_capacity((end - start) as usize);
        let mut at = start;
        while at < seen_end {
            let c = at / self.cs;
            let c_end = ((c + 1) * self.cs).min(seen_end);
            let Some(cluster) = self
                .stash
                .get(c * self.cs, self.cs as usize)
                .map_err(StreamError::Stash)?
            else {
                return Err(Qcow2Error::ClusterReleased {
                    offset: c * self.cs,
                }
                .into());
            };
            let lo = (at - c * self.cs) as usize;
            let hi = (c_end - c * self.cs) as usize;
            buf.extend_from_slice(&cluster.slice(lo..hi));
            self.consume_reference(c);
            at = c_end;
        }
        self.stats.from_stash += 1;
        if end <= pos {
            self.emit_compressed(guest, Bytes::from(buf), sink)
        } else {
            self.assembling.push(Assembly {
                start,
                end,
                buf,
                guest,
            });
            Ok(())
        }
    }

    /// One reference to stashed cluster `c` was used; frees it once its refcount says no other
    /// reference remains. Clusters with unknown refcounts stay until the end.
    fn consume_reference(&mut self, c: u64) {
        if let Some(left) = self.remaining.get_mut(&c) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.remaining.remove(&c);
                self.stash.release(c * self.cs);
            }
        }
    }

    fn take_stashed<E>(&mut self, c: u64, what: &'static str) -> Result<Stashed, StreamError<E>> {
        match self
            .stash
            .get(c * self.cs, self.cs as usize)
            .map_err(StreamError::Stash)?
        {
            Some(cluster) => {
                self.stash.release(c * self.cs);
                self.remaining.remove(&c);
                Ok(cluster)
            }
            None => Err(if what == "data cluster" {
                Qcow2Error::ClusterReleased {
                    offset: c * self.cs,
                }
            } else {
                Qcow2Error::Overlap {
                    what,
                    offset: c * self.cs,
                    other: "data seen earlier",
                }
            }
            .into()),
        }
    }

    /// Refuses a structure that lands on metadata.
    fn claim<E>(&self, c: u64, what: &'static str) -> Result<(), StreamError<E>> {
        if let Some(kind) = self.meta.get(&c) {
            return Err(Qcow2Error::Overlap {
                what,
                offset: c * self.cs,
                other: kind.name(),
            }
            .into());
        }
        if what != "data cluster" && what != "compressed cluster" {
            let in_run = self
                .data
                .range(..=c)
                .next_back()
                .is_some_and(|(&s, r)| c < s + r.len);
            if in_run || self.shared.contains_key(&c) {
                return Err(Qcow2Error::Overlap {
                    what,
                    offset: c * self.cs,
                    other: "data cluster",
                }
                .into());
            }
        }
        Ok(())
    }

    fn check_in_image<E>(
        &self,
        what: &'static str,
        offset: u64,
        len: u64,
    ) -> Result<(), StreamError<E>> {
        if let Some(image_len) = self.image_len
            && offset + len > image_len
        {
            return Err(Qcow2Error::OffsetBeyondEnd {
                what,
                offset,
                len: image_len,
            }
            .into());
        }
        Ok(())
    }

    fn emit_data<K: ConvertSink>(
        &mut self,
        guest: u64,
        subclusters: u32,
        bytes: &Bytes,
        sink: &mut K,
    ) -> Result<(), StreamError<K::Error>> {
        self.stats.data_clusters += 1;
        let vsize = self.header.virtual_size;
        let keep = |from: u64, to: u64| -> Option<(usize, usize)> {
            let to = to.min(vsize - guest).min(bytes.len() as u64);
            (from < to).then_some((from as usize, to as usize))
        };
        if subclusters == u32::MAX {
            if let Some((from, to)) = keep(0, self.cs) {
                sink.data(guest, bytes.slice(from..to))
                    .map_err(StreamError::Sink)?;
            }
            return Ok(());
        }
        let sub = self.cs / u64::from(SUBCLUSTERS);
        let mut i = 0;
        while i < SUBCLUSTERS {
            if subclusters & (1 << i) == 0 {
                i += 1;
                continue;
            }
            let first = i;
            while i < SUBCLUSTERS && subclusters & (1 << i) != 0 {
                i += 1;
            }
            if let Some((from, to)) = keep(u64::from(first) * sub, u64::from(i) * sub) {
                sink.data(guest + from as u64, bytes.slice(from..to))
                    .map_err(StreamError::Sink)?;
            }
        }
        Ok(())
    }

    fn emit_compressed<K: ConvertSink>(
        &mut self,
        guest: u64,
        data: Bytes,
        sink: &mut K,
    ) -> Result<(), StreamError<K::Error>> {
        self.stats.compressed_clusters += 1;
        let cluster = CompressedCluster {
            guest_offset: guest,
            guest_len: (self.header.virtual_size - guest).min(self.cs) as usize,
            cluster_size: self.cs as usize,
            compression: self.header.compression,
            data,
        };
        sink.compressed(cluster).map_err(StreamError::Sink)
    }
}
