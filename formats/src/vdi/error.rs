//! Every way a vdi image is refused, each with a message that says what was wrong.

use crate::decoder::DecodeErrorKind;

/// Why a vdi image cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VdiError {
    #[error("vdi header is truncated: need {needed} bytes, the image has {available}")]
    TruncatedHeader { needed: usize, available: usize },
    #[error("not a vdi image (bad signature)")]
    BadSignature,
    #[error("vdi version {0:#010x} is not supported (only 1.1 is)")]
    UnsupportedVersion(u32),
    #[error(
        "vdi image type {0} is not supported: undo and differencing images depend on another \
         image; merge them in VirtualBox or with `qemu-img convert` first (1 = dynamic and \
         2 = static are)"
    )]
    ImageType(u32),
    #[error("vdi header is malformed: {0}")]
    MalformedHeader(String),
    #[error(
        "vdi block map entry {index} names block {entry}, beyond the {blocks} blocks the image has"
    )]
    BadBlock { index: u64, entry: u32, blocks: u32 },
}

impl VdiError {
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            VdiError::UnsupportedVersion(_) | VdiError::ImageType(_) => {
                DecodeErrorKind::Unsupported
            }
            _ => DecodeErrorKind::InvalidImage,
        }
    }
}
