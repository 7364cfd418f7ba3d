//! Sans-IO parsers for virtual-machine disk images: bytes in, typed headers and cluster
//! mappings out. Nothing here opens a file or a socket; callers feed bytes and act on what comes
//! back, so every parser can be unit-tested and fuzzed directly.
//!
//! ```text
//!   first bytes ──► detect::detect() ──► Format::{Gzip, Xz, Zstd, Bzip2, Qcow2, Raw, ...}
//!   qcow2 bytes ──► qcow2::Header::parse() ──► qcow2::StreamConverter::feed_cluster()
//!                                                 └─► ConvertSink::{data, compressed}
//! ```
//!
//! Limits for untrusted input are named constants in [`qcow2::limits`], each with its reason.

pub mod detect;
pub mod qcow2;
pub mod zero;

pub use detect::{DETECT_LEN, Format, detect};
