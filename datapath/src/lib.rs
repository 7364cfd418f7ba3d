//! The byte pipeline every cdi-rs worker uses. No Kubernetes here: callers map their inputs
//! (env vars, CLI flags, CRDs) into an [`ImportSpec`], a [`source::Source`] and a
//! [`sink::Sink`], and call [`import`].
//!
//! ```text
//!  Source ──► [checksum] ──► decode: gzip | xz | zstd | bzip2 (repeated) ──► raw | qcow2
//!                                                                              │
//!                          Sink (file: sparse + rename; block: punch/write) ◄──┘ writer (holes)
//! ```

pub mod archive;
mod buffer;
pub mod checksum;
pub mod clone;
pub mod decode;
pub mod error;
pub mod pipeline;
pub mod progress;
pub mod sink;
pub mod source;
pub mod verify;

pub use checksum::{Algorithm, Checksum, PendingChecksum};
pub use decode::{DecodeReport, FormatChoice};
pub use error::{Error, ErrorKind};
pub use pipeline::{
    DEFAULT_MEMORY_LIMIT, ExtractReport, ImportFailure, ImportReport, ImportSpec, extract, import,
};
pub use progress::{Progress, ProgressSnapshot};
pub use source::install_truncation_guard;
