//! Every way a clone stream is refused, each with a message that says what was wrong.

use crate::decoder::DecodeErrorKind;

/// Why a clone stream cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloneStreamError {
    #[error(
        "not a cdi clone stream (bad magic): the cloner and the upload server must both be cdi-rs"
    )]
    BadMagic,
    #[error(
        "clone stream version {0} is not supported (only {1} is): use matching cloner and upload server images"
    )]
    UnsupportedVersion(u32, u32),
    #[error("clone stream header is malformed: {0}")]
    MalformedHeader(String),
    #[error("clone stream record at byte {at} has unknown kind {kind:#x}")]
    UnknownRecord { at: u64, kind: u32 },
    #[error("clone stream frame at byte {at} is {len} bytes long; frames are 1 to {max} bytes")]
    FrameLength { at: u64, len: u32, max: u32 },
    #[error(
        "clone stream frame at byte {at} covers [{offset:#x}, +{len}) which is not after the \
         previous frame's end ({previous_end:#x}): frames must be ascending and non-overlapping"
    )]
    Unordered {
        at: u64,
        offset: u64,
        len: u32,
        previous_end: u64,
    },
    #[error(
        "clone stream frame at byte {at} ends at {end:#x}, beyond the source's size of {size} bytes"
    )]
    BeyondDisk { at: u64, end: u64, size: u64 },
    #[error("clone stream carries more than {0} frames")]
    TooManyFrames(u64),
    #[error(
        "the clone stream's end record says {expected_frames} frames and {expected_bytes} data \
         bytes, but {frames} frames and {bytes} bytes arrived: the stream was cut or altered"
    )]
    CountMismatch {
        expected_frames: u64,
        expected_bytes: u64,
        frames: u64,
        bytes: u64,
    },
    #[error(
        "the clone stream's digest does not match its data (sender {expected}, received \
         {actual}): the source changed during the clone or the stream was corrupted; nothing \
         was committed, clone again"
    )]
    DigestMismatch { expected: String, actual: String },
    #[error("the clone stream ended after {at} bytes without its end record: the transfer was cut")]
    Truncated { at: u64 },
    #[error("the clone stream goes on after its end record (byte {at})")]
    TrailingBytes { at: u64 },
}

impl CloneStreamError {
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            CloneStreamError::UnsupportedVersion(..) => DecodeErrorKind::Unsupported,
            _ => DecodeErrorKind::InvalidImage,
        }
    }
}
