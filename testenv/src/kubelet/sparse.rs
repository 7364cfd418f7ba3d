//! Sparse copies of volumes, as a copy-on-write storage backend makes them: only the data
//! extents of each file are copied (found with `SEEK_DATA`/`SEEK_HOLE`), so holes stay holes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::SeekFrom;

/// Copy buffer: big enough for throughput, small enough to keep memory flat.
const CHUNK: usize = 1 << 20;

/// Copies the volume at `from` to `to` (a directory tree, or one file for a Block volume) and,
/// for a Block volume, grows the copy (sparsely) to `size` bytes when that is larger.
pub fn copy_volume(from: &Path, to: &Path, block: bool, size: u64) -> io::Result<()> {
    remove_volume(to)?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if block {
        copy_file(from, to)?;
        grow(to, size)
    } else {
        copy_tree(from, to)
    }
}

/// Grows the file at `path` to `size` bytes (a hole at the end); never shrinks it.
pub fn grow(path: &Path, size: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    if file.metadata()?.len() < size {
        file.set_len(size)?;
    }
    Ok(())
}

/// Removes a volume (directory tree or file) if it exists.
pub fn remove_volume(path: &Path) -> io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Copies a directory tree: directories and files with their permissions, symlinks as links.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::metadata(from)?.permissions())?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if kind.is_file() {
            copy_file(&source, &target)?;
        }
        // Sockets, fifos and devices are not volume content a clone carries.
    }
    Ok(())
}

/// Copies one file's data extents into a new file of the same length and permissions.
pub fn copy_file(from: &Path, to: &Path) -> io::Result<()> {
    let source = File::open(from)?;
    let meta = source.metadata()?;
    let target = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(to)?;
    target.set_len(meta.len())?;
    target.set_permissions(meta.permissions())?;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0;
    while pos < meta.len() {
        let start = match rustix::fs::seek(&source, SeekFrom::Data(pos)) {
            Ok(start) => start,
            // No data past `pos`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let end = rustix::fs::seek(&source, SeekFrom::Hole(start))?.min(meta.len());
        let mut at = start;
        while at < end {
            let want = usize::try_from(end - at).unwrap_or(CHUNK).min(CHUNK);
            let n = source.read_at(&mut buf[..want], at)?;
            if n == 0 {
                break; // the file shrank under us
            }
            target.write_all_at(&buf[..n], at)?;
            at += n as u64;
        }
        pos = end;
    }
    target.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Bytes the file really occupies on disk.
    fn allocated(path: &Path) -> u64 {
        std::fs::metadata(path).expect("metadata").blocks() * 512
    }

    fn sparse_file(path: &Path) {
        let f = File::create(path).expect("create");
        f.set_len(64 << 20).expect("size");
        f.write_all_at(b"head", 0).expect("write");
        f.write_all_at(&[7u8; 8192], 32 << 20).expect("write");
        f.write_all_at(b"tail", (64 << 20) - 4).expect("write");
    }

    #[test]
    fn a_file_copy_has_the_same_bytes_and_keeps_its_holes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (from, to) = (dir.path().join("a"), dir.path().join("b"));
        sparse_file(&from);
        copy_file(&from, &to).expect("copy");
        assert_eq!(std::fs::read(&from).ok(), std::fs::read(&to).ok());
        assert!(
            allocated(&to) <= allocated(&from) + (1 << 20),
            "copy allocates {} bytes, source {}",
            allocated(&to),
            allocated(&from)
        );
        assert!(
            allocated(&to) < 4 << 20,
            "{} bytes allocated",
            allocated(&to)
        );
    }

    #[test]
    fn a_block_volume_copy_grows_sparsely_and_a_tree_copy_keeps_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let from = dir.path().join("vol.img");
        sparse_file(&from);
        let to = dir.path().join("copy.img");
        copy_volume(&from, &to, true, 128 << 20).expect("copy");
        assert_eq!(std::fs::metadata(&to).expect("meta").len(), 128 << 20);
        assert!(allocated(&to) < 4 << 20);
        let bytes = std::fs::read(&to).expect("read");
        assert_eq!(&bytes[..4], b"head");
        assert_eq!(&bytes[(64 << 20) - 4..64 << 20], b"tail");
        assert!(bytes[64 << 20..].iter().all(|b| *b == 0));

        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
        sparse_file(&tree.join("sub/disk.img"));
        std::os::unix::fs::symlink("sub/disk.img", tree.join("link")).expect("symlink");
        let copy = dir.path().join("tree-copy");
        copy_volume(&tree, &copy, false, 0).expect("copy tree");
        assert_eq!(
            std::fs::read_link(copy.join("link")).expect("link"),
            Path::new("sub/disk.img")
        );
        assert_eq!(
            std::fs::read(tree.join("sub/disk.img")).ok(),
            std::fs::read(copy.join("sub/disk.img")).ok()
        );
        assert!(allocated(&copy.join("sub/disk.img")) < 4 << 20);
    }
}
