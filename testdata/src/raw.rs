//! Deterministic raw disk contents: extents of text-like, random and zero data with holes.

/// A small deterministic PRNG (SplitMix64), so fixtures need no dependency and never change.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// What one extent of a generated disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    Hole,
    Random,
    Text,
    Zeros,
}

/// Fills `len` bytes of text-like (compressible) data.
pub fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 12] = [
        b"disk ",
        b"image ",
        b"import ",
        b"volume ",
        b"the ",
        b"of ",
        b"kubevirt ",
        b"data\n",
        b"cluster ",
        b"zero ",
        b"qcow2 ",
        b"stream ",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    out.truncate(len);
    out
}

/// A raw disk of `size` bytes made of extents (in `granule` units) of every kind.
pub fn sparse_disk(seed: u64, size: usize, granule: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut disk = vec![0u8; size];
    let mut at = 0;
    while at < size {
        let len = (granule * (1 + rng.below(8) as usize)).min(size - at);
        match rng.below(4) {
            0 => rng.fill(&mut disk[at..at + len]),
            1 => disk[at..at + len].copy_from_slice(&text(&mut rng, len)),
            _ => {}
        }
        at += len;
    }
    if size > 0 {
        disk[0] = 0xeb; // something at LBA 0, like a boot sector
    }
    disk
}
