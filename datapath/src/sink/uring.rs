//! Direct writes submitted through io_uring: the writer thread queues each run of whole pages
//! with the kernel and goes on at once, while up to [`ENTRIES`] writes are in flight. Unlike a
//! synchronous `O_DIRECT` write, an asynchronous one holds the filesystem's inode lock only
//! while it is being submitted, not while the storage works on it, so many small runs and
//! large ones stream side by side without a thread per request.
// Submitting to io_uring hands the kernel pointers to memory it writes from: unsafe, kept here.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;

use bytes::Bytes;
use io_uring::{IoUring, opcode, types};

use super::direct::slice_run;
use super::write_run_at;
use crate::buffer::{ALIGN, AlignedBuf};

/// Submission queue entries, and so the most writes in flight at once: deep enough to keep a
/// fast device busy with the small runs of a fragmented image.
const ENTRIES: u32 = 64;

/// Bytes in flight at most (each run is at most [`super::writer::MAX_RUN`]): the buffers and
/// mapped source pages held for writes not yet done.
const MAX_IN_FLIGHT: usize = 16 << 20;

/// The vectors of one write: pointers into the `parts` or the bounce buffer of the same
/// [`Write`], which lives until the kernel reports the write done.
struct IoVecs(Vec<libc::iovec>);

// SAFETY: the pointers refer to memory owned by the same `Write` (shared, immutable `Bytes` or
// its own bounce buffer), which moves between threads together with them.
unsafe impl Send for IoVecs {}

/// A write the kernel holds: the memory it reads from stays here until its completion.
struct Write {
    offset: u64,
    parts: Vec<Bytes>,
    /// A page-aligned copy of `parts`, when they were not aligned in memory.
    bounce: Option<AlignedBuf>,
    iovecs: IoVecs,
    len: usize,
}

impl Write {
    fn new(offset: u64, parts: Vec<Bytes>) -> Self {
        let len = parts.iter().map(Bytes::len).sum::<usize>();
        let aligned = parts.len() <= super::direct::MAX_PARTS
            && parts
                .iter()
                .all(|p| p.as_ptr().align_offset(ALIGN) == 0 && p.len().is_multiple_of(ALIGN));
        let (bounce, iovecs) = if aligned {
            let iovecs = parts
                .iter()
                .map(|p| libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                })
                .collect();
            (None, iovecs)
        } else {
            let mut bounce = AlignedBuf::new(len);
            for p in &parts {
                bounce.extend_from_slice(p);
            }
            let iovec = libc::iovec {
                iov_base: bounce.filled().as_ptr() as *mut libc::c_void,
                iov_len: len,
            };
            (Some(bounce), vec![iovec])
        };
        Write {
            offset,
            parts,
            bounce,
            iovecs: IoVecs(iovecs),
            len,
        }
    }
}

/// Direct writes to one target through one io_uring.
pub(crate) struct UringWriter {
    ring: IoUring,
    direct: File,
    buffered: File,
    /// Writes in flight, indexed by their `user_data`; `free` lists the empty slots.
    writes: Vec<Option<Write>>,
    free: Vec<usize>,
    in_flight: usize,
    in_flight_bytes: usize,
    /// The target refused a direct write (an alignment it did not announce): everything goes
    /// through the page cache from then on.
    refused: bool,
    /// The first failed write; later ones are not submitted.
    failure: Option<std::io::Error>,
    pieces: u64,
    bytes: u64,
    /// Writes whose memory was not page-aligned, so copied first.
    bounced: u64,
    /// `finish` has run to the end (it runs again on drop).
    finished: bool,
}

