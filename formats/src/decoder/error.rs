//! The error every decoder returns: one variant per format (each format's own enum) plus the
//! layout problems the shared router finds, and a small kind that decides how callers react.

use std::io;

use crate::clonestream::CloneStreamError;
use crate::ova::OvaError;
use crate::qcow2::Qcow2Error;
use crate::vdi::VdiError;
use crate::vhd::VhdError;
use crate::vhdx::VhdxError;
use crate::vmdk::VmdkError;

/// What class of problem stopped a decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The image is malformed, truncated or lies about itself.
    InvalidImage,
    /// A real image using a variant or feature we refuse (parents, other files, logs).
    Unsupported,
    /// The image's bookkeeping needs more memory than the budget allows.
    Budget,
    /// Keeping bytes for later failed (the spill file, a re-read of the source).
    Io,
    /// The consumer of the decoded image stopped; its own error says why.
    Closed,
}

/// Layout problems the shared router finds, whatever the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "{format} {what} at offset {offset:#x} ({len} bytes) lies beyond the end of the image \
         ({image_len} bytes)"
    )]
    BeyondEnd {
        format: &'static str,
        what: &'static str,
        offset: u64,
        len: u64,
        image_len: u64,
    },
    #[error("{format} {what} at offset {offset:#x} overlaps another structure of the image")]
    Overlap {
        format: &'static str,
        what: &'static str,
        offset: u64,
    },
    #[error(
        "the {format} stream ended at byte {len} but the image refers to data at {needed:#x}: \
         the download is truncated or the image is damaged"
    )]
    Truncated {
        format: &'static str,
        needed: u64,
        len: u64,
    },
    #[error(
        "{format} {what} at offset {offset:#x} is referenced after its bytes went by and were \
         released; this layout needs random access (import from a local file)"
    )]
    Released {
        format: &'static str,
        what: &'static str,
        offset: u64,
    },
    #[error(
        "{format} image metadata needs more than the memory budget of {budget} bytes; raise the \
         memory limit"
    )]
    MetadataBudget { format: &'static str, budget: usize },
}

/// Why a decoder stopped.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Qcow2(#[from] Qcow2Error),
    #[error(transparent)]
    Vmdk(#[from] VmdkError),
    #[error(transparent)]
    Vhd(#[from] VhdError),
    #[error(transparent)]
    Vhdx(#[from] VhdxError),
    #[error(transparent)]
    Vdi(#[from] VdiError),
    #[error(transparent)]
    Ova(#[from] OvaError),
    #[error(transparent)]
    CloneStream(#[from] CloneStreamError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("keeping not-yet-mapped bytes failed: {0}")]
    Stash(#[source] io::Error),
    #[error("the decoded image could not be delivered")]
    Closed,
}

impl DecodeError {
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            DecodeError::Qcow2(e) => match e {
                Qcow2Error::BackingFile(_)
                | Qcow2Error::ExternalDataFile
                | Qcow2Error::Encrypted(_)
                | Qcow2Error::UnsupportedVersion(_)
                | Qcow2Error::UnknownIncompatibleFeatures { .. }
                | Qcow2Error::UnknownCompressionType(_) => DecodeErrorKind::Unsupported,
                Qcow2Error::MetadataBudget { .. } => DecodeErrorKind::Budget,
                _ => DecodeErrorKind::InvalidImage,
            },
            DecodeError::Vmdk(e) => e.kind(),
            DecodeError::Vhd(e) => e.kind(),
            DecodeError::Vhdx(e) => e.kind(),
            DecodeError::Vdi(e) => e.kind(),
            DecodeError::Ova(e) => e.kind(),
            DecodeError::CloneStream(e) => e.kind(),
            DecodeError::Layout(LayoutError::MetadataBudget { .. }) => DecodeErrorKind::Budget,
            DecodeError::Layout(_) => DecodeErrorKind::InvalidImage,
            DecodeError::Stash(_) => DecodeErrorKind::Io,
            DecodeError::Closed => DecodeErrorKind::Closed,
        }
    }
}

/// The consumer of decoded output stopped taking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputClosed;

impl From<OutputClosed> for DecodeError {
    fn from(_: OutputClosed) -> Self {
        DecodeError::Closed
    }
}
