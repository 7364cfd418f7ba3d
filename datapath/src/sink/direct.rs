//! Synchronous direct I/O on a few writer threads: the way whole aligned pages reach the
//! storage when direct I/O is required (`CACHE_MODE=TRYNONE`, `cdictl --cache direct`) but the
//! kernel offers no io_uring (too old, or forbidden by a seccomp profile). Writes go from the
//! chunk buffers themselves when those are page-aligned, through a bounce buffer otherwise.
//! Each write waits for the storage, so only runs of [`MIN_DIRECT`] or more come here (on the
//! benchmark VM's disk imports took 16-21% longer than through the page cache); the rest goes
//! through the page cache. Also where the target is opened for direct I/O, for both ways.

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Sender, bounded};
use rustix::fs::{AtFlags, FallocateFlags, OFlags, StatxFlags, fallocate, statx};

use crate::buffer::{ALIGN, AlignedBuf};

/// Writes in flight at once: enough to keep a virtio or network disk busy while one request
/// waits for its completion, few enough that the threads cost nothing on 2 cores.
const WRITERS: usize = 4;

/// Runs queued for the writer threads beyond the ones being written (each up to
/// [`super::writer::MAX_RUN`]).
const QUEUE: usize = 8;

/// Smallest aligned run worth a direct write; smaller ones are cheaper through the page cache,
/// whose writeback merges them into large requests.
pub(crate) const MIN_DIRECT: usize = 64 << 10;

/// Unaligned pieces are copied into a bounce buffer of this size, one part at a time.
const BOUNCE: usize = 1 << 20;

/// A run of the image for the writer threads: pieces that follow each other from `offset`.
struct Piece {
    offset: u64,
    parts: Vec<Bytes>,
}

/// Most pieces in one vectored write (the kernel's `IOV_MAX`).
pub(crate) const MAX_PARTS: usize = 1024;

/// The bytes `[from, to)` of a run, as slices of its pieces (no copy).
pub(crate) fn slice_run(run: &[Bytes], from: usize, to: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    for part in run {
        let (start, end) = (at, at + part.len());
        at = end;
        if end <= from || start >= to {
            continue;
        }
        out.push(part.slice(from.max(start) - start..to.min(end) - start));
    }
    out
}

/// What the threads share.
#[derive(Debug, Default)]
struct Shared {
    /// The first write error; later pieces are dropped unwritten.
    failure: Mutex<Option<std::io::Error>>,
    /// The filesystem refused a direct write (alignment it did not announce): the sink goes
    /// back to buffered writes, and the threads write refused pieces through `buffered`.
    refused: AtomicBool,
    /// Pieces and bytes written directly, for the debug log.
    pieces: AtomicU64,
    bytes: AtomicU64,
}

/// Direct writes to one target, spread over [`WRITERS`] threads.
#[derive(Debug)]
pub(crate) struct DirectWriter {
    queue: Option<Sender<Piece>>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Piece({} in {} parts)", self.offset, self.parts.len())
    }
}

/// A run cut for direct writing.
pub(crate) enum Split {
    /// Too few whole aligned pages: all of it goes through the page cache.
    Whole,
    /// The aligned middle (offset, pieces) for a direct write, and the unaligned edges (possibly
    /// empty) for the page cache.
    Parts {
        middle: (u64, Vec<Bytes>),
        edges: Vec<(u64, Vec<Bytes>)>,
    },
}

/// Cuts `run` (at `offset`) into its whole aligned pages, when there are at least `min` bytes
/// of them, and the edges around them.
pub(crate) fn split_run(offset: u64, run: &[Bytes], min: usize) -> Split {
    let len = run.iter().map(Bytes::len).sum::<usize>();
    let (head, middle, _) = split_aligned(offset, len);
    if middle < min.max(1) {
        return Split::Whole;
    }
    let tail = head + middle;
    Split::Parts {
        middle: (offset + head as u64, slice_run(run, head, tail)),
        edges: vec![
            (offset, slice_run(run, 0, head)),
            (offset + tail as u64, slice_run(run, tail, len)),
        ],
    }
}

