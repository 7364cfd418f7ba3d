//! Every way an OVA is refused, each with a message that says what was wrong.

use crate::decoder::DecodeErrorKind;

/// Why an OVA cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OvaError {
    #[error("the OVA's tar header at offset {offset:#x} is malformed: {reason}")]
    BadTarHeader { offset: u64, reason: String },
    #[error("the OVA's OVF descriptor is malformed: {0}")]
    MalformedOvf(String),
    #[error("the OVA's {what} is {bytes} bytes, over the limit of {limit}")]
    TooLarge {
        what: &'static str,
        bytes: u64,
        limit: u64,
    },
    #[error("the OVA's descriptor references no disk image")]
    NoDisk,
    #[error(
        "the OVA holds {count} disk images ({names}); a volume takes one disk: extract the one \
         you want (`tar -xf FILE.ova NAME`) and import it"
    )]
    SeveralDisks { count: usize, names: String },
    #[error("the OVA's descriptor references the disk {0:?} but the archive has no such file")]
    DiskNotFound(String),
    #[error("the OVA ends inside its entry {0:?}: the download is truncated")]
    Truncated(String),
}

impl OvaError {
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            OvaError::SeveralDisks { .. } => DecodeErrorKind::Unsupported,
            _ => DecodeErrorKind::InvalidImage,
        }
    }
}
