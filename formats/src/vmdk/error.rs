//! Every way a vmdk image is refused, each with a message that says what was wrong.

use crate::decoder::DecodeErrorKind;

/// Why a vmdk image cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmdkError {
    #[error("vmdk header is truncated: need {needed} bytes, the image has {available}")]
    TruncatedHeader { needed: usize, available: usize },
    #[error("not a vmdk image (bad magic)")]
    BadMagic,
    #[error(
        "vmdk 'COWD' sparse extents (ESX vmfsSparse snapshots and old hosted formats) are not \
         supported: convert the disk with `qemu-img convert -O qcow2` first"
    )]
    Cowd,
    #[error("vmdk sparse extent version {0} is not supported (only versions 1 to 3 are)")]
    UnsupportedVersion(u32),
    #[error(
        "the vmdk header's end-of-line check failed: the file was transferred in text mode \
         (FTP ASCII) and is damaged"
    )]
    CorruptedNewlines,
    #[error("vmdk header is malformed: {0}")]
    MalformedHeader(String),
    #[error("vmdk compression algorithm {0} is unknown (0 = none, 1 = deflate)")]
    UnknownCompression(u16),
    #[error("this vmdk variant is not supported: {0}")]
    UnsupportedVariant(&'static str),
    #[error("the vmdk descriptor is malformed: {0}")]
    MalformedDescriptor(String),
    #[error(
        "the vmdk depends on a parent image ({link}); images that depend on another image \
         cannot be imported: flatten it first with `qemu-img convert -O qcow2 SRC DST`"
    )]
    ParentLink { link: String },
    #[error(
        "the vmdk descriptor ({create_type}) keeps the disk in other files ({files}); import \
         one self-contained image instead: the flat extent file itself as a raw disk, or the \
         output of `qemu-img convert -O qcow2 DESCRIPTOR DST`"
    )]
    OtherFiles { create_type: String, files: String },
    #[error(
        "the vmdk sparse extent has no descriptor: it is one extent of a disk split over \
         several files (twoGbMaxExtentSparse and the like); convert the whole disk with \
         `qemu-img convert -O qcow2 DESCRIPTOR DST` and import that"
    )]
    NoDescriptor,
    #[error(
        "vmdk create type {0:?} is not supported (monolithicSparse and streamOptimized are); \
         convert it with `qemu-img convert -O qcow2` first"
    )]
    UnsupportedCreateType(String),
    #[error(
        "the vmdk descriptor's extent covers {extent} sectors but the header's capacity is \
         {capacity}"
    )]
    ExtentSize { extent: u64, capacity: u64 },
    #[error("vmdk {what} at offset {offset:#x} lies outside the metadata area before the grains")]
    TableOutsideMetadata { what: &'static str, offset: u64 },
    #[error("vmdk grain marker at offset {offset:#x} is malformed: {reason}")]
    BadMarker { offset: u64, reason: String },
    #[error(
        "vmdk grain at offset {offset:#x} says it holds sector {lba} but the grain table puts \
         sector {expected} there"
    )]
    MarkerMismatch {
        offset: u64,
        lba: u64,
        expected: u64,
    },
    #[error(
        "vmdk grain for sector {lba} at offset {offset:#x} comes after the grain ending at \
         sector {previous_end}: grains must be in increasing order, each once"
    )]
    GrainOrder {
        offset: u64,
        lba: u64,
        previous_end: u64,
    },
    #[error(
        "the vmdk's grains do not match its grain tables ({seen} grains in the stream, {listed} \
         in the tables): the image is truncated or damaged"
    )]
    GrainsMismatch { seen: u64, listed: u64 },
    #[error(
        "compressed vmdk grain for guest offset {guest:#x} decodes to {got} bytes, expected \
         {want}"
    )]
    GrainLength { guest: u64, got: usize, want: usize },
    #[error("compressed vmdk grain for guest offset {guest:#x} is corrupt: {reason}")]
    GrainCorrupt { guest: u64, reason: String },
    #[error("the vmdk footer is malformed: {0}")]
    BadFooter(String),
}

impl VmdkError {
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            VmdkError::Cowd
            | VmdkError::UnsupportedVersion(_)
            | VmdkError::UnknownCompression(_)
            | VmdkError::UnsupportedVariant(_)
            | VmdkError::ParentLink { .. }
            | VmdkError::OtherFiles { .. }
            | VmdkError::NoDescriptor
            | VmdkError::UnsupportedCreateType(_) => DecodeErrorKind::Unsupported,
            _ => DecodeErrorKind::InvalidImage,
        }
    }
}
