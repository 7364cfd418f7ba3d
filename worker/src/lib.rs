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

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}
