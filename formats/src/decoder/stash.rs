//! Where a decoder keeps bytes it cannot place yet (data that arrives before the table that
//! maps it). The trait lets the caller choose memory, a spill file, or re-reading a
//! random-access source; this crate only ships the in-memory one.

use std::collections::HashMap;
use std::io;

use bytes::Bytes;

use crate::zero::is_zero;

/// A stashed piece's content.
#[derive(Debug, Clone)]
pub enum Stashed {
    /// The piece was all zeros; nothing is kept.
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

/// Storage for pieces of the image seen before anything said what they are, keyed by the host
/// offset they were seen at.
pub trait Stash: std::fmt::Debug {
    /// Keeps `bytes`, seen at host offset `offset`. Implementations must not pin the caller's
    /// larger buffer (copy, or spill).
    fn put(&mut self, offset: u64, bytes: &Bytes) -> io::Result<()>;
    /// Returns (at most `len` bytes of) the piece put at `offset`, or `None` when it was never
    /// put or was released. A random-access source reads `len` bytes at `offset` (fewer at its
    /// end).
    fn get(&mut self, offset: u64, len: usize) -> io::Result<Option<Stashed>>;
    /// The piece put at `offset` will not be asked for again.
    fn release(&mut self, offset: u64);
    /// Bytes held in memory now.
    fn memory_bytes(&self) -> usize;
    /// Bytes moved out of memory (to a spill file), for reports.
    fn spilled_bytes(&self) -> u64 {
        0
    }
}

impl<T: Stash + ?Sized> Stash for Box<T> {
    fn put(&mut self, offset: u64, bytes: &Bytes) -> io::Result<()> {
        (**self).put(offset, bytes)
    }
    fn get(&mut self, offset: u64, len: usize) -> io::Result<Option<Stashed>> {
        (**self).get(offset, len)
    }
    fn release(&mut self, offset: u64) {
        (**self).release(offset)
    }
    fn memory_bytes(&self) -> usize {
        (**self).memory_bytes()
    }
    fn spilled_bytes(&self) -> u64 {
        (**self).spilled_bytes()
    }
}

/// Keeps stashed pieces in memory; all-zero pieces cost only a map entry.
#[derive(Debug, Default)]
pub struct MemoryStash {
    pieces: HashMap<u64, Stashed>,
    bytes: usize,
}

impl MemoryStash {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

impl Stash for MemoryStash {
    fn put(&mut self, offset: u64, bytes: &Bytes) -> io::Result<()> {
        let entry = if is_zero(bytes) {
            Stashed::Zero
        } else {
            self.bytes += bytes.len();
            Stashed::Bytes(Bytes::copy_from_slice(bytes))
        };
        if let Some(Stashed::Bytes(old)) = self.pieces.insert(offset, entry) {
            self.bytes -= old.len();
        }
        Ok(())
    }

    fn get(&mut self, offset: u64, len: usize) -> io::Result<Option<Stashed>> {
        Ok(self.pieces.get(&offset).map(|s| match s {
            Stashed::Zero => Stashed::Zero,
            Stashed::Bytes(b) => Stashed::Bytes(b.slice(..len.min(b.len()))),
        }))
    }

    fn release(&mut self, offset: u64) {
        if let Some(Stashed::Bytes(old)) = self.pieces.remove(&offset) {
            self.bytes -= old.len();
        }
    }

    fn memory_bytes(&self) -> usize {
        self.bytes + self.pieces.len() * 48
    }
}
