//! Archive content (`contentType: archive`): a tar stream unpacked into a directory, refusing
//! every entry that could write outside it. Entries are unpacked into a hidden staging
//! directory first and moved into place only after the whole archive (and its checksum) is good,
//! so a failed import leaves nothing behind.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::error::Error;

/// Why an archive entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive entry {0:?} has an absolute path")]
    AbsolutePath(String),
    #[error("archive entry {0:?} climbs out of the target with '..'")]
    ParentDir(String),
    #[error("archive link {name:?} points outside the target ({target:?})")]
    LinkEscapes { name: String, target: String },
    #[error(
        "archive entry {name:?} is a {kind}, which is not allowed (only files, directories and links)"
    )]
    ForbiddenType { name: String, kind: &'static str },
    #[error("archive entry {0:?} goes through a symbolic link")]
    ThroughSymlink(String),
}

/// Name of the staging directory inside the target.
pub const STAGING: &str = ".cdi-archive-partial";

/// Unpacks `input` (an uncompressed tar stream) into `staging`; returns the bytes unpacked.
pub(crate) fn unpack(input: impl Read, staging: &Path) -> Result<u64, Error> {
    let io = |e: std::io::Error| Error::target("unpacking the archive into", staging, e);
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(false); // mode & 0o777: no set-uid bits
    archive.set_preserve_ownerships(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut total = 0u64;
    for entry in archive.entries().map_err(|e| Error::Decompress {
        layer: "tar",
        source: e,
    })? {
        let mut entry = entry.map_err(|e| Error::Decompress {
            layer: "tar",
            source: e,
        })?;
        let name = entry
            .path()
            .map_err(|e| Error::Decompress {
                layer: "tar",
                source: e,
            })?
            .into_owned();
        let shown = name.display().to_string();
        let relative = check_path(&name).map_err(Error::Archive)?;
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            EntryType::Symlink | EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| Error::Decompress {
                        layer: "tar",
                        source: e,
                    })?
                    .ok_or_else(|| {
                        Error::Archive(ArchiveError::LinkEscapes {
                            name: shown.clone(),
                            target: String::new(),
                        })
                    })?
                    .into_owned();
                check_link(&relative, &target, kind == EntryType::Symlink)
                    .map_err(Error::Archive)?;
            }
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => continue,
            other => {
                let kind = match other {
                    EntryType::Char => "character device",
                    EntryType::Block => "block device",
                    EntryType::Fifo => "FIFO",
                    _ => "special entry",
                };
                return Err(Error::Archive(ArchiveError::ForbiddenType {
                    name: shown,
                    kind,
                }));
            }
        }
        // Never write through a symbolic link an earlier entry created.
        let mut at = staging.to_path_buf();
        for part in relative.parent().into_iter().flat_map(|p| p.components()) {
            at.push(part);
            if at
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                return Err(Error::Archive(ArchiveError::ThroughSymlink(shown)));
            }
        }
        total += entry.header().size().unwrap_or(0);
        entry.unpack_in(staging).map_err(io)?;
    }
    Ok(total)
}

/// Moves everything from `staging` into `dest` (its parent), then removes `staging`.
pub(crate) fn commit(staging: &Path, dest: &Path) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::target("moving unpacked files into", dest, e);
    for entry in std::fs::read_dir(staging).map_err(io)? {
        let entry = entry.map_err(io)?;
        let to = dest.join(entry.file_name());
        if to.symlink_metadata().is_ok_and(|m| m.is_dir())
            && !entry.path().symlink_metadata().map_err(io)?.is_dir()
        {
            std::fs::remove_dir_all(&to).map_err(io)?;
        }
        std::fs::rename(entry.path(), &to).map_err(io)?;
    }
    std::fs::remove_dir(staging).map_err(io)
}

fn check_path(name: &Path) -> Result<PathBuf, ArchiveError> {
    let shown = || name.display().to_string();
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err(ArchiveError::AbsolutePath(shown()));
            }
            Component::ParentDir => return Err(ArchiveError::ParentDir(shown())),
            Component::CurDir => {}
            Component::Normal(p) => out.push(p),
        }
    }
    Ok(out)
}

/// A link target must stay inside the target directory: symlinks are resolved relative to the
/// link's directory, hard links relative to the archive root.
fn check_link(link: &Path, target: &Path, symbolic: bool) -> Result<(), ArchiveError> {
    let escapes = || ArchiveError::LinkEscapes {
        name: link.display().to_string(),
        target: target.display().to_string(),
    };
    if target.is_absolute() {
        return Err(escapes());
    }
    let mut depth: Vec<&std::ffi::OsStr> = Vec::new();
    if symbolic {
        depth.extend(
            link.parent()
                .into_iter()
                .flat_map(|p| p.components())
                .map(|c| c.as_os_str()),
        );
    }
    for c in target.components() {
        match c {
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return Err(escapes());
                }
            }
            Component::Normal(p) => depth.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(escapes()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_refused_when_absolute_or_climbing() {
        assert!(matches!(
            check_path(Path::new("/etc/passwd")),
            Err(ArchiveError::AbsolutePath(_))
        ));
        assert!(matches!(
            check_path(Path::new("a/../../x")),
            Err(ArchiveError::ParentDir(_))
        ));
        assert_eq!(
            check_path(Path::new("./a/b")).expect("ok"),
            PathBuf::from("a/b")
        );
    }

    #[test]
    fn links_must_resolve_inside() {
        assert!(check_link(Path::new("a/b"), Path::new("../c"), true).is_ok());
        assert!(check_link(Path::new("a/b"), Path::new("../../c"), true).is_err());
        assert!(check_link(Path::new("b"), Path::new("/etc"), true).is_err());
        assert!(
            check_link(Path::new("a/b"), Path::new("../c"), false).is_err(),
            "hard links resolve from the root"
        );
        assert!(check_link(Path::new("a/b"), Path::new("a/c"), false).is_ok());
    }
}
