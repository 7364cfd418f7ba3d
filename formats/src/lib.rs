//! Sans-IO parsers and decoders for virtual-machine disk images: bytes in, typed headers and
//! guest-offset writes out. Nothing here opens a file or a socket; callers feed bytes and act on
//! what comes back, so every parser can be unit-tested and fuzzed directly.
//!
//! ```text
//!   first bytes ──► detect::detect() ──► Format::{Gzip, Xz, Zstd, Bzip2, Qcow2, Vmdk, Vhd, ...}
//!   last sector ──► detect::detect_tail() ──► fixed vhd footer, dmg trailer
//!   image bytes ──► <format>::SPEC.open(head) ──► dyn decoder::Decoder ──feed()──►
//!                     decoder::Output::{data, zero, compressed}
//! ```
//!
//! One folder per format (`qcow2/`, `vmdk/`, `vhd/`, `vhdx/`, `vdi/`, and `ova/` for the
//! appliance archive around them), each with its own error enum and `limits.rs` (every bound on
//! untrusted input, named, with its reason). `decoder/` holds the contract they share and the
//! router that places table-mapped bytes as they stream by.
#![forbid(unsafe_code)]

pub mod clonestream;
pub mod decoder;
pub mod detect;
mod fields;
pub mod ova;
pub mod qcow2;
pub mod vdi;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;
pub mod zero;

pub use detect::{DETECT_LEN, Format, TAIL_LEN, detect, detect_tail};