impl std::fmt::Debug for UringWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringWriter")
            .field("in_flight", &self.in_flight)
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl UringWriter {
    /// A ring for writes to `direct` (opened with `O_DIRECT`); `None` when the kernel offers no
    /// io_uring (too old, or forbidden, as container runtimes' default seccomp profiles do).
    pub fn open(direct: File, buffered: File) -> Option<Self> {
        // Completions are collected when the writer next enters the kernel instead of
        // interrupting it, or the hash beside it, for each one (Linux 5.19+; plain before).
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .build(ENTRIES)
            .or_else(|_| IoUring::new(ENTRIES));
        let ring = match ring {
            Ok(ring) => ring,
            Err(e) => {
                tracing::debug!(error = %e, "No io_uring; direct writes use threads.");
                return None;
            }
        };
        Some(UringWriter {
            ring,
            direct,
            buffered,
            writes: Vec::with_capacity(ENTRIES as usize),
            free: Vec::new(),
            in_flight: 0,
            in_flight_bytes: 0,
            refused: false,
            failure: None,
            pieces: 0,
            bytes: 0,
            bounced: 0,
            finished: false,
        })
    }

    /// False once the target refused a direct write.
    pub fn usable(&self) -> bool {
        !self.refused
    }

    /// Queues `parts`, aligned in offset and length as a whole, for writing at `offset`;
    /// reports an earlier write's failure.
    pub fn submit(&mut self, offset: u64, parts: Vec<Bytes>) -> std::io::Result<()> {
        self.failed()?;
        let write = Write::new(offset, parts);
        while self.in_flight > 0
            && (self.in_flight >= ENTRIES as usize
                || self.in_flight_bytes + write.len > MAX_IN_FLIGHT)
        {
            self.reap(true)?;
        }
        self.failed()?;
        self.pieces += 1;
        self.bytes += write.len as u64;
        self.bounced += u64::from(write.bounce.is_some());
        self.push(write)?;
        // Reap what is already done without waiting, so its memory goes back early.
        self.reap(false)
    }

    fn push(&mut self, write: Write) -> std::io::Result<()> {
        let key = match self.free.pop() {
            Some(key) => key,
            None => {
                self.writes.push(None);
                self.writes.len() - 1
            }
        };
        let sqe = opcode::Writev::new(
            types::Fd(self.direct.as_raw_fd()),
            write.iovecs.0.as_ptr(),
            write.iovecs.0.len() as u32,
        )
        .offset(write.offset)
        .build()
        .user_data(key as u64);
        self.in_flight += 1;
        self.in_flight_bytes += write.len;
        self.writes[key] = Some(write);
        loop {
            // SAFETY: the vectors and the memory they describe belong to `writes[key]`, which
            // is only dropped once the kernel has reported this write complete (see `reap`;
            // `Drop` waits for every write in flight).
            let pushed = unsafe { self.ring.submission().push(&sqe) };
            if pushed.is_ok() {
                break;
            }
            // The queue is submitted after every push, so it is never full for long.
            self.enter(0)?;
        }
        self.enter(0)
    }

    /// Submits what is queued and waits for `want` completions, retrying interrupted waits.
    fn enter(&mut self, want: usize) -> std::io::Result<()> {
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    // Completions must be reaped before more can be submitted.
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Handles the completions there are, waiting for one first if `wait`.
    fn reap(&mut self, wait: bool) -> std::io::Result<()> {
        if wait {
            self.enter(1)?;
        }
        let done: Vec<(usize, i32)> = self
            .ring
            .completion()
            .map(|cqe| (cqe.user_data() as usize, cqe.result()))
            .collect();
        for (key, result) in done {
            let Some(write) = self.writes.get_mut(key).and_then(Option::take) else {
                continue;
            };
            self.free.push(key);
            self.in_flight -= 1;
            self.in_flight_bytes -= write.len;
            if let Err(e) = self.completed(write, result)
                && self.failure.is_none()
            {
                self.failure = Some(e);
            }
        }
        Ok(())
    }

    /// What a write's result means: done, a remainder to write, a refusal or a failure.
    fn completed(&mut self, write: Write, result: i32) -> std::io::Result<()> {
        if result < 0 {
            let errno = -result;
            return match errno {
                libc::EINTR | libc::EAGAIN => self.push(write),
                // An alignment the target needs but did not announce, or a filesystem that
                // takes direct writes only synchronously.
                libc::EINVAL | libc::EOPNOTSUPP => {
                    if !self.refused {
                        self.refused = true;
                        tracing::info!(
                            "The target refused a direct write; writing through the page cache."
                        );
                    }
                    self.write_buffered(&write, 0)
                }
                _ => Err(std::io::Error::from_raw_os_error(errno)),
            };
        }
        let done = result as usize;
        if done >= write.len {
            return Ok(());
        }
        if done == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let at = write.offset + done as u64;
        if !at.is_multiple_of(ALIGN as u64) || self.failure.is_some() {
            return self.write_buffered(&write, done);
        }
        let rest = match &write.bounce {
            Some(bounce) => vec![Bytes::copy_from_slice(&bounce.filled()[done..])],
            None => slice_run(&write.parts, done, write.len),
        };
        self.push(Write::new(at, rest))
    }

    /// Writes `write` from byte `from` on through the page cache.
    fn write_buffered(&self, write: &Write, from: usize) -> std::io::Result<()> {
        let at = write.offset + from as u64;
        match &write.bounce {
            Some(bounce) => write_run_at(
                &self.buffered,
                at,
                &[Bytes::copy_from_slice(&bounce.filled()[from..])],
            ),
            None => write_run_at(
                &self.buffered,
                at,
                &slice_run(&write.parts, from, write.len),
            ),
        }
    }

    /// Waits for every write in flight; the first failure, if any.
    pub fn finish(&mut self) -> std::io::Result<()> {
        while self.in_flight > 0 {
            if let Err(e) = self.reap(true) {
                // The ring itself failed: the writes in flight can no longer be waited for.
                // Their memory is leaked rather than freed under the kernel.
                for write in self.writes.drain(..).flatten() {
                    std::mem::forget(write);
                }
                self.in_flight = 0;
                return Err(e);
            }
        }
        if !self.finished {
            self.finished = true;
            tracing::debug!(
                pieces = self.pieces,
                bytes = self.bytes,
                bounced = self.bounced,
                refused = self.refused,
                "Direct writes finished."
            );
        }
        self.failed()
    }

    fn failed(&self) -> std::io::Result<()> {
        match &self.failure {
            Some(e) => Err(match e.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(e.kind(), e.to_string()),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for UringWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::buffer::BufferPool;
    use crate::sink::test_files::{pattern, scratch_file};

    /// A writer on an empty file in a temporary directory, with that file; `None` where this
    /// machine offers no io_uring or no direct I/O under the temp dir (nothing to test then).
    fn writer() -> Option<(tempfile::TempDir, File, UringWriter)> {
        let (dir, path, file) = scratch_file();
        let direct = super::super::direct::DirectWriter::open_direct(&path)?;
        let writer = UringWriter::open(direct, file.try_clone().expect("clone"))?;
        Some((dir, file, writer))
    }

    fn read_back(file: &File, len: usize) -> Vec<u8> {
        let mut back = vec![0u8; len];
        file.read_exact_at(&mut back, 0).expect("read back");
        back
    }

    #[test]
    fn more_writes_than_the_ring_holds_land_from_aligned_and_unaligned_memory() {
        let Some((_dir, file, mut w)) = writer() else {
            return;
        };
        let pool = BufferPool::new(1 << 20, 4);
        let mut want = vec![0u8; 0];
        let mut at = 0u64;
        // Small runs, large runs, page-aligned pool buffers and misaligned vectors: more runs
        // than the ring has entries, more bytes than may be in flight.
        for i in 0..3 * ENTRIES as usize {
            let len = if i % 10 == 0 {
                1 << 20
            } else {
                ALIGN * (1 + i % 3)
            };
            let data = pattern(len, i as u8);
            let bytes = if i % 2 == 0 {
                let mut buf = pool.buffer();
                buf.extend_from_slice(&data);
                pool.freeze(buf).slice(..len)
            } else {
                let mut v = vec![0u8; 1];
                v.extend_from_slice(&data);
                Bytes::from(v).slice(1..)
            };
            // Every third run leaves a hole of a page before the next.
            let gap = if i % 3 == 0 { ALIGN } else { 0 };
            w.submit(at, vec![bytes]).expect("submit");
            want.resize(at as usize, 0);
            want.extend_from_slice(&data);
            at += (len + gap) as u64;
        }
        assert!(w.bytes > MAX_IN_FLIGHT as u64);
        w.finish().expect("finish");
        assert_eq!(w.in_flight, 0);
        assert!(read_back(&file, want.len()) == want);
    }

    #[test]
    fn a_refused_write_lands_through_the_page_cache_and_turns_direct_io_off() {
        let Some((_dir, file, mut w)) = writer() else {
            return;
        };
        let data = pattern(2 * ALIGN, 5);
        for (i, refusal) in [libc::EINVAL, libc::EOPNOTSUPP].into_iter().enumerate() {
            let at = (i * 4 * ALIGN) as u64;
            let write = Write::new(at + ALIGN as u64, vec![Bytes::from(data.clone())]);
            w.completed(write, -refusal).expect("written anyway");
            assert!(!w.usable());
        }
        w.finish().expect("finish");
        let back = read_back(&file, 7 * ALIGN);
        for at in [0, 4 * ALIGN] {
            assert!(back[at..at + ALIGN].iter().all(|&b| b == 0));
            assert!(back[at + ALIGN..at + 3 * ALIGN] == data[..]);
        }
    }

    #[test]
    fn a_short_write_is_finished_from_where_it_stopped() {
        let Some((_dir, file, mut w)) = writer() else {
            return;
        };
        let data = pattern(3 * ALIGN, 7);
        // The kernel wrote the first page and stopped: only the rest may be written again.
        file.write_all_at(&data[..ALIGN], 0).expect("first page");
        let write = Write::new(0, vec![Bytes::from(data.clone())]);
        w.completed(write, ALIGN as i32).expect("rest submitted");
        w.finish().expect("finish");
        assert!(read_back(&file, data.len()) == data);
        assert_eq!(w.in_flight, 0);
    }

    #[test]
    fn a_failed_write_fails_every_later_call_with_its_error() {
        let Some((_dir, _file, mut w)) = writer() else {
            return;
        };
        let write = Write::new(0, vec![Bytes::from(pattern(ALIGN, 1))]);
        let err = w.completed(write, -libc::ENOSPC).expect_err("failed");
        w.failure = Some(err);
        let again = w
            .submit(0, vec![Bytes::from(pattern(ALIGN, 2))])
            .expect_err("refused after a failure");
        assert_eq!(again.raw_os_error(), Some(libc::ENOSPC));
        let at_finish = w.finish().expect_err("still failed");
        assert_eq!(at_finish.raw_os_error(), Some(libc::ENOSPC));
    }
}
