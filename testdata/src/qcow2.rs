//! A qcow2 writer for tests: every header field, table entry and layout choice is explicit, so a
//! test can build exactly the image it needs (including malformed ones) and knows the raw bytes
//! it must convert to.

use std::collections::BTreeMap;

use flate2::{Compress, Compression, FlushCompress};

const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;

/// What one guest cluster holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cluster {
    /// A normal data cluster; shorter content is zero-padded.
    Data(Vec<u8>),
    /// Stored compressed (deflate or zstd, per the builder); this is the plain content.
    Compressed(Vec<u8>),
    /// Stored as a compressed cluster with exactly these bytes (for malformed-image tests).
    CompressedRaw(Vec<u8>),
    /// The v3 zero flag with no host cluster.
    ZeroFlag,
    /// The zero flag on an allocated host cluster filled with these (ignored) bytes.
    ZeroAllocated(Vec<u8>),
    /// Extended L2 only: per-subcluster allocated and zero bits over a host cluster.
    Subclusters {
        alloc: u32,
        zero: u32,
        data: Vec<u8>,
    },
}

/// Where metadata goes relative to the data it maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// As qemu writes: each L2 table just before the data it maps.
    MetadataFirst,
    /// All data first, then every L2 table (L1 stays near the header).
    L2AfterData,
    /// Data, then L2 tables, then the L1 table at the very end.
    L1Last,
}

/// Builds a qcow2 image. Fields are public so a test states what it sets.
#[derive(Debug, Clone)]
pub struct Qcow2Builder {
    pub version: u32,
    pub cluster_bits: u32,
    pub virtual_size: u64,
    pub extended_l2: bool,
    pub zstd: bool,
    pub layout: Layout,
    pub clusters: BTreeMap<u64, Cluster>,
    // Header fields and defects, written as given.
    pub backing_file: Option<String>,
    pub crypt_method: u32,
    pub dirty: bool,
    pub lazy_refcounts: bool,
    pub corrupt: bool,
    pub external_data_file: bool,
    pub extra_incompatible: u64,
    pub header_cluster_bits: Option<u32>,
    pub l1_entries: Option<u32>,
    pub l1_offset: Option<u64>,
    pub refcount_table_offset: Option<u64>,
    pub refcount_table_clusters: Option<u32>,
    /// Replaces the L1 entry at this index with the given raw value.
    pub l1_entry_override: Option<(usize, u64)>,
    /// Replaces the first L2 entry word of guest cluster `.0` with `.1`.
    pub l2_entry_override: Option<(u64, u64)>,
}

impl Qcow2Builder {
    pub fn new(cluster_bits: u32, virtual_size: u64) -> Self {
        Qcow2Builder {
            version: 3,
            cluster_bits,
            virtual_size,
            extended_l2: false,
            zstd: false,
            layout: Layout::MetadataFirst,
            clusters: BTreeMap::new(),
            backing_file: None,
            crypt_method: 0,
            dirty: false,
            lazy_refcounts: false,
            corrupt: false,
            external_data_file: false,
            extra_incompatible: 0,
            header_cluster_bits: None,
            l1_entries: None,
            l1_offset: None,
            refcount_table_offset: None,
            refcount_table_clusters: None,
            l1_entry_override: None,
            l2_entry_override: None,
        }
    }

    /// A 64 KiB-cluster image of `virtual_size` whose clusters are, at random (from `seed`),
    /// compressed text, plain random data, or not allocated: the mix most tests want.
    pub fn mixed(seed: u64, virtual_size: u64) -> Self {
        let mut rng = crate::raw::Rng::new(seed);
        let mut b = Qcow2Builder::new(16, virtual_size);
        for g in 0..virtual_size.div_ceil(65536) {
            match rng.below(3) {
                0 => {
                    b.clusters
                        .insert(g, Cluster::Compressed(crate::raw::text(&mut rng, 65536)));
                }
                1 => {
                    let mut d = vec![0u8; 65536];
                    rng.fill(&mut d);
                    b.clusters.insert(g, Cluster::Data(d));
                }
                _ => {}
            }
        }
        b
    }

    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    pub fn with(mut self, guest_cluster: u64, c: Cluster) -> Self {
        self.clusters.insert(guest_cluster, c);
        self
    }