/// Splits `[offset, offset + len)` into an unaligned head, an [`ALIGN`]ed middle and an
/// unaligned tail, as lengths; the middle is empty when no whole aligned block fits.
pub(crate) fn split_aligned(offset: u64, len: usize) -> (usize, usize, usize) {
    let align = ALIGN as u64;
    let end = offset + len as u64;
    let first = offset.div_ceil(align) * align;
    let last = end / align * align;
    if first >= last {
        return (len, 0, 0);
    }
    let head = (first - offset) as usize;
    let middle = (last - first) as usize;
    (head, middle, len - head - middle)
}

impl DirectWriter {
    /// Opens `path` a second time for direct I/O. `None` when the filesystem or device does not
    /// offer it with alignments [`ALIGN`] satisfies; the caller then writes through the page
    /// cache. `allocate` reserves each piece's blocks before writing it (regular files: ext4
    /// and xfs serialise direct writes into holes, not into allocated blocks).
    pub fn open(path: &Path, buffered: &File, allocate: bool) -> Option<Self> {
        let writer = Self::try_open(path, buffered, allocate);
        if writer.is_none() {
            tracing::info!(
                target = %path.display(),
                "Direct I/O is not available on this target; writing through the page cache."
            );
        }
        writer
    }

    /// `path` opened for direct writes, when the target offers direct I/O with alignments
    /// [`ALIGN`] satisfies.
    pub fn open_direct(path: &Path) -> Option<File> {
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(OFlags::DIRECT.bits() as i32)
            .open(path)
            .ok()?;
        if let Ok(st) = statx(&direct, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN)
            && st.stx_mask & StatxFlags::DIOALIGN.bits() != 0
        {
            let (memory, offset) = (st.stx_dio_mem_align, st.stx_dio_offset_align);
            if offset == 0 || offset as usize > ALIGN || memory as usize > ALIGN {
                tracing::debug!(memory, offset, "Direct I/O not usable on this target.");
                return None;
            }
        }
        Some(direct)
    }

    fn try_open(path: &Path, buffered: &File, allocate: bool) -> Option<Self> {
        let direct = Self::open_direct(path)?;
        let buffered = buffered.try_clone().ok()?;
        let direct = Arc::new(direct);
        let buffered = Arc::new(buffered);
        let shared = Arc::new(Shared::default());
        let (queue, pieces) = bounded::<Piece>(QUEUE);
        let threads = (0..WRITERS)
            .map(|_| {
                let pieces = pieces.clone();
                let (direct, buffered, shared) = (
                    Arc::clone(&direct),
                    Arc::clone(&buffered),
                    Arc::clone(&shared),
                );
                std::thread::spawn(move || {
                    let mut bounce = None;
                    for piece in pieces {
                        if shared.failure.lock().is_ok_and(|f| f.is_some()) {
                            continue;
                        }
                        let result =
                            write_piece(&direct, &buffered, &shared, allocate, &mut bounce, &piece);
                        if let Err(e) = result
                            && let Ok(mut failure) = shared.failure.lock()
                        {
                            failure.get_or_insert(e);
                        }
                    }
                })
            })
            .collect();
        Some(DirectWriter {
            queue: Some(queue),
            threads,
            shared,
        })
    }

    /// False once the target refused a direct write: send everything through the page cache.
    pub fn usable(&self) -> bool {
        !self.shared.refused.load(Ordering::Relaxed)
    }

