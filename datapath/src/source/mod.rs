//! Where image bytes come from: a local file, standard input, an HTTP(S) URL, an S3 or GCS
//! object, a container registry, or bytes pushed in by an upload. A source
//! yields chunks in order; some can also read at any offset, which the qcow2 converter uses
//! instead of keeping early clusters in memory.

mod file;
pub mod gcs;
mod http;
mod mapped;
mod object_url;
mod push;
pub mod registry;
pub mod s3;
mod spec;

use std::sync::Arc;

use bytes::Bytes;

use crate::checksum::SourceDigest;
use crate::error::Error;

pub use file::{FileSource, StdinSource};
pub use http::{
    DigestsOf, HttpOptions, HttpSource, RequestSigner, RetryPolicy, SignFuture, SignedRequest,
    redact,
};
pub use mapped::install_truncation_guard;
pub use push::{PipelineClosed, PushSender, PushSource, push_channel};
pub use spec::{Scheme, SourceSpec};

/// Chunk size for sources that read into their own buffers.
pub const CHUNK: usize = 1 << 20;

/// Free chunk buffers a source keeps for reuse: enough for every chunk the pipeline's queues
/// hold at once, so in the steady state no buffer is allocated.
const POOLED_CHUNKS: usize = 32;

pub(crate) use crate::buffer::BufferPool;

fn chunk_pool() -> BufferPool {
    BufferPool::new(CHUNK, POOLED_CHUNKS)
}

/// A stream of the image's bytes as transferred.
pub trait Source: Send {
    /// For messages: a path or URL with credentials removed.
    fn describe(&self) -> String;
    /// Total length when known up front.
    fn total_len(&self) -> Option<u64>;
    /// The next chunk, or `None` at the end.
    fn next_chunk(&mut self) -> Result<Option<Bytes>, Error>;
    /// Positional reads of the same bytes, when the source allows them.
    /// True when the chunks are slices of a mapped file: holding them costs no memory of ours
    /// (they are the page cache's), so the pipeline may keep more of them in flight.
    fn mapped(&self) -> bool {
        false
    }

    /// After the last chunk: an error if the source changed under the import in a way that
    /// made what was read wrong (a file that shrank, or was written to).
    fn check_unchanged(&self) -> Result<(), Error> {
        Ok(())
    }

    fn random_access(&self) -> Option<Arc<dyn ReadAt>> {
        None
    }

    /// Digests the source vouches for itself (an object store's MD5 or CRC of the object),
    /// known once it is open; the import checks them before it commits.
    fn expected_digests(&self) -> Vec<SourceDigest> {
        Vec::new()
    }
}

/// Positional reads (`pread`).
pub trait ReadAt: Send + Sync {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}
