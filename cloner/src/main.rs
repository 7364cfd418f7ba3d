//! `cdi-cloner`: what a host-assisted clone's source pod runs. Reads upstream's environment
//! contract, streams the source claim to the target's upload server, serves progress on
//! `:8443/metrics`, and ends with CDI's termination message ("Clone Complete") and exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use cdi_cloner::config::Config;
use cdi_worker::{Outcome, Paths};

fn main() -> ExitCode {
    cdi_worker::init_logging();
    let env = |name: &str| std::env::var(name).ok();
    let paths = Paths::from_env(&env);
    let outcome = match Config::from_env(&env, &paths) {
        Ok(cfg) => cdi_cloner::run(&cfg, &paths),
        Err(e) => Outcome::failure_text(
            format!("Unable to clone: {e}"),
            "InvalidConfiguration",
            true,
        ),
    };
    outcome.finish(&paths.termination_log)
}
