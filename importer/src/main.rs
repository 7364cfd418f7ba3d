//! `cdi-importer`: what a DataVolume's importer pod runs. Reads CDI's environment contract,
//! imports with `cdi-datapath`, serves progress on `:8443/metrics`, and ends with CDI's
//! termination message (plus a machine-readable reason) and exit code.
#![forbid(unsafe_code)]

mod config;
mod run;

use std::process::ExitCode;

use cdi_worker::{Outcome, Paths};

fn main() -> ExitCode {
    cdi_worker::init_logging();
    let env = |name: &str| std::env::var(name).ok();
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let paths = Paths::from_env(&env);
    let outcome = match config::Config::from_env(&env, &vars, &paths) {
        Ok(cfg) => run::run(&cfg, &paths),
        Err(e) => Outcome::failure_text(
            format!("Unable to process data: {e}"),
            "InvalidConfiguration",
            true,
        ),
    };
    outcome.finish(&paths.termination_log)
}
