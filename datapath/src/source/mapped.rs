//! Read-only memory mappings of a local source file, a window at a time: the hash and the
//! decoder read the bytes where the page cache holds them instead of from a copy. The bytes
//! are the same; the CPU time of copying them out of the page cache is saved.
//!
//! Reading a mapped page that lies past the end of a file truncated after it was mapped raises
//! SIGBUS, which would kill the process with no cleanup. So files are mapped only in a process
//! whose binary installed the guard ([`install_truncation_guard`]; `cdictl` does), and are read
//! into buffers otherwise. The guard is a SIGBUS handler: a fault of the kind a truncated file
//! raises (`BUS_ADRERR`) inside a live window gets a page of zeros mapped over the faulting
//! page, the file is marked as shrunk at once, and the access goes on; the source then reports
//! that it shrank (even if the file has grown back since) and the import fails like any other
//! (the target removed). Any other fault, including a hardware memory error
//! (`BUS_MCEERR_*`, which must never read as zeros), goes on to the handler that was installed
//! before (Rust's stack-overflow handler, or the default action).
// The only place the data path maps files and handles signals: its unsafe code is kept here.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use rustix::mm::{Advice, MapFlags, ProtFlags};

/// Windows that may be mapped at once. The pipeline's queues hold a few dozen chunks; a qcow2
/// stash can hold more (up to its memory limit in 1 MiB chunks). Past this, the source reads
/// into buffers instead, so the limit costs speed, never correctness.
const SLOTS: usize = 1024;

/// A slot's `start` while it is being claimed or released: never a window's address.
const BUSY: usize = usize::MAX;

/// One live window's address range, where the SIGBUS handler can read it without locking.
#[derive(Debug)]
struct Slot {
    /// 0: free; [`BUSY`]: being claimed or released; otherwise the window's first byte.
    start: AtomicUsize,
    /// One past the window's last mapped byte (whole pages).
    end: AtomicUsize,
    /// The window's file's shrunk flag (kept alive by the window), which the handler sets;
    /// null while the slot is free.
    shrunk: AtomicPtr<AtomicBool>,
}

static WINDOWS: [Slot; SLOTS] = [const {
    Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        shrunk: AtomicPtr::new(std::ptr::null_mut()),
    }
}; SLOTS];

/// The system's page size, read once when the handler is installed.
static PAGE: AtomicUsize = AtomicUsize::new(0);
/// The SIGBUS disposition before ours: its handler and flags, for faults that are not ours.
static PREVIOUS_HANDLER: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static PREVIOUS_FLAGS: AtomicUsize = AtomicUsize::new(0);

/// Whether [`install_truncation_guard`] succeeded in this process.
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Installs the SIGBUS handler that lets local source files be read through memory mappings
/// (see the module's documentation), once per process; later calls return the first result.
/// Call it early in `main`, in binaries that import local files. Without it (or if it fails)
/// files are read into buffers: the same bytes, at some CPU cost.
pub fn install_truncation_guard() -> io::Result<()> {
    if guard_installed() {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn guard_installed() -> bool {
    *INSTALLED.get_or_init(|| {
        let page = rustix::param::page_size();
        PAGE.store(page, Ordering::Release);
        // SAFETY: sigaction with valid pointers to zero-initialised (valid) structs; the
        // handler only performs async-signal-safe work (atomics, mmap, sigaction).
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) != 0 {
                return false;
            }
            PREVIOUS_HANDLER.store(old.sa_sigaction, Ordering::Release);
            PREVIOUS_FLAGS.store(old.sa_flags as usize, Ordering::Release);
            let mut ours: libc::sigaction = std::mem::zeroed();
            ours.sa_sigaction = on_sigbus as *const () as usize;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut ours.sa_mask);
            libc::sigaction(libc::SIGBUS, &ours, std::ptr::null_mut()) == 0
        }
    })
}

extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel hands an SA_SIGINFO handler a valid siginfo.
    let code = unsafe { (*info).si_code };
    if code != libc::BUS_ADRERR {
        // Not an access past the end of a mapped file: a hardware memory error
        // (BUS_MCEERR_AR/AO), a misaligned access or anything else is not ours to hide.
        forward(signal, info, context);
        return;
    }
    // SAFETY: as above; SIGBUS carries si_addr.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Acquire);
    for slot in &WINDOWS {
        let start = slot.start.load(Ordering::Acquire);
        if start == 0 || start == BUSY || addr < start || addr >= slot.end.load(Ordering::Acquire) {
            continue;
        }
        let at = addr & !(page - 1);
        // SAFETY: the page lies in a live read-only window of ours, which nobody writes and
        // whose owner unmaps it as a whole; zeros replace bytes the file no longer has.
        let zeros = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if zeros != libc::MAP_FAILED {
            let shrunk = slot.shrunk.load(Ordering::Acquire);
            if !shrunk.is_null() {
                // SAFETY: the flag is owned by an `Arc` that the live window holds; the slot
                // forgets it before the window lets it go (see `Drop for Window`).
                unsafe { (*shrunk).store(true, Ordering::Release) };
            }
            return;
        }
    }
    forward(signal, info, context);
}

/// Hands a fault that is not ours to the handler installed before ours. With none, the
/// default action is restored: returning re-runs the faulting access, which then ends the
/// process as it would have without us.
fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let handler = PREVIOUS_HANDLER.load(Ordering::Acquire);
    let flags = PREVIOUS_FLAGS.load(Ordering::Acquire) as libc::c_int;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // SAFETY: resetting a disposition to its default is async-signal-safe.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
        return;
    }
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous disposition declared SA_SIGINFO, so this is its handler's type.
        let previous: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        previous(signal, info, context);
    } else {
        // SAFETY: without SA_SIGINFO the previous handler takes the signal number only.
        let previous: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        previous(signal);
    }
}

/// A regular file read through mappings.
#[derive(Debug)]
pub(crate) struct MappedFile {
    file: Arc<File>,
    len: u64,
    /// A window of this file saw a page past the file's end.
    shrunk: Arc<AtomicBool>,
}

