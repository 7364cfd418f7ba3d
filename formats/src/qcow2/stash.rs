//! Where the converter keeps clusters it cannot classify yet (data that arrives before the L2
//! table that maps it). The trait lets the caller choose memory, a spill file, or re-reading a
//! random-access source; this crate only ships the in-memory one.

use std::collections::HashMap;
use std::io;

use bytes::Bytes;

use crate::zero::is_zero;

/// A stashed cluster's content.
#[derive(Debug, Clone)]
pub enum Stashed {
    /// The cluster was all zeros; nothing is kept.
    Zero,
    Bytes(Bytes),
}

impl Stashed {
    pub fn slice(&self, range: std::ops::Range<usize>) -> Bytes {
        match self {
            Stashed::Zero => Bytes::from(vec![0u8; range.len()]),
            Stashed::Bytes(b) => b.slice(range.start.min(b.len())..range.end.min(b.len())),
        }
    }
}

/// Storage for clusters seen before anything said what they are.
pub trait ClusterStash {
    /// Keeps `bytes`, the content of host cluster `index`. Implementations must not pin the
    /// caller's larger buffer (copy, or spill).
    fn put(&mut self, index: u64, bytes: &Bytes) -> io::Result<()>;
    /// Returns a stashed cluster, or `None` when it was never stashed or was released.
    fn get(&mut self, index: u64) -> io::Result<Option<Stashed>>;
    /// The cluster will not be asked for again.
    fn release(&mut self, index: u64);
    /// Bytes held in memory now.
    fn memory_bytes(&self) -> usize;
    /// Bytes moved out of memory (to a spill file), for reports.
    fn spilled_bytes(&self) -> u64 {
        0
    }
}

impl<T: ClusterStash + ?Sized> ClusterStash for Box<T> {
    fn put(&mut self, index: u64, bytes: &Bytes) -> io::Result<()> {
        (**self).put(index, bytes)
    }
    fn get(&mut self, index: u64) -> io::Result<Option<Stashed>> {
        (**self).get(index)
    }
    fn release(&mut self, index: u64) {
        (**self).release(index)
    }
    fn memory_bytes(&self) -> usize {
        (**self).memory_bytes()
    }
    fn spilled_bytes(&self) -> u64 {
        (**self).spilled_bytes()
    }
}

/// Keeps stashed clusters in memory; all-zero clusters cost only a map entry.
#[derive(Debug, Default)]
pub struct MemoryStash {
    clusters: HashMap<u64, Stashed>,
    bytes: usize,
}

impl MemoryStash {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.clusters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }
}

impl ClusterStash for MemoryStash {
    fn put(&mut self, index: u64, bytes: &Bytes) -> io::Result<()> {
        let entry = if is_zero(bytes) {
            Stashed::Zero
        } else {
            self.bytes += bytes.len();
            Stashed::Bytes(Bytes::copy_from_slice(bytes))
        };
        if let Some(Stashed::Bytes(old)) = self.clusters.insert(index, entry) {
            self.bytes -= old.len();
        }
        Ok(())
    }

    fn get(&mut self, index: u64) -> io::Result<Option<Stashed>> {
        Ok(self.clusters.get(&index).cloned())
    }

    fn release(&mut self, index: u64) {
        if let Some(Stashed::Bytes(old)) = self.clusters.remove(&index) {
            self.bytes -= old.len();
        }
    }

    fn memory_bytes(&self) -> usize {
        self.bytes + self.clusters.len() * 48
    }
}
