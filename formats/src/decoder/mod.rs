//! The one contract every image format implements: a sans-IO streaming decoder that takes the
//! image's bytes in file order and says where they belong in the guest disk.
//!
//! ```text
//!   head bytes ──► DecoderSpec::open() ──► Box<dyn Decoder>
//!   bytes, in file order ──► Decoder::feed() ──► Output::{data, zero, compressed}
//!   end of stream ──► Decoder::finish() ──► DecoderStats (or Truncated, ...)
//! ```
//!
//! Writes arrive in file order, not guest order; consumers write positionally, and everything
//! never written reads as zeros. Compressed blocks are handed on undecoded so the consumer can
//! decode them on other threads ([`decompress_block_into`]). Bytes that arrive before the table
//! that maps them go to a [`Stash`] the caller chooses (memory, a spill file, or re-reading a
//! random-access source); [`router::Router`] does that bookkeeping for every table-based format.

mod error;
pub mod limits;
pub(crate) mod router;
mod stash;

use std::fmt;

use bytes::Bytes;

use crate::detect::Format;
use crate::qcow2::{CompressedCluster, CompressionType, ConverterStats, decompress_cluster_into};

pub use error::{DecodeError, DecodeErrorKind, LayoutError, OutputClosed};
pub use stash::{MemoryStash, Stash, Stashed};

/// Receives the decoded image.
pub trait Output {
    /// `bytes` belong at `guest` of the raw image.
    fn data(&mut self, guest: u64, bytes: Bytes) -> Result<(), OutputClosed>;
    /// The image says `[guest, guest + len)` reads as zeros (an explicit zero block). Ranges
    /// never written read as zeros too, so a consumer with a fresh target may ignore this.
    fn zero(&mut self, guest: u64, len: u64) -> Result<(), OutputClosed>;
    /// A compressed block to decode (on any thread) and write at its guest offset.
    fn compressed(&mut self, block: CompressedBlock) -> Result<(), OutputClosed>;
    /// The disk's size, from a decoder that learns it only after it started (vhdx keeps it in
    /// its metadata region); called before any output that depends on it.
    fn disk_size(&mut self, _size: u64) -> Result<(), OutputClosed> {
        Ok(())
    }
}

/// How a compressed block is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// A qcow2 compressed cluster (raw deflate or zstd): decodes to exactly one cluster.
    Qcow2(CompressionType),
    /// A zlib stream (RFC 1950), as vmdk grains are: decodes to the whole block, or to exactly
    /// the guest bytes it covers for the last block of a disk.
    Zlib,
}

/// A compressed block gathered from the stream, ready to decode on any thread.
#[derive(Debug, Clone)]
pub struct CompressedBlock {
    pub guest_offset: u64,
    /// Bytes of the decoded block to keep (less than `block_size` only at the end of the disk).
    pub guest_len: usize,
    /// Size of the decoded block.
    pub block_size: usize,
    pub codec: Codec,
    pub data: Bytes,
}

impl From<CompressedCluster> for CompressedBlock {
    fn from(c: CompressedCluster) -> Self {
        CompressedBlock {
            guest_offset: c.guest_offset,
            guest_len: c.guest_len,
            block_size: c.cluster_size,
            codec: Codec::Qcow2(c.compression),
            data: c.data,
        }
    }
}

/// Decodes `block` into `out`, which must be `block.block_size` bytes long. On success at least
/// the first `block.guest_len` bytes of `out` hold the decoded data.
pub fn decompress_block_into(block: &CompressedBlock, out: &mut [u8]) -> Result<(), DecodeError> {
    match block.codec {
        Codec::Qcow2(compression) => {
            let cluster = CompressedCluster {
                guest_offset: block.guest_offset,
                guest_len: block.guest_len,
                cluster_size: block.block_size,
                compression,
                data: block.data.clone(),
            };
            Ok(decompress_cluster_into(&cluster, out)?)
        }
        Codec::Zlib => Ok(crate::vmdk::inflate_grain(block, out)?),
    }
}

/// What a decoder needs from its caller besides the head bytes.
pub struct OpenContext {
    /// The image's length, when the decoder reads the source's own bytes and it is known.
    pub image_len: Option<u64>,
    /// Where bytes that arrive before their table are kept.
    pub stash: Box<dyn Stash + Send>,
    /// Bytes of memory the decoder's own bookkeeping (mappings, partial tables, compressed
    /// blocks being gathered) may use; the stash accounts for itself.
    pub budget: usize,
}

impl fmt::Debug for OpenContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenContext")
            .field("image_len", &self.image_len)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// Makes a decoder from the head bytes; see [`DecoderSpec::open`].
pub type OpenFn = fn(&[u8], OpenContext) -> Result<Box<dyn Decoder>, DecodeError>;

/// How to make a format's decoder.
#[derive(Debug, Clone, Copy)]
pub struct DecoderSpec {
    pub format: Format,
    /// How many leading bytes [`DecoderSpec::open`] needs, given at least the first
    /// [`crate::DETECT_LEN`] (fewer at the end of a short stream); at most
    /// [`limits::MAX_HEAD_LEN`].
    pub head_len: fn(&[u8]) -> Result<usize, DecodeError>,
    /// Validates the head (fewer bytes than asked only when the stream is that short) and
    /// makes the decoder. The decoder is then fed the whole stream from its first byte.
    pub open: OpenFn,
}

/// A streaming decoder: see the module documentation.
pub trait Decoder: fmt::Debug {
    /// The disk's size, once known (no output comes before it is).
    fn virtual_size(&self) -> Option<u64>;
    /// Pieces fed in whole multiples of this many bytes (except the last) avoid copies.
    fn block_align(&self) -> usize {
        4096
    }
    /// Feeds the next bytes of the image, in file order, starting with its first byte.
    fn feed(&mut self, bytes: Bytes, out: &mut dyn Output) -> Result<(), DecodeError>;
    /// The stream ended: fails when anything the image refers to was not seen.
    fn finish(&mut self, out: &mut dyn Output) -> Result<DecoderStats, DecodeError>;
}

/// What a decoder saw, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Compressed blocks handed on.
    pub compressed_blocks: u64,
    /// Pieces kept in the stash because nothing had said yet what they were.
    pub stashed_pieces: u64,
    /// Structures read back from the stash.
    pub from_stash: u64,
    pub peak_metadata_bytes: usize,
    /// Bytes of the stash moved to a spill file.
    pub spilled_bytes: u64,
    /// The qcow2 converter's own counts, for qcow2 images.
    pub qcow2: Option<ConverterStats>,
}
