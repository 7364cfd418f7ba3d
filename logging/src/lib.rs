//! How every cdi-rs binary logs to stderr. `CDI_LOG_FORMAT` picks the format: `text` (the
//! default; ANSI colour only when stderr is a terminal and `NO_COLOR` is unset or empty) or
//! `json` (one object per line, as cluster log pipelines expect). The filter comes from the
//! binary's own variable (`RUST_LOG` for the servers, `CDI_LOG` for `cdictl`).
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The variable that picks the log format.
pub const FORMAT_VAR: &str = "CDI_LOG_FORMAT";

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// The format `CDI_LOG_FORMAT` names (unset or empty: text).
    pub fn parse(value: Option<&str>) -> Result<Format, String> {
        match value.map(str::trim).map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("text") => Ok(Format::Text),
            Some("json") => Ok(Format::Json),
            Some(other) => Err(format!(
                "{FORMAT_VAR}={other:?} is not a log format: use text or json"
            )),
        }
    }
}

/// Whether text lines get ANSI colour: only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
pub fn colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Installs the process's logger on stderr: filtered by the variable `filter_var` (or
/// `default_filter` when it is unset or invalid), in the format `CDI_LOG_FORMAT` names. An
/// unknown format is reported on stderr and text is used, so a typo never silences the logs.
pub fn init(filter_var: &str, default_filter: &str) {
    let filter =
        EnvFilter::try_from_env(filter_var).unwrap_or_else(|_| EnvFilter::new(default_filter));
    let format = std::env::var(FORMAT_VAR).ok();
    let format = Format::parse(format.as_deref()).unwrap_or_else(|e| {
        eprintln!("{e}; logging as text");
        Format::Text
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        Format::Json => builder
            .json()
            .with_current_span(false)
            .flatten_event(true)
            .init(),
        Format::Text => builder
            .with_ansi(colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_named_text_or_json() {
        assert_eq!(Format::parse(None), Ok(Format::Text));
        assert_eq!(Format::parse(Some("")), Ok(Format::Text));
        assert_eq!(Format::parse(Some("text")), Ok(Format::Text));
        assert_eq!(Format::parse(Some(" JSON ")), Ok(Format::Json));
        let e = Format::parse(Some("logfmt")).expect_err("unknown");
        assert!(
            e.contains("CDI_LOG_FORMAT") && e.contains("text or json"),
            "{e}"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(
            colour(true, Some(OsStr::new(""))),
            "an empty NO_COLOR does not count"
        );
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
        assert!(!colour(false, Some(OsStr::new(""))));
    }
}
