//! `cdictl`: the user's command line. Raw arguments are validated into a request, then handed to
//! `cdi_datapath::import` (import) or the resumable upload client (upload, image-upload); this
//! file only parses, dispatches and picks the exit code.
#![forbid(unsafe_code)]

mod args;
mod exit;
mod imageupload;
mod report;
mod upload;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    cdi_logging::init("CDI_LOG", "warn");
    // Local files are then read through memory mappings, safely if one is cut under us.
    if let Err(e) = cdi_datapath::install_truncation_guard() {
        tracing::debug!(error = %e, "No SIGBUS guard: local files are read into buffers.");
    }
    let usage = |e: anyhow::Error| {
        eprintln!("cdictl: {e:#}");
        ExitCode::from(exit::USAGE)
    };
    match cli.command {
        args::Command::Import(a) => match a.into_request() {
            Ok(request) => report::run_import(request),
            Err(e) => usage(e),
        },
        args::Command::Upload(a) => match a.into_request() {
            Ok(request) => upload::run_upload(request),
            Err(e) => usage(e),
        },
        args::Command::ImageUpload(a) => match a.into_request() {
            Ok(request) => imageupload::run_image_upload(request),
            Err(e) => usage(e),
        },
    }
}
