//! The client side of tus 1.0 that `cdictl upload` and `cdi-cloner` share: [`requests`] makes
//! one request each (creation with a length or a deferred one, HEAD, PATCH with a known or
//! streamed length, DELETE) and returns what the server said as a typed result; [`backoff`]
//! spaces out retries; [`Meter`] counts the bytes of the current request handed to the
//! connection, which a PATCH watches to tell a stalled connection from a slow answer. What to
//! do next (resume where, give up when) is each caller's own session logic.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod requests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use backoff::Backoff;
pub use requests::{
    Created, Failure, Head, PatchBody, Patched, Refusal, TUS_PATH, Tus, chain, chunk_checksum,
    metadata, server_digest,
};

/// Bytes of an upload, shared by the request that sends them and whoever shows progress.
#[derive(Debug, Default)]
pub struct Meter {
    pub total: AtomicU64,
    /// Bytes the server has confirmed.
    pub confirmed: AtomicU64,
    /// Bytes of the current request handed to the connection.
    pub in_flight: AtomicU64,
    /// The current request's body of unknown length has been handed over whole.
    pub body_done: AtomicBool,
}

impl Meter {
    pub fn position(&self) -> u64 {
        self.confirmed.load(Ordering::Relaxed) + self.in_flight.load(Ordering::Relaxed)
    }

    pub fn confirm(&self, offset: u64) {
        self.in_flight.store(0, Ordering::Relaxed);
        self.confirmed.store(offset, Ordering::Relaxed);
    }
}