    /// Queues the run `parts` (aligned in offset and length as a whole) for writing at
    /// `offset`; reports an earlier piece's failure.
    pub fn submit(&mut self, offset: u64, parts: Vec<Bytes>) -> std::io::Result<()> {
        let len = parts.iter().map(Bytes::len).sum::<usize>();
        debug_assert_eq!(split_aligned(offset, len).1, len);
        self.failed()?;
        let queue = self.queue.as_ref().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "direct writes finished")
        })?;
        queue
            .send(Piece { offset, parts })
            .map_err(|_| std::io::Error::other("the direct writer threads stopped"))
    }

    /// Waits for every queued piece; the first failure, if any.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.queue = None;
        if self.threads.is_empty() {
            return self.failed();
        }
        // Every thread is joined, even after one that panicked.
        let mut panicked = false;
        for t in self.threads.drain(..) {
            panicked |= t.join().is_err();
        }
        if panicked {
            // Whatever that thread held was not written: the import must not look complete.
            return Err(std::io::Error::other("a direct writer thread panicked"));
        }
        tracing::debug!(
            pieces = self.shared.pieces.load(Ordering::Relaxed),
            bytes = self.shared.bytes.load(Ordering::Relaxed),
            refused = self.shared.refused.load(Ordering::Relaxed),
            "Direct writes finished."
        );
        self.failed()
    }

    fn failed(&self) -> std::io::Result<()> {
        let mut failure = self
            .shared
            .failure
            .lock()
            .map_err(|_| std::io::Error::other("a direct writer thread panicked"))?;
        match failure.take() {
            Some(e) => {
                // Kept for later calls; the copy keeps the OS error code (ENOSPC matters).
                let again = match e.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(e.kind(), e.to_string()),
                };
                *failure = Some(e);
                Err(again)
            }
            None => Ok(()),
        }
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn write_piece(
    direct: &File,
    buffered: &File,
    shared: &Shared,
    allocate: bool,
    bounce: &mut Option<AlignedBuf>,
    piece: &Piece,
) -> std::io::Result<()> {
    let total = piece.parts.iter().map(Bytes::len).sum::<usize>();
    shared.pieces.fetch_add(1, Ordering::Relaxed);
    shared.bytes.fetch_add(total as u64, Ordering::Relaxed);
    if allocate {
        // Unwritten extents: the write below is then an overwrite, which the filesystem lets
        // run beside the other threads' writes. Only a hint; the write allocates if this fails.
        let _ = fallocate(direct, FallocateFlags::empty(), piece.offset, total as u64);
    }
    let aligned = piece.parts.len() <= MAX_PARTS
        && piece
            .parts
            .iter()
            .all(|p| p.as_ptr().align_offset(ALIGN) == 0 && p.len().is_multiple_of(ALIGN));
    let mut done = 0;
    if aligned && !shared.refused.load(Ordering::Relaxed) {
        let slices: Vec<IoSlice<'_>> = piece.parts.iter().map(|p| IoSlice::new(p)).collect();
        match rustix::io::pwritev(direct, &slices, piece.offset) {
            Ok(n) => done = n,
            Err(rustix::io::Errno::INVAL) => refuse(shared),
            Err(e) => return Err(e.into()),
        }
    }
    if done == total {
        return Ok(());
    }
    // Memory that is not page-aligned, a short write, or a refusal: the rest goes through an
    // aligned bounce buffer, a part at a time.
    let bounce = bounce.get_or_insert_with(|| AlignedBuf::new(BOUNCE));
    bounce.clear();
    let mut at = piece.offset + done as u64;
    for part in slice_run(&piece.parts, done, total) {
        let mut rest = &part[..];
        while !rest.is_empty() {
            let n = bounce.extend_from_slice(rest);
            rest = &rest[n..];
            if bounce.len() == bounce.capacity() {
                write_direct(direct, buffered, shared, bounce.filled(), at)?;
                at += bounce.len() as u64;
                bounce.clear();
            }
        }
    }
    if !bounce.is_empty() {
        write_direct(direct, buffered, shared, bounce.filled(), at)?;
    }
    Ok(())
}

fn refuse(shared: &Shared) {
    if !shared.refused.swap(true, Ordering::Relaxed) {
        tracing::info!("The target refused a direct write; writing through the page cache.");
    }
}

