//! Every way a vhdx image is refused, each with a message that says what was wrong.

use crate::decoder::DecodeErrorKind;

/// Why a vhdx image cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VhdxError {
    #[error("vhdx header section is truncated: need {needed} bytes, the image has {available}")]
    TruncatedHeader { needed: usize, available: usize },
    #[error("not a vhdx image (no \"vhdxfile\" identifier)")]
    BadIdentifier,
    #[error("neither vhdx {what} is valid (bad signature or checksum): the image is damaged")]
    NoValidCopy { what: &'static str },
    #[error("vhdx {what} version {version} is not supported (only 1 is)")]
    UnsupportedVersion { what: &'static str, version: u16 },
    #[error(
        "the vhdx log is not empty (log GUID {0}): the disk was not closed cleanly and its log \
         must be replayed first; attach it once in Hyper-V, or run `qemu-img check -r all` on \
         it, then import it again"
    )]
    LogNotEmpty(String),
    #[error("vhdx region table is malformed: {0}")]
    MalformedRegions(String),
    #[error("vhdx region {0} is required but unknown; refusing to guess what it means")]
    UnknownRequiredRegion(String),
    #[error("vhdx metadata is malformed: {0}")]
    MalformedMetadata(String),
    #[error("vhdx metadata item {0} is required but unknown; refusing to guess what it means")]
    UnknownRequiredItem(String),
    #[error(
        "the vhdx is a differencing disk (it has a parent); images that depend on another \
         image cannot be imported: merge it first, e.g. `qemu-img convert -O vhdx DIFF MERGED`"
    )]
    Differencing,
    #[error("vhdx BAT entry for payload block {block} is malformed ({entry:#018x}): {reason}")]
    BadBlock {
        block: u64,
        entry: u64,
        reason: &'static str,
    },
}

impl VhdxError {
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            VhdxError::UnsupportedVersion { .. }
            | VhdxError::LogNotEmpty(_)
            | VhdxError::UnknownRequiredRegion(_)
            | VhdxError::UnknownRequiredItem(_)
            | VhdxError::Differencing => DecodeErrorKind::Unsupported,
            _ => DecodeErrorKind::InvalidImage,
        }
    }
}
