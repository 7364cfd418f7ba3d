//! `cdictl`: the user's command line. Raw arguments are validated into an import request, then
//! handed to `cdi_datapath::import`; this file only parses, reports and picks the exit code.

mod args;
mod exit;
mod report;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CDI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        args::Command::Import(a) => match a.into_request() {
            Ok(request) => report::run_import(request),
            Err(e) => {
                eprintln!("cdictl: {e:#}");
                ExitCode::from(exit::USAGE)
            }
        },
    }
}