    /// The raw disk this image must convert to.
    pub fn expected_raw(&self) -> Vec<u8> {
        let cs = self.cluster_size() as usize;
        let mut raw = vec![0u8; self.virtual_size as usize];
        for (&g, c) in &self.clusters {
            let at = g as usize * cs;
            let mut cluster = vec![0u8; cs];
            match c {
                Cluster::Data(d) | Cluster::Compressed(d) => {
                    cluster[..d.len().min(cs)].copy_from_slice(&d[..d.len().min(cs)])
                }
                Cluster::ZeroFlag | Cluster::ZeroAllocated(_) | Cluster::CompressedRaw(_) => {}
                Cluster::Subclusters { alloc, data, .. } => {
                    let sub = cs / 32;
                    for i in 0..32 {
                        if alloc & (1 << i) != 0 {
                            let r = i * sub..(i + 1) * sub;
                            let end = r.end.min(data.len());
                            if r.start < end {
                                cluster[r.start..end].copy_from_slice(&data[r.start..end]);
                            }
                        }
                    }
                }
            }
            let end = (at + cs).min(raw.len());
            if at < end {
                raw[at..end].copy_from_slice(&cluster[..end - at]);
            }
        }
        raw
    }

    fn l2_entries(&self) -> u64 {
        self.cluster_size() / if self.extended_l2 { 16 } else { 8 }
    }

    fn compress(&self, plain: &[u8]) -> Vec<u8> {
        let mut cluster = plain.to_vec();
        cluster.resize(self.cluster_size() as usize, 0);
        if self.zstd {
            return zstd::bulk::compress(&cluster, 3).expect("zstd compress");
        }
        // qemu decodes deflate with a 4 KiB window, so encode with one.
        let mut c = Compress::new_with_window_bits(Compression::default(), false, 12);
        let mut out = Vec::with_capacity(cluster.len() + 1024);
        c.compress_vec(&cluster, &mut out, FlushCompress::Finish)
            .expect("deflate");
        out
    }

