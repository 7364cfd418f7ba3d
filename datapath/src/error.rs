//! The data path's error type, and the small kind that decides retry versus fail.

use std::io;

use cdi_formats::clonestream::CloneStreamError;
use cdi_formats::decoder::{DecodeError, DecodeErrorKind};
use cdi_formats::qcow2::Qcow2Error;

/// What class of failure an import hit. Drives exit codes, retries and (later) DataVolume
/// condition reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The image is malformed or lies about itself.
    InvalidImage,
    /// A real image in a format or with a feature we do not handle.
    Unsupported,
    /// The image does not fit the target.
    TooLarge,
    ChecksumMismatch,
    /// The target ran out of space or quota.
    NoSpace,
    /// Reading the source failed in a way a retry may fix.
    Network,
    /// The source does not exist.
    NotFound,
    /// The source refused our credentials or TLS could not be verified.
    Auth,
    /// The target or a local file failed.
    Io,
    /// The request itself is wrong (bad checksum syntax, bad option).
    Config,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid qcow2 image: {0}")]
    Qcow2(#[from] Qcow2Error),
    /// An image format we recognise and refuse; `message` says what to do instead.
    #[error("{message}")]
    UnsupportedFormat {
        format: &'static str,
        message: &'static str,
    },
    /// A vmdk, vhd, vhdx, vdi or OVA image refused by its decoder (the message names the
    /// format).
    #[error("{0}")]
    Image(#[source] DecodeError),
    #[error("the {layer} stream is corrupt: {source}")]
    Decompress {
        layer: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("more than {0} nested compression layers; refusing to unpack further")]
    TooManyLayers(usize),
    #[error(
        "the image needs {needed} bytes but the target holds only {capacity}; a larger volume is \
         required"
    )]
    TooLarge { needed: u64, capacity: u64 },
    #[error(
        "checksum mismatch: expected {algorithm}:{expected}, the source's bytes hash to {actual}"
    )]
    ChecksumMismatch {
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error(
        "the bytes received are not what the source says it holds: {origin} is {algorithm}:{expected}, the bytes received hash to {actual}; they were damaged on the way or where they are stored"
    )]
    SourceDigestMismatch {
        origin: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error("invalid checksum {0:?}: use ALGORITHM:HEX with md5, sha1, sha256 or sha512")]
    BadChecksumSpec(String),
    #[error("the {what} is not qcow2 but --format qcow2 was given (it looks like {found})")]
    FormatMismatch {
        what: &'static str,
        found: &'static str,
    },
    #[error("reading the source failed: {0}")]
    Source(#[source] io::Error),
    #[error("the source {0} was not found")]
    SourceNotFound(String),
    #[error(
        "the source file {0} shrank while it was being imported; make sure nothing writes to it during an import, then retry"
    )]
    SourceShrank(String),
    #[error(
        "the source file {0} was modified while it was being imported; make sure nothing writes to it during an import, then retry"
    )]
    SourceChanged(String),
    #[error(
        "the clone source {0} changed while it was being cloned; stop whatever writes to it (a \
         running VM?) and clone again"
    )]
    CloneSourceChanged(String),
    #[error("{image}: {message}")]
    Registry {
        image: String,
        message: String,
        kind: ErrorKind,
    },
    #[error("HTTP request to {url} failed: {message}")]
    Http {
        url: String,
        message: String,
        kind: ErrorKind,
    },
    #[error("the source stream ended early, before the image was complete")]
    SourceTruncated,
    #[error("{op} {path}: {source}")]
    Target {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("no space left on the target while writing {path}: free space or use a larger volume")]
    NoSpace { path: String },
    #[error("refusing the archive: {0}")]
    Archive(#[from] crate::archive::ArchiveError),
    #[error("{0}")]
    Config(String),
    #[error("the import was cancelled")]
    Cancelled,
}

impl From<DecodeError> for Error {
    /// qcow2's errors keep their own variant; a closed output means the writer stopped, whose
    /// own error explains why; a stash failure is an I/O error.
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Qcow2(e) => Error::Qcow2(e),
            DecodeError::Stash(io) => Error::Source(io),
            DecodeError::Closed => Error::Cancelled,
            e => Error::Image(e),
        }
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Qcow2(e) => match e {
                Qcow2Error::BackingFile(_)
                | Qcow2Error::ExternalDataFile
                | Qcow2Error::Encrypted(_)
                | Qcow2Error::UnsupportedVersion(_)
                | Qcow2Error::UnknownIncompatibleFeatures { .. }
                | Qcow2Error::UnknownCompressionType(_) => ErrorKind::Unsupported,
                Qcow2Error::MetadataBudget { .. } => ErrorKind::Config,
                _ => ErrorKind::InvalidImage,
            },
            Error::UnsupportedFormat { .. } => ErrorKind::Unsupported,
            Error::Image(DecodeError::CloneStream(CloneStreamError::DigestMismatch { .. })) => {
                ErrorKind::ChecksumMismatch
            }
            Error::Image(e) => match e.kind() {
                DecodeErrorKind::InvalidImage => ErrorKind::InvalidImage,
                DecodeErrorKind::Unsupported => ErrorKind::Unsupported,
                DecodeErrorKind::Budget => ErrorKind::Config,
                DecodeErrorKind::Io | DecodeErrorKind::Closed => ErrorKind::Io,
            },
            Error::Decompress { .. } | Error::TooManyLayers(_) | Error::FormatMismatch { .. } => {
                ErrorKind::InvalidImage
            }
            Error::SourceTruncated => ErrorKind::Network,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::ChecksumMismatch { .. } | Error::SourceDigestMismatch { .. } => {
                ErrorKind::ChecksumMismatch
            }
            Error::BadChecksumSpec(_) | Error::Config(_) => ErrorKind::Config,
            Error::Source(_)
            | Error::SourceShrank(_)
            | Error::SourceChanged(_)
            | Error::CloneSourceChanged(_) => ErrorKind::Io,
            Error::SourceNotFound(_) => ErrorKind::NotFound,
            Error::Http { kind, .. } | Error::Registry { kind, .. } => *kind,
            Error::Target { .. } | Error::Cancelled => ErrorKind::Io,
            Error::Archive(_) => ErrorKind::InvalidImage,
            Error::NoSpace { .. } => ErrorKind::NoSpace,
        }
    }

    /// Maps a target write error, recognising out-of-space conditions.
    pub fn target(op: &'static str, path: &std::path::Path, source: io::Error) -> Error {
        let enospc = source.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
            || source.raw_os_error() == Some(rustix::io::Errno::DQUOT.raw_os_error());
        if enospc {
            Error::NoSpace {
                path: path.display().to_string(),
            }
        } else {
            Error::Target {
                op,
                path: path.display().to_string(),
                source,
            }
        }
    }
}
