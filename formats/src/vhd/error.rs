//! Every way a vhd image is refused, each with a message that says what was wrong.

use crate::decoder::DecodeErrorKind;

/// Why a vhd image cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VhdError {
    #[error("vhd {what} is truncated: need {needed} bytes, the image has {available}")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("vhd {what} has a bad cookie (expected {expected:?})")]
    BadCookie {
        what: &'static str,
        expected: &'static str,
    },
    #[error(
        "vhd {what} checksum is {stored:#010x} but its bytes sum to {computed:#010x}: the image \
         is damaged"
    )]
    Checksum {
        what: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error("vhd {what} version {version:#010x} is not supported (only 1.0 is)")]
    UnsupportedVersion { what: &'static str, version: u32 },
    #[error("vhd disk type {0} is not supported (2 = fixed, 3 = dynamic)")]
    DiskType(u32),
    #[error(
        "the vhd is a differencing disk (parent {parent:?}); images that depend on another image \
         cannot be imported: merge it first, e.g. `qemu-img convert -O vpc DIFF.vhd MERGED.vhd`"
    )]
    Differencing { parent: String },
    #[error("vhd header is malformed: {0}")]
    MalformedHeader(String),
    #[error(
        "the file ends with a fixed-vhd footer for {footer_size} bytes of disk, but {data_len} \
         bytes precede it: the image is truncated or damaged"
    )]
    FixedSize { footer_size: u64, data_len: u64 },
}

impl VhdError {
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            VhdError::UnsupportedVersion { .. }
            | VhdError::DiskType(_)
            | VhdError::Differencing { .. } => DecodeErrorKind::Unsupported,
            _ => DecodeErrorKind::InvalidImage,
        }
    }
}
