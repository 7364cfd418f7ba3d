//! The whole file's digest, kept equal to the digest of exactly the bytes the server has
//! confirmed, whatever offsets the connection broke at.
//!
//! Bytes are hashed only once the server confirms them, in file order: from the chunk still
//! buffered for sending when it covers them, otherwise read back from the file. If the server
//! ever confirms less than was hashed (it lost bytes), the digest is rebuilt from the file's
//! start. So the digest never includes a byte the server did not take, nor misses one.

use std::fs::File;
use std::os::unix::fs::FileExt;

use cdi_datapath::checksum::Hasher;
use cdi_datapath::{Algorithm, Checksum};

/// How much of the file is read back at a time when no buffered chunk covers it.
const READ_BACK: usize = 1 << 20;

/// A digest of `file[0..upto]`.
#[derive(Debug)]
pub struct ConfirmedHash {
    algorithm: Algorithm,
    hasher: Hasher,
    upto: u64,
    /// Times the digest was rebuilt from the start.
    rebuilds: u32,
}

/// A chunk read from the file and not yet confirmed: its offset and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Buffered<'a> {
    pub offset: u64,
    pub data: &'a [u8],
}

impl ConfirmedHash {
    pub fn new(algorithm: Algorithm) -> Self {
        ConfirmedHash {
            algorithm,
            hasher: Hasher::new(algorithm),
            upto: 0,
            rebuilds: 0,
        }
    }

    /// Bytes hashed so far: the file's first `upto` bytes.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    pub fn rebuilds(&self) -> u32 {
        self.rebuilds
    }

    /// Forgets everything: a new upload starts at 0.
    pub fn restart(&mut self) {
        self.hasher = Hasher::new(self.algorithm);
        self.upto = 0;
    }

    /// Makes the digest cover exactly `file[0..confirmed]`.
    pub fn advance_to(
        &mut self,
        confirmed: u64,
        buffered: Option<Buffered<'_>>,
        file: &File,
    ) -> std::io::Result<()> {
        if confirmed < self.upto {
            self.restart();
            self.rebuilds += 1;
        }
        let mut scratch = Vec::new();
        while self.upto < confirmed {
            if let Some(b) = buffered {
                let end = b.offset + b.data.len() as u64;
                if b.offset <= self.upto && self.upto < end {
                    let from = (self.upto - b.offset) as usize;
                    let to = (confirmed.min(end) - b.offset) as usize;
                    self.hasher.update(&b.data[from..to]);
                    self.upto = b.offset + to as u64;
                    continue;
                }
            }
            let want = (confirmed - self.upto).min(READ_BACK as u64) as usize;
            scratch.resize(want, 0);
            file.read_exact_at(&mut scratch, self.upto)?;
            self.hasher.update(&scratch);
            self.upto += want as u64;
        }
        Ok(())
    }

    /// A copy of the running state and what it covers, to hash bytes on the way out with.
    pub fn fork(&self) -> (Hasher, u64) {
        (self.hasher.clone(), self.upto)
    }

    /// Takes a forked state that now covers `file[0..upto]`: the server confirmed every byte
    /// it was advanced by.
    pub fn adopt_fork(&mut self, hasher: Hasher, upto: u64) {
        self.hasher = hasher;
        self.upto = upto;
    }

    /// The digest of what is hashed so far, leaving the running state as it is.
    pub fn digest(&self) -> Checksum {
        Checksum {
            algorithm: self.algorithm,
            hex: self.hasher.clone().finish_hex(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file_with(data: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(data).expect("write");
        let handle = f.reopen().expect("reopen");
        (f, handle)
    }

    fn whole(data: &[u8]) -> String {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h.finish_hex()
    }

    /// A chunked upload whose server confirms `confirms[i]` after chunk `i` (all of it, part of
    /// it, or less than before) ends with the whole file's digest.
    #[test]
    fn any_sequence_of_confirmed_offsets_gives_the_whole_files_digest() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let (_keep, file) = file_with(&data);
        let chunk = 700_000u64;
        let cases: [&[u64]; 4] = [
            // Every chunk taken whole.
            &[700_000, 1_400_000, 2_100_000, 2_800_000, 3_000_000],
            // Cuts inside chunks: the server keeps what arrived.
            &[
                123, 700_123, 900_000, 1_599_999, 2_299_999, 2_999_999, 3_000_000,
            ],
            // A chunk refused, then taken.
            &[700_000, 700_000, 1_400_000, 2_100_000, 2_800_000, 3_000_000],
            // The server lost bytes (it says less than before).
            &[
                700_000, 1_400_000, 500_000, 1_200_000, 1_900_000, 2_600_000, 3_000_000,
            ],
        ];
        for confirms in cases {
            let mut hash = ConfirmedHash::new(Algorithm::Sha256);
            let mut offset = 0u64;
            for &next in confirms {
                let end = (offset + chunk).min(data.len() as u64);
                let buffered = Buffered {
                    offset,
                    data: &data[offset as usize..end as usize],
                };
                hash.advance_to(next, Some(buffered), &file).expect("hash");
                assert_eq!(hash.upto(), next);
                offset = next;
            }
            assert_eq!(hash.digest().hex, whole(&data), "{confirms:?}");
        }
    }

    #[test]
    fn a_resumed_upload_hashes_the_confirmed_prefix_from_the_file() {
        let data = vec![42u8; 2_500_000];
        let (_keep, file) = file_with(&data);
        let mut hash = ConfirmedHash::new(Algorithm::Sha256);
        hash.advance_to(2_000_000, None, &file).expect("prefix");
        let rest = Buffered {
            offset: 2_000_000,
            data: &data[2_000_000..],
        };
        hash.advance_to(2_500_000, Some(rest), &file).expect("rest");
        assert_eq!(hash.digest().hex, whole(&data));
        assert_eq!(hash.rebuilds(), 0);
    }
}
