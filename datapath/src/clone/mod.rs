//! The sending end of a host-assisted clone: the source (a disk image file or a block device)
//! turned into the clone stream (`cdi_formats::clonestream`), sparse and resumable.
//!
//! ```text
//!  CloneSource ──extents (SEEK_DATA/HOLE; a device is one)──► windows (≤ 1 MiB, disk-aligned)
//!      └─► plan::data_runs (zero granules dropped) ──► frames + digests ──► Producer pieces
//! ```
//!
//! [`plan`] is pure; [`source`] does the reads; [`stream`] strings them together and can start
//! again from any window boundary ([`Checkpoint`]) and skip to any byte.

pub mod plan;
pub mod source;
pub mod stream;

pub use source::{CloneSource, SourceKind};
pub use stream::{Checkpoint, Producer};

#[cfg(test)]
mod tests;