    /// Writes the image.
    pub fn build(&self) -> Vec<u8> {
        let cs = self.cluster_size();
        let l2_entries = self.l2_entries();
        let l1_needed = self.virtual_size.div_ceil(l2_entries * cs).max(1);
        let l1_entries = u64::from(self.l1_entries.unwrap_or(l1_needed as u32));
        let l1_clusters = (l1_entries * 8).div_ceil(cs).max(1);

        // Items in host order, then offsets. Compressed clusters are packed byte by byte.
        #[derive(Debug)]
        enum Item {
            L1,
            L2(u64),
            Data(u64),
            Compressed(Vec<(u64, Vec<u8>)>),
        }
        let mut by_table: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for &g in self.clusters.keys() {
            by_table.entry(g / l2_entries).or_default().push(g);
        }
        let data_items = |guests: &[u64]| -> Vec<Item> {
            let mut items = Vec::new();
            let mut run: Vec<(u64, Vec<u8>)> = Vec::new();
            for &g in guests {
                match &self.clusters[&g] {
                    Cluster::Compressed(plain) => run.push((g, self.compress(plain))),
                    Cluster::CompressedRaw(bytes) => run.push((g, bytes.clone())),
                    Cluster::ZeroFlag => {}
                    _ => {
                        if !run.is_empty() {
                            items.push(Item::Compressed(std::mem::take(&mut run)));
                        }
                        items.push(Item::Data(g));
                    }
                }
            }
            if !run.is_empty() {
                items.push(Item::Compressed(run));
            }
            items
        };
        let mut items = Vec::new();
        let l1_last = self.layout == Layout::L1Last;
        match self.layout {
            Layout::MetadataFirst => {
                for (&t, guests) in &by_table {
                    items.push(Item::L2(t));
                    items.extend(data_items(guests));
                }
            }
            Layout::L2AfterData | Layout::L1Last => {
                for guests in by_table.values() {
                    items.extend(data_items(guests));
                }
                items.extend(by_table.keys().map(|&t| Item::L2(t)));
                if l1_last {
                    items.push(Item::L1);
                }
            }
        }

        // Size the refcount structures for the whole file (iterate until stable).
        let item_clusters = |items: &[Item]| -> u64 {
            items
                .iter()
                .map(|i| match i {
                    Item::L1 => l1_clusters,
                    Item::Compressed(run) => run
                        .iter()
                        .map(|(_, d)| d.len() as u64)
                        .sum::<u64>()
                        .div_ceil(cs),
                    _ => 1,
                })
                .sum()
        };
        let per_block = cs / 2; // 16-bit refcounts
        let mut rt_clusters = 1u64;
        let mut blocks = 1u64;
        loop {
            let total = 1
                + rt_clusters
                + blocks
                + if l1_last { 0 } else { l1_clusters }
                + item_clusters(&items);
            let need_blocks = total.div_ceil(per_block);
            let need_rt = (need_blocks * 8).div_ceil(cs);
            if need_blocks <= blocks && need_rt <= rt_clusters {
                break;
            }
            blocks = need_blocks.max(blocks);
            rt_clusters = need_rt.max(rt_clusters);
        }
        let rt_offset = cs;
        let blocks_offset = rt_offset + rt_clusters * cs;
        let mut cursor = blocks_offset + blocks * cs;
        let mut l1_offset = cursor;
        if !l1_last {
            cursor += l1_clusters * cs;
        }

        let mut refcounts: BTreeMap<u64, u16> = BTreeMap::new();
        let take = |refcounts: &mut BTreeMap<u64, u16>, from: u64, to: u64| {
            for c in from / cs..to.div_ceil(cs) {
                *refcounts.entry(c).or_default() += 1;
            }
        };
        take(&mut refcounts, 0, cursor);
        let mut l2_offsets: BTreeMap<u64, u64> = BTreeMap::new();
        let mut data_offsets: BTreeMap<u64, u64> = BTreeMap::new();
        let mut compressed_at: BTreeMap<u64, (u64, Vec<u8>)> = BTreeMap::new();
        for item in &items {
            match item {
                Item::L1 => {
                    l1_offset = cursor;
                    take(&mut refcounts, cursor, cursor + l1_clusters * cs);
                    cursor += l1_clusters * cs;
                }
                Item::L2(t) => {
                    l2_offsets.insert(*t, cursor);
                    take(&mut refcounts, cursor, cursor + cs);
                    cursor += cs;
                }
                Item::Data(g) => {
                    data_offsets.insert(*g, cursor);
                    take(&mut refcounts, cursor, cursor + cs);
                    cursor += cs;
                }
                Item::Compressed(run) => {
                    let mut at = cursor;
                    for (g, bytes) in run {
                        take(&mut refcounts, at, at + bytes.len() as u64);
                        compressed_at.insert(*g, (at, bytes.clone()));
                        at += bytes.len() as u64;
                    }
                    cursor = at.div_ceil(cs) * cs;
                }
            }
        }
        let file_len = cursor;
        let mut img = vec![0u8; file_len as usize];
        let put64 = |img: &mut Vec<u8>, at: u64, v: u64| {
            img[at as usize..at as usize + 8].copy_from_slice(&v.to_be_bytes())
        };
        let put32 = |img: &mut Vec<u8>, at: u64, v: u32| {
            img[at as usize..at as usize + 4].copy_from_slice(&v.to_be_bytes())
        };

        // Header, field by field.
        img[0..4].copy_from_slice(b"QFI\xfb");
        put32(&mut img, 4, self.version); // version
        put32(
            &mut img,
            20,
            self.header_cluster_bits.unwrap_or(self.cluster_bits),
        ); // cluster_bits
        put64(&mut img, 24, self.virtual_size); // size
        put32(&mut img, 32, self.crypt_method); // crypt_method
        put32(&mut img, 36, l1_entries as u32); // l1_size
        put64(&mut img, 40, self.l1_offset.unwrap_or(l1_offset)); // l1_table_offset
        put64(
            &mut img,
            48,
            self.refcount_table_offset.unwrap_or(rt_offset),
        ); // refcount_table_offset
        put32(
            &mut img,
            56,
            self.refcount_table_clusters.unwrap_or(rt_clusters as u32),
        ); // refcount_table_clusters
        // nb_snapshots (60) and snapshots_offset (64) stay 0.
        let mut ext_at = 72u64;
        if self.version >= 3 {
            let incompat = u64::from(self.dirty)
                | u64::from(self.corrupt) << 1
                | u64::from(self.external_data_file) << 2
                | u64::from(self.zstd) << 3
                | u64::from(self.extended_l2) << 4
                | self.extra_incompatible;
            put64(&mut img, 72, incompat); // incompatible_features
            put64(&mut img, 80, u64::from(self.lazy_refcounts)); // compatible_features
            put32(&mut img, 96, 4); // refcount_order: 16-bit refcounts
            put32(&mut img, 100, 112); // header_length
            img[104] = u8::from(self.zstd); // compression_type, then 7 bytes of padding
            ext_at = 112;
        }
        // End-of-extensions marker is 8 zero bytes at ext_at; the backing file name follows.
        if let Some(name) = &self.backing_file {
            let at = ext_at + 8;
            img[at as usize..at as usize + name.len()].copy_from_slice(name.as_bytes());
            put64(&mut img, 8, at); // backing_file_offset
            put32(&mut img, 16, name.len() as u32); // backing_file_size
        }

        // Refcount table and blocks.
        for b in 0..blocks {
            put64(&mut img, rt_offset + b * 8, blocks_offset + b * cs);
        }
        for (&c, &n) in &refcounts {
            let at = blocks_offset + (c / per_block) * cs + (c % per_block) * 2;
            img[at as usize..at as usize + 2].copy_from_slice(&n.to_be_bytes());
        }

        // L1 and L2 tables, then data.
        for (&t, &off) in &l2_offsets {
            put64(&mut img, l1_offset + t * 8, off | COPIED);
        }
        if let Some((i, raw)) = self.l1_entry_override {
            put64(&mut img, l1_offset + i as u64 * 8, raw);
        }
        let x = 62 - (self.cluster_bits - 8);
        for (&g, c) in &self.clusters {
            let t = g / l2_entries;
            let slot = l2_offsets[&t] + (g % l2_entries) * if self.extended_l2 { 16 } else { 8 };
            let (word, bitmap) = match c {
                Cluster::Data(d) => {
                    let off = data_offsets[&g];
                    img[off as usize..off as usize + d.len()].copy_from_slice(d);
                    (off | COPIED, u64::from(u32::MAX))
                }
                Cluster::ZeroAllocated(d) => {
                    let off = data_offsets[&g];
                    img[off as usize..off as usize + d.len()].copy_from_slice(d);
                    (off | COPIED | u64::from(!self.extended_l2), u64::MAX << 32)
                }
                Cluster::ZeroFlag => (u64::from(!self.extended_l2), u64::MAX << 32),
                Cluster::Subclusters { alloc, zero, data } => {
                    let off = data_offsets[&g];
                    img[off as usize..off as usize + data.len()].copy_from_slice(data);
                    (off | COPIED, u64::from(*alloc) | u64::from(*zero) << 32)
                }
                Cluster::Compressed(_) | Cluster::CompressedRaw(_) => {
                    let (at, bytes) = &compressed_at[&g];
                    img[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
                    let sectors = (at + bytes.len() as u64 - 1) / 512 - at / 512;
                    (COMPRESSED | sectors << x | at, 0)
                }
            };
            let word = match self.l2_entry_override {
                Some((og, raw)) if og == g => raw,
                _ => word,
            };
            put64(&mut img, slot, word);
            if self.extended_l2 {
                put64(&mut img, slot + 8, bitmap);
            }
        }
        img
    }
}
