//! Reading a worker's environment contract: each invalid value is a [`ConfigError`] that names
//! its variable, and the variables every worker shares (sizes, overhead, booleans) are parsed
//! the same way everywhere.

use crate::size::parse_quantity;

/// A bad environment variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

/// A [`ConfigError`] for `var`.
pub fn bad(var: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var: var.to_string(),
        message: message.into(),
    }
}

/// One variable lookup; tests pass a map, binaries `std::env::var`.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The environment, with empty values read as unset (as upstream's pods often set `""`).
#[derive(Clone, Copy)]
pub struct Env<'a> {
    lookup: Lookup<'a>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env")
    }
}

impl<'a> Env<'a> {
    pub fn new(lookup: Lookup<'a>) -> Self {
        Env { lookup }
    }

    /// The variable's value, `None` when unset or blank.
    pub fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    /// A required variable.
    pub fn require(&self, var: &str, why: &str) -> Result<String, ConfigError> {
        self.get(var)
            .ok_or_else(|| bad(var, format!("is required {why}")))
    }

    /// A boolean (`true`/`false`, `1`/`0`, `yes`/`no`); `default` when unset.
    pub fn bool(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        let Some(v) = self.get(var) else {
            return Ok(default);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "t" | "yes" => Ok(true),
            "false" | "0" | "f" | "no" => Ok(false),
            other => Err(bad(var, format!("{other:?} is not true or false"))),
        }
    }

    /// A size in bytes or as a Kubernetes quantity (`10Gi`).
    pub fn size(&self, var: &str) -> Result<Option<u64>, ConfigError> {
        self.get(var)
            .map(|v| parse_quantity(&v).ok_or_else(|| bad(var, format!("{v:?} is not a size"))))
            .transpose()
    }

    /// `FILESYSTEM_OVERHEAD`: the fraction of a Filesystem volume reserved for the filesystem.
    pub fn filesystem_overhead(&self) -> Result<f64, ConfigError> {
        const VAR: &str = "FILESYSTEM_OVERHEAD";
        match self.get(VAR) {
            None => Ok(0.0),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|o| (0.0..1.0).contains(o))
                .ok_or_else(|| bad(VAR, format!("{v:?} is not a fraction between 0 and 1"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with<T>(vars: &[(&str, &str)], f: impl FnOnce(Env) -> T) -> T {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |n: &str| map.get(n).cloned();
        f(Env::new(&lookup))
    }

    #[test]
    fn blank_values_read_as_unset() {
        with(&[("A", "  ")], |env| {
            assert_eq!(env.get("A"), None);
            assert!(!env.bool("A", false).expect("default"));
            assert_eq!(env.require("A", "here").expect_err("blank").var, "A");
        });
    }

    #[test]
    fn shared_variables_parse_as_upstream_writes_them() {
        with(
            &[
                ("S", "1Gi"),
                ("B", "TRUE"),
                ("FILESYSTEM_OVERHEAD", "0.055"),
            ],
            |env| {
                assert_eq!(env.size("S").expect("size"), Some(1 << 30));
                assert!(env.bool("B", false).expect("bool"));
                assert_eq!(env.filesystem_overhead().expect("overhead"), 0.055);
            },
        );
    }

    #[test]
    fn invalid_values_name_their_variable() {
        with(
            &[("S", "10X"), ("B", "maybe"), ("FILESYSTEM_OVERHEAD", "1.5")],
            |env| {
                assert_eq!(env.size("S").expect_err("size").var, "S");
                assert_eq!(env.bool("B", true).expect_err("bool").var, "B");
                assert_eq!(
                    env.filesystem_overhead().expect_err("overhead").var,
                    "FILESYSTEM_OVERHEAD"
                );
            },
        );
    }
}
