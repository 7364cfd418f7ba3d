//! `cdi-uploadserver`: reads CDI's upload pod environment and serves until one upload is in.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use cdi_uploadserver::config::Config;
use cdi_worker::{Outcome, Paths};

fn main() -> ExitCode {
    cdi_worker::init_logging();
    let env = |name: &str| std::env::var(name).ok();
    let paths = Paths::from_env(&env);
    let outcome = match Config::from_env(&env, &paths) {
        Ok(cfg) => match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(cdi_uploadserver::run(cfg)),
            Err(e) => Outcome::failure_text(format!("Unable to start: {e}"), "IOError", false),
        },
        Err(e) => Outcome::failure_text(
            format!("Unable to start the upload server: {e}"),
            "InvalidConfiguration",
            true,
        ),
    };
    outcome.finish(&paths.termination_log)
}
