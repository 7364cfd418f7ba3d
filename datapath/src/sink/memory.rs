//! An in-memory sink for tests: records writes, can fail on demand after N bytes.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{RangeSet, Sink, SinkReport};
use crate::error::Error;

/// What a [`MemorySink`] ended with, shared with the test that made it.
#[derive(Debug, Default)]
pub struct MemoryImage {
    pub bytes: Vec<u8>,
    pub committed: bool,
    pub aborted: bool,
    pub writes: usize,
}

/// Keeps the image in a shared `Vec`; optionally fails like a full disk.
#[derive(Debug)]
pub struct MemorySink {
    image: Arc<Mutex<MemoryImage>>,
    capacity: Option<u64>,
    fail_after: Option<u64>,
    written: u64,
    run: usize,
}

impl MemorySink {
    pub fn new(capacity: Option<u64>) -> (Self, Arc<Mutex<MemoryImage>>) {
        let image = Arc::new(Mutex::new(MemoryImage::default()));
        (
            MemorySink {
                image: Arc::clone(&image),
                capacity,
                fail_after: None,
                written: 0,
                run: 0,
            },
            image,
        )
    }

    /// Asks the writer for runs of `bytes` contiguous bytes, as a direct-I/O sink does.
    pub fn gathering(mut self, bytes: usize) -> Self {
        self.run = bytes;
        self
    }

    /// Fails with ENOSPC once more than `bytes` have been written.
    pub fn fail_after(mut self, bytes: u64) -> Self {
        self.fail_after = Some(bytes);
        self
    }

    fn image(&self) -> std::sync::MutexGuard<'_, MemoryImage> {
        self.image.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sink for MemorySink {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn capacity(&self) -> Option<u64> {
        self.capacity
    }

    fn preferred_run(&self) -> usize {
        self.run
    }

    fn write_at(&mut self, offset: u64, run: &[Bytes]) -> Result<(), Error> {
        let data: Vec<u8> = run.concat();
        self.written += data.len() as u64;
        if self.fail_after.is_some_and(|limit| self.written > limit) {
            return Err(Error::target(
                "writing",
                std::path::Path::new("memory"),
                std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
            ));
        }
        let mut image = self.image();
        let end = offset as usize + data.len();
        if image.bytes.len() < end {
            image.bytes.resize(end, 0);
        }
        image.bytes[offset as usize..end].copy_from_slice(&data);
        image.writes += 1;
        Ok(())
    }

    fn commit(&mut self, image_size: u64, _written: &RangeSet) -> Result<SinkReport, Error> {
        let mut image = self.image();
        image.bytes.resize(image_size as usize, 0);
        image.committed = true;
        Ok(SinkReport {
            final_size: image_size,
            preallocated: false,
            zeroed: 0,
        })
    }

    fn abort(&mut self) -> String {
        let mut image = self.image();
        image.bytes.clear();
        image.aborted = true;
        "the in-memory image was discarded".into()
    }
}
