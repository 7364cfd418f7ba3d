//! qcow2 (versions 2 and 3): header validation, L1/L2 entry decoding, compressed clusters, and a
//! one-pass converter from a non-seekable qcow2 byte stream to raw `(guest offset, bytes)` runs,
//! behind the common [`crate::decoder::Decoder`] contract (`decoder.rs`).
//!
//! Only the active layer is read. Backing files, external data files and encryption are refused,
//! never followed.

mod compressed;
mod decoder;
mod entries;
mod error;
mod header;
pub mod limits;
mod stream;

pub use crate::decoder::{MemoryStash, Stash, Stashed};
pub use compressed::{CompressedCluster, decompress_cluster, decompress_cluster_into};
pub use decoder::{Qcow2Decoder, SPEC};
pub use entries::{L1Entry, L2Entry, SUBCLUSTERS};
pub use error::Qcow2Error;
pub use header::{CompressionType, HEADER_PEEK_LEN, Header, cluster_size_from_prefix};
pub use stream::{ConvertSink, ConverterStats, StreamConverter, StreamError};
