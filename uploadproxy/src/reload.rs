//! Values built from files that are rebuilt when the files change: the serving certificate,
//! the client certificate and server CA bundle, the token public keys. Kubernetes updates a
//! mounted Secret or ConfigMap by swapping a symlink, so each file's modification time, length
//! and inode (through the symlinks) are compared, at most once per interval, when the value is
//! asked for. A rebuild that fails keeps the previous value (and is retried when the files
//! change again), so a half-written update never takes the proxy down.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

/// Builds the value from the files' contents, in the order of the paths.
pub type Loader<T> = Box<dyn Fn(&[Vec<u8>]) -> Result<T, String> + Send + Sync>;

/// A value, possibly rebuilt from its files when they change. Cloning shares it.
pub struct Reloadable<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Reloadable<T> {
    fn clone(&self) -> Self {
        Reloadable {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.source {
            Some(source) => f
                .debug_struct("Reloadable")
                .field("what", &source.what)
                .field("paths", &source.paths)
                .field("interval", &source.interval)
                .finish(),
            None => f.write_str("Reloadable(fixed)"),
        }
    }
}

struct Inner<T> {
    source: Option<Source<T>>,
    state: Mutex<State<T>>,
}

struct Source<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    interval: Duration,
    load: Loader<T>,
}

struct State<T> {
    value: Arc<T>,
    stamp: Vec<Stamp>,
    failed: Option<Vec<Stamp>>,
    checked: Instant,
}

/// What identifies one version of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// A file could not be read, or its contents could not be used, at start-up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading a file failed.
    #[error("reading the {what} from {path}: {source}")]
    Reading {
        /// What the files hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The contents are not usable.
    #[error("loading the {what} from {paths}: {message}")]
    Building {
        /// What the files hold.
        what: &'static str,
        /// The files, comma-separated.
        paths: String,
        /// What the loader said.
        message: String,
    },
}

impl<T> Reloadable<T> {
    /// A value that never changes (tests, or values given inline).
    pub fn fixed(value: T) -> Self {
        Reloadable {
            inner: Arc::new(Inner {
                source: None,
                state: Mutex::new(State {
                    value: Arc::new(value),
                    stamp: Vec::new(),
                    failed: None,
                    checked: Instant::now(),
                }),
            }),
        }
    }

    /// The value built by `load` from `paths` now, rebuilt when they change (checked at most
    /// once per `interval`). Fails if the files cannot be read or used now.
    pub fn from_files(
        what: &'static str,
        paths: Vec<PathBuf>,
        interval: Duration,
        load: Loader<T>,
    ) -> Result<Self, LoadError> {
        let stamp =
            stamps(&paths).map_err(|(path, source)| LoadError::Reading { what, path, source })?;
        let contents =
            read_all(&paths).map_err(|(path, source)| LoadError::Reading { what, path, source })?;
        let value = load(&contents).map_err(|message| LoadError::Building {
            what,
            paths: joined(&paths),
            message,
        })?;
        Ok(Reloadable {
            inner: Arc::new(Inner {
                source: Some(Source {
                    what,
                    paths,
                    interval,
                    load,
                }),
                state: Mutex::new(State {
                    value: Arc::new(value),
                    stamp,
                    failed: None,
                    checked: Instant::now(),
                }),
            }),
        })
    }

    /// The current value, rebuilt first if its files changed.
    pub fn current(&self) -> Arc<T> {
        let mut state = self.lock();
        if let Some(source) = &self.inner.source
            && state.checked.elapsed() >= source.interval
        {
            state.checked = Instant::now();
            reload(source, &mut state);
        }
        Arc::clone(&state.value)
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves a consistent state (the value is swapped whole).
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn reload<T>(source: &Source<T>, state: &mut State<T>) {
    let Ok(stamp) = stamps(&source.paths) else {
        return; // a file is missing mid-update: try again later
    };
    if stamp == state.stamp || state.failed.as_ref() == Some(&stamp) {
        return;
    }
    let built = read_all(&source.paths)
        .map_err(|(path, e)| format!("reading {}: {e}", path.display()))
        .and_then(|contents| (source.load)(&contents));
    match built {
        Ok(value) => {
            info!(what = source.what, paths = %joined(&source.paths), "Reloaded from changed files.");
            state.value = Arc::new(value);
            state.stamp = stamp;
            state.failed = None;
        }
        Err(message) => {
            warn!(what = source.what, paths = %joined(&source.paths), error = %message,
                "Changed files are not usable; keeping the previous version.");
            state.failed = Some(stamp);
        }
    }
}

fn stamps(paths: &[PathBuf]) -> Result<Vec<Stamp>, (PathBuf, std::io::Error)> {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).map_err(|e| (p.clone(), e))?;
            Ok(Stamp {
                modified: meta.modified().ok(),
                len: meta.len(),
                inode: meta.ino(),
            })
        })
        .collect()
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, (PathBuf, std::io::Error)> {
    paths
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| (p.clone(), e)))
        .collect()
}

fn joined(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| Path::display(p).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_loader() -> Loader<String> {
        Box::new(|contents: &[Vec<u8>]| {
            let text = String::from_utf8_lossy(&contents[0]).into_owned();
            if text.starts_with("bad") {
                Err("bad contents".into())
            } else {
                Ok(text)
            }
        })
    }

    #[test]
    fn changed_file_is_reloaded_and_a_bad_change_keeps_the_old_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("value");
        std::fs::write(&path, "one").expect("write");
        let value =
            Reloadable::from_files("value", vec![path.clone()], Duration::ZERO, text_loader())
                .expect("loads");
        assert_eq!(*value.current(), "one");

        // Replaced by rename, as the kubelet does: a new inode.
        let next = dir.path().join("next");
        std::fs::write(&next, "two!").expect("write");
        std::fs::rename(&next, &path).expect("rename");
        assert_eq!(*value.current(), "two!");

        std::fs::write(&next, "bad update").expect("write");
        std::fs::rename(&next, &path).expect("rename");
        assert_eq!(*value.current(), "two!", "the previous value is kept");

        std::fs::remove_file(&path).expect("remove");
        assert_eq!(*value.current(), "two!", "a missing file keeps it too");
    }

    #[test]
    fn unreadable_or_unusable_files_fail_at_start_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let err = Reloadable::from_files("value", vec![missing], Duration::ZERO, text_loader())
            .expect_err("missing file");
        assert!(matches!(err, LoadError::Reading { .. }), "{err}");

        let bad = dir.path().join("bad");
        std::fs::write(&bad, "bad").expect("write");
        let err = Reloadable::from_files("value", vec![bad], Duration::ZERO, text_loader())
            .expect_err("bad file");
        assert!(matches!(err, LoadError::Building { .. }), "{err}");
    }

    #[test]
    fn files_are_not_checked_again_within_the_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("value");
        std::fs::write(&path, "one").expect("write");
        let value = Reloadable::from_files(
            "value",
            vec![path.clone()],
            Duration::from_secs(3600),
            text_loader(),
        )
        .expect("loads");
        std::fs::write(&path, "changed").expect("write");
        assert_eq!(*value.current(), "one");
    }
}