impl MappedFile {
    /// `None` when mappings cannot be guarded here; the caller reads instead.
    pub fn new(file: Arc<File>, len: u64) -> Option<Self> {
        (INSTALLED.get() == Some(&true)).then(|| MappedFile {
            file,
            len,
            shrunk: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The length the file had when it was opened: what is read.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the file lost bytes after it was opened (they read as zeros here), even if it
    /// has grown back since.
    pub fn shrunk(&self) -> bool {
        self.shrunk.load(Ordering::Acquire)
            || self.file.metadata().is_ok_and(|m| m.len() < self.len)
    }

    /// The bytes `[offset, offset + len)` (`offset` page-aligned), mapped and their pages
    /// entered up front. `Ok(None)` when every window slot is taken: read these bytes instead.
    /// An error when the mapping fails or the range is no longer in the file.
    pub fn window(&self, offset: u64, len: usize) -> io::Result<Option<Bytes>> {
        debug_assert!(len > 0 && offset + len as u64 <= self.len);
        let Some(slot) = claim_slot() else {
            return Ok(None);
        };
        // SAFETY: a fresh shared read-only mapping, placed by the kernel; nothing else refers
        // to it until `Window` owns it.
        let mapped = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                self.file.as_fd(),
                offset,
            )
        };
        let addr = match mapped {
            Ok(addr) => addr as usize,
            Err(e) => {
                release_slot(slot);
                return Err(e.into());
            }
        };
        let page = PAGE.load(Ordering::Acquire);
        slot.end
            .store(addr + len.div_ceil(page) * page, Ordering::Release);
        slot.shrunk
            .store(Arc::as_ptr(&self.shrunk).cast_mut(), Ordering::Release);
        slot.start.store(addr, Ordering::Release);
        let window = Window {
            addr,
            len,
            slot,
            _shrunk: Arc::clone(&self.shrunk),
        };
        // SAFETY: advice on our own live mapping. Entering the pages now, on the reading
        // thread, spares the threads that consume them a page fault per 64 KiB.
        match unsafe { rustix::mm::madvise(addr as *mut _, len, Advice::LinuxPopulateRead) } {
            // Part of the range is past the end of the file now.
            Err(rustix::io::Errno::FAULT) => {
                self.shrunk.store(true, Ordering::Release);
                Err(io::Error::other("the file shrank while it was being read"))
            }
            // Older kernels lack the advice (pages then come in on first touch); other
            // failures (memory pressure) leave the faults to the readers as well.
            _ => Ok(Some(Bytes::from_owner(window))),
        }
    }
}

fn claim_slot() -> Option<&'static Slot> {
    WINDOWS.iter().find(|slot| {
        slot.start
            .compare_exchange(0, BUSY, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

fn release_slot(slot: &Slot) {
    slot.shrunk.store(std::ptr::null_mut(), Ordering::Release);
    slot.end.store(0, Ordering::Release);
    slot.start.store(0, Ordering::Release);
}

/// One mapped window; unmapped when the last `Bytes` slice of it is dropped.
#[derive(Debug)]
struct Window {
    addr: usize,
    len: usize,
    slot: &'static Slot,
    /// Keeps the file's shrunk flag, which the slot points the handler at, alive while the
    /// window is mapped.
    _shrunk: Arc<AtomicBool>,
}

impl AsRef<[u8]> for Window {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `addr..addr + len` is mapped readable for as long as `self` lives, and no
        // one writes through it (a page past the file's end is replaced by zeros, see above).
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // Out of the handler's sight before the range can be reused by another mapping.
        self.slot.start.store(BUSY, Ordering::Release);
        // SAFETY: our own mapping, with no slice of it left (the last `Bytes` went away).
        let _ = unsafe { rustix::mm::munmap(self.addr as *mut _, self.len) };
        release_slot(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(data: &[u8]) -> (tempfile::NamedTempFile, Arc<File>) {
        install_truncation_guard().expect("guard installed");
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(data).expect("write");
        let file = Arc::new(File::open(f.path()).expect("open"));
        (f, file)
    }

    #[test]
    fn windows_hold_the_files_bytes() {
        let data: Vec<u8> = (0..3 * 65536 + 17).map(|i| (i % 253) as u8).collect();
        let (_f, file) = file_with(&data);
        let mapped = MappedFile::new(file, data.len() as u64).expect("guard installed");
        let first = mapped.window(0, 65536).expect("map").expect("slot");
        let last = mapped
            .window(131072, data.len() - 131072)
            .expect("map")
            .expect("slot");
        assert_eq!(&first[..], &data[..65536]);
        assert_eq!(&last[..], &data[131072..]);
        assert!(!mapped.shrunk());
    }

    #[test]
    fn a_file_truncated_under_a_window_reads_as_zeros_and_is_reported_not_fatal() {
        let page = rustix::param::page_size();
        let data = vec![0xA5u8; 4 * page];
        let (f, file) = file_with(&data);
        let mapped = MappedFile::new(file, data.len() as u64).expect("guard installed");
        let window = mapped.window(0, data.len()).expect("map").expect("slot");
        // Keep one page; the rest of the mapping now lies past the end of the file.
        f.as_file().set_len(page as u64).expect("truncate");
        // Without the guard this read would end the test process with SIGBUS.
        let tail: Vec<u8> = window[page..].to_vec();
        assert!(
            tail.iter().all(|&b| b == 0),
            "bytes past the end read as zeros"
        );
        assert_eq!(&window[..page], &data[..page]);
        assert!(mapped.shrunk());
        drop(window);
        assert!(mapped.shrunk(), "still reported once the window is gone");
        // A window over bytes that are gone is refused up front.
        assert!(mapped.window(2 * page as u64, page).is_err());
    }

    #[test]
    fn a_growing_file_is_not_reported_as_shrunk() {
        let (f, file) = file_with(&[1u8; 8192]);
        let mapped = MappedFile::new(file, 8192).expect("guard installed");
        f.as_file().set_len(16384).expect("grow");
        let window = mapped.window(0, 8192).expect("map").expect("slot");
        assert!(window.iter().all(|&b| b == 1));
        assert!(!mapped.shrunk());
    }
}