/// One direct write; an `EINVAL` (an alignment the target needs but did not announce) turns
/// direct I/O off for the rest of the import and writes the piece through the page cache.
fn write_direct(
    direct: &File,
    buffered: &File,
    shared: &Shared,
    data: &[u8],
    offset: u64,
) -> std::io::Result<()> {
    if !shared.refused.load(Ordering::Relaxed) {
        match direct.write_all_at(data, offset) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                refuse(shared);
            }
            other => return other,
        }
    }
    buffered.write_all_at(data, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufferPool;
    use crate::sink::test_files::{pattern, scratch_file};

    #[test]
    fn split_finds_the_whole_aligned_blocks() {
        let a = ALIGN as u64;
        assert_eq!(split_aligned(0, ALIGN), (0, ALIGN, 0));
        assert_eq!(split_aligned(0, 3 * ALIGN + 5), (0, 3 * ALIGN, 5));
        assert_eq!(split_aligned(a - 1, ALIGN + 1), (1, ALIGN, 0));
        assert_eq!(split_aligned(a - 1, ALIGN), (ALIGN, 0, 0));
        assert_eq!(split_aligned(7, 100), (100, 0, 0));
        assert_eq!(split_aligned(512, 2 * ALIGN), (ALIGN - 512, ALIGN, 512));
        assert_eq!(split_aligned(a, 0), (0, 0, 0));
    }

    #[test]
    fn aligned_and_unaligned_buffers_land_where_they_belong() {
        let (_dir, path, file) = scratch_file();
        // Whatever the filesystem under the temp dir, the bytes must come out right; where it
        // has no direct I/O, there is nothing to test here.
        let Some(mut direct) = DirectWriter::open(&path, &file, true) else {
            return;
        };
        let pool = BufferPool::new(3 * ALIGN, 2);
        let mut aligned = pool.buffer();
        aligned.extend_from_slice(&pattern(3 * ALIGN, 1));
        let aligned = pool.freeze(aligned);
        // A slice starting one byte into a vector: never page-aligned in memory.
        let unaligned = Bytes::from(pattern(2 * BOUNCE + 2 * ALIGN + 1, 2)).slice(1..);
        direct
            .submit(ALIGN as u64, vec![aligned.clone()])
            .expect("submit");
        direct
            .submit(8 * ALIGN as u64, vec![unaligned.clone()])
            .expect("submit");
        direct.finish().expect("finish");
        let mut back = vec![0u8; 8 * ALIGN + unaligned.len()];
        file.read_exact_at(&mut back, 0).expect("read back");
        assert!(back[..ALIGN].iter().all(|&b| b == 0));
        assert_eq!(&back[ALIGN..4 * ALIGN], &aligned[..]);
        assert!(back[4 * ALIGN..8 * ALIGN].iter().all(|&b| b == 0));
        assert_eq!(&back[8 * ALIGN..], &unaligned[..]);
    }

    #[test]
    fn a_refused_direct_write_lands_through_the_page_cache_and_turns_direct_io_off() {
        let (_dir, path, buffered) = scratch_file();
        let Ok(direct) = OpenOptions::new()
            .write(true)
            .custom_flags(OFlags::DIRECT.bits() as i32)
            .open(&path)
        else {
            return; // no direct I/O here: nothing to refuse
        };
        // Memory one byte off a page: refused (EINVAL) wherever direct I/O needs any memory
        // alignment, which statx tells on Linux 6.1 and later.
        let needs_alignment = statx(&direct, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN)
            .is_ok_and(|st| {
                st.stx_mask & StatxFlags::DIOALIGN.bits() != 0 && st.stx_dio_mem_align > 1
            });
        let data = pattern(ALIGN + 1, 3);
        let misaligned = &data[1..];
        let shared = Shared::default();
        write_direct(&direct, &buffered, &shared, misaligned, 0).expect("written anyway");
        if needs_alignment {
            assert!(shared.refused.load(Ordering::Relaxed));
        }
        let mut back = vec![0u8; ALIGN];
        buffered.read_exact_at(&mut back, 0).expect("read back");
        assert_eq!(back, misaligned);
    }
}
