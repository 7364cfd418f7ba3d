//! Stashes for image bytes that arrive before the table that maps them (any format's decoder
//! asks for one; keys are host byte offsets).
//!
//! - [`SourceStash`]: the source is a local file, so nothing is kept; the bytes are read again
//!   with `pread` when they are needed. Memory cost: none.
//! - [`SpillStash`]: pieces are kept in memory up to a budget, then appended to an unlinked
//!   temporary file in the target's directory (or a scratch directory); released pieces are
//!   punched out of it so it does not grow without bound.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use cdi_formats::decoder::{Stash, Stashed};
use cdi_formats::zero::is_zero;

use crate::source::ReadAt;

/// Re-reads bytes from a random-access source; `base` is where the decoded stream starts in it
/// (an OVA's disk entry starts after the entries before it).
pub(crate) struct SourceStash {
    source: Arc<dyn ReadAt>,
    base: u64,
}

impl std::fmt::Debug for SourceStash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceStash")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl SourceStash {
    pub fn new(source: Arc<dyn ReadAt>, base: u64) -> Self {
        SourceStash { source, base }
    }
}

impl Stash for SourceStash {
    fn put(&mut self, _offset: u64, _bytes: &Bytes) -> io::Result<()> {
        Ok(())
    }

    fn get(&mut self, offset: u64, len: usize) -> io::Result<Option<Stashed>> {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        let at = self.base + offset;
        while filled < buf.len() {
            match self
                .source
                .read_at(&mut buf[filled..], at + filled as u64)?
            {
                0 => break,
                n => filled += n,
            }
        }
        buf.truncate(filled);
        Ok(Some(Stashed::Bytes(Bytes::from(buf))))
    }

    fn release(&mut self, _offset: u64) {}

    fn memory_bytes(&self) -> usize {
        0
    }
}

#[derive(Debug)]
enum Slot {
    Memory(Stashed),
    Spilled { at: u64, len: usize },
}

/// Memory up to a budget, then an unlinked spill file.
#[derive(Debug)]
pub(crate) struct SpillStash {
    slots: HashMap<u64, Slot>,
    memory: usize,
    budget: usize,
    dir: PathBuf,
    file: Option<File>,
    file_end: u64,
    spilled: u64,
}

impl SpillStash {
    pub fn new(budget: usize, dir: PathBuf) -> Self {
        SpillStash {
            slots: HashMap::new(),
            memory: 0,
            budget,
            dir,
            file: None,
            file_end: 0,
            spilled: 0,
        }
    }

    fn spill_file(&mut self) -> io::Result<&File> {
        if self.file.is_none() {
            let f = tempfile::tempfile_in(&self.dir).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("creating a spill file in {}: {e}", self.dir.display()),
                )
            })?;
            tracing::info!(dir = %self.dir.display(), "Image bytes arrive before the tables that map them, beyond the memory budget; spilling to a temporary file.");
            self.file = Some(f);
        }
        Ok(self.file.as_ref().expect("just created"))
    }
}

impl Stash for SpillStash {
    fn put(&mut self, offset: u64, bytes: &Bytes) -> io::Result<()> {
        self.release(offset);
        let slot = if is_zero(bytes) {
            Slot::Memory(Stashed::Zero)
        } else if self.memory + bytes.len() <= self.budget {
            self.memory += bytes.len();
            Slot::Memory(Stashed::Bytes(Bytes::copy_from_slice(bytes)))
        } else {
            let at = self.file_end;
            self.spill_file()?.write_all_at(bytes, at)?;
            self.file_end += bytes.len() as u64;
            self.spilled += bytes.len() as u64;
            Slot::Spilled {
                at,
                len: bytes.len(),
            }
        };
        self.slots.insert(offset, slot);
        Ok(())
    }

    fn get(&mut self, offset: u64, want: usize) -> io::Result<Option<Stashed>> {
        match self.slots.get(&offset) {
            None => Ok(None),
            Some(Slot::Memory(Stashed::Bytes(b))) => {
                Ok(Some(Stashed::Bytes(b.slice(..want.min(b.len())))))
            }
            Some(Slot::Memory(Stashed::Zero)) => Ok(Some(Stashed::Zero)),
            Some(&Slot::Spilled { at, len }) => {
                let mut buf = vec![0u8; len.min(want)];
                self.spill_file()?.read_exact_at(&mut buf, at)?;
                Ok(Some(Stashed::Bytes(Bytes::from(buf))))
            }
        }
    }

    fn release(&mut self, offset: u64) {
        match self.slots.remove(&offset) {
            Some(Slot::Memory(Stashed::Bytes(b))) => self.memory -= b.len(),
            Some(Slot::Spilled { at, len }) => {
                if let Some(f) = &self.file {
                    let flags = rustix::fs::FallocateFlags::PUNCH_HOLE
                        | rustix::fs::FallocateFlags::KEEP_SIZE;
                    let _ = rustix::fs::fallocate(f, flags, at, len as u64);
                }
            }
            _ => {}
        }
    }

    fn memory_bytes(&self) -> usize {
        self.memory + self.slots.len() * 48
    }

    fn spilled_bytes(&self) -> u64 {
        self.spilled
    }
}
