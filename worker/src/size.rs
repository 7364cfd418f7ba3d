//! CDI's size arithmetic (filesystem overhead), and how much space the target really has.

use std::path::Path;

pub use cdi_quantity::{parse_bytes as parse_quantity, usable_space};

/// Free bytes on the filesystem holding `dir`.
pub fn filesystem_available(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail * st.f_frsize)
}

/// Size of a block device (or a regular file standing in for one).
pub fn device_size(path: &Path) -> std::io::Result<u64> {
    use std::io::Seek;
    std::fs::File::open(path)?.seek(std::io::SeekFrom::End(0))
}
