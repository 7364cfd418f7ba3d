//! `cdi-importer`: what a DataVolume's importer pod runs. Reads CDI's environment contract,
//! imports with `cdi-datapath`, serves progress on `:8443/metrics`, and ends with CDI's
//! termination message (plus a machine-readable reason) and exit code.

mod config;
mod metrics;
mod paths;
mod run;
mod size;
mod termination;

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let env = |name: &str| std::env::var(name).ok();
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let paths = paths::Paths::from_env(&env);
    let outcome = match config::Config::from_env(&env, &vars, &paths) {
        Ok(cfg) => run::run(&cfg, &paths),
        Err(e) => termination::Outcome::failure_text(
            format!("Unable to process data: {e}"),
            "InvalidConfiguration",
            true,
        ),
    };
    outcome.finish(&paths.termination_log)
}
