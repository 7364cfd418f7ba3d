//! What every cdi-rs worker pod (importer, upload server, cloner) shares around
//! `cdi-datapath`: CDI's mount paths, reading the environment contract, size arithmetic, the
//! target (file or block device, sized as upstream), the termination message and exit code, and
//! the progress metrics.
//!
//! ```text
//!  env ──► config (the binary's) ──► Source ──► TargetSpec::write_image | write_archive ──► Outcome
//!                                                       │                                 │
//!                                               Progress ──► metrics        termination message
//! ```
#![forbid(unsafe_code)]

pub mod env;
pub mod metrics;
pub mod paths;
pub mod size;
pub mod target;
pub mod termination;

pub use env::{ConfigError, Env};
pub use paths::Paths;
pub use target::{Destination, Failure, TargetSpec, Written};
pub use termination::Outcome;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), as text or JSON
/// (`CDI_LOG_FORMAT`, see `cdi_logging`).
pub fn init_logging() {
    cdi_logging::init("RUST_LOG", "info");
}
