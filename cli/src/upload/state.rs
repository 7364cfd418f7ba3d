//! What lets a later `cdictl upload` of the same file to the same URL continue where an
//! interrupted one stopped: one small JSON file per (url, file) under
//! `$XDG_STATE_HOME/cdictl/uploads/` (else `~/.local/state/cdictl/uploads/`), written once the
//! upload is created and removed once it ends. It never holds a token.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The directory state files go in, from the environment (`None` when neither
/// `XDG_STATE_HOME` nor `HOME` is set).
pub fn default_dir(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = match env("XDG_STATE_HOME").filter(|v| Path::new(v).is_absolute()) {
        Some(xdg) => PathBuf::from(xdg),
        None => PathBuf::from(env("HOME").filter(|h| !h.is_empty())?).join(".local/state"),
    };
    Some(base.join("cdictl/uploads"))
}

/// The file an upload was started from, as it was then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
}

impl FileStamp {
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        let (secs, nanos) = match meta.modified().map(|t| t.duration_since(UNIX_EPOCH)) {
            Ok(Ok(d)) => (d.as_secs() as i64, d.subsec_nanos()),
            _ => (0, 0),
        };
        FileStamp {
            size: meta.len(),
            mtime_secs: secs,
            mtime_nanos: nanos,
        }
    }
}

/// One interrupted upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub url: String,
    pub file: PathBuf,
    #[serde(flatten)]
    pub stamp: FileStamp,
    /// The upload's absolute URL on the server.
    pub location: String,
    /// The whole-upload checksum the server was given at creation, if any.
    #[serde(default)]
    pub checksum: Option<String>,
}

/// The state file of one (url, file) pair.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// Keyed by the upload URL and the file's absolute path.
    pub fn new(dir: &Path, url: &str, file: &Path) -> StateFile {
        let mut h = Sha256::new();
        h.update(url.as_bytes());
        h.update([0u8]);
        h.update(file.as_os_str().as_encoded_bytes());
        let key = hex::encode(h.finalize());
        StateFile {
            path: dir.join(format!("{}.json", &key[..32])),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved upload, if there is a readable one.
    pub fn load(&self) -> Option<Saved> {
        let text = std::fs::read(&self.path).ok()?;
        match serde_json::from_slice(&text) {
            Ok(saved) => Some(saved),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "Ignoring an unreadable upload state file.");
                None
            }
        }
    }

    /// Writes `saved` (atomically: a reader sees the old or the new state, never half).
    pub fn save(&self, saved: &Saved) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }

    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "Could not remove the upload state file.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_follows_xdg_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_dir(env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")])),
            Some(PathBuf::from("/s/cdictl/uploads"))
        );
        assert_eq!(
            default_dir(env(&[("XDG_STATE_HOME", "relative"), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.local/state/cdictl/uploads"))
        );
        assert_eq!(default_dir(env(&[])), None);
    }

    #[test]
    fn saved_state_round_trips_and_is_keyed_by_url_and_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = StateFile::new(dir.path(), "https://proxy:8443", Path::new("/img/a.qcow2"));
        let b = StateFile::new(dir.path(), "https://other:8443", Path::new("/img/a.qcow2"));
        assert_ne!(a.path(), b.path());
        let saved = Saved {
            url: "https://proxy:8443".into(),
            file: "/img/a.qcow2".into(),
            stamp: FileStamp {
                size: 10,
                mtime_secs: 1_700_000_000,
                mtime_nanos: 5,
            },
            location: "https://proxy:8443/v1beta1/upload-tus/abc".into(),
            checksum: None,
        };
        a.save(&saved).expect("save");
        assert_eq!(a.load(), Some(saved));
        assert_eq!(b.load(), None);
        a.remove();
        assert_eq!(a.load(), None);
    }
}
