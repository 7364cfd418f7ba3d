//! The sha256 of a written image's content, read back from the target: proves what landed on
//! disk, for comparing clones, uploads and imports.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::Error;

/// Hashes the first `len` bytes of `path` (an image file or a block device).
pub fn image_sha256(path: &Path, len: u64) -> Result<String, Error> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::target("opening for verification", path, e))?;
    let mut reader = file.take(len);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut total = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Error::target("reading back", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    if total != len {
        return Err(Error::target(
            "reading back",
            path,
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{total} of {len} bytes"),
            ),
        ));
    }
    Ok(hex::encode(hasher.finalize()))
}
