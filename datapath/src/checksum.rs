//! Checksums in CDI's `IMPORTER_CHECKSUM` syntax (`sha256:<hex>`), computed over the bytes as
//! received, before any decompression; and the digests a source vouches for itself (an object
//! store's MD5 or CRC, a registry blob's digest), checked the same way.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha256,
    Sha512,
    /// CRC-32 (ISO-HDLC), as S3 names `CRC32`: only ever a source's own digest.
    Crc32,
    /// CRC-32C (Castagnoli), as GCS and S3 report it: only ever a source's own digest.
    Crc32c,
    /// CRC-64/NVME, S3's default full-object checksum: only ever a source's own digest.
    Crc64Nvme,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Crc32 => "crc32",
            Algorithm::Crc32c => "crc32c",
            Algorithm::Crc64Nvme => "crc64nvme",
        }
    }

    /// Length of the digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Md5 => 16,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
        }
    }

    fn hex_len(self) -> usize {
        self.digest_len() * 2
    }
}

/// An expected digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    /// Lower-case hex.
    pub hex: String,
}

impl std::str::FromStr for Checksum {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self, Error> {
        let bad = || Error::BadChecksumSpec(spec.to_string());
        let (algo, hex) = spec.split_once(':').ok_or_else(bad)?;
        let algorithm = match algo.to_ascii_lowercase().as_str() {
            "md5" => Algorithm::Md5,
            "sha1" => Algorithm::Sha1,
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            // CDI's syntax takes these four only; CRCs are a source's own digests.
            _ => return Err(bad()),
        };
        let hex = hex.trim().to_ascii_lowercase();
        if hex.len() != algorithm.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Checksum { algorithm, hex })
    }
}

impl Checksum {
    /// A digest given as raw bytes (object stores send them base64-encoded), if they have the
    /// algorithm's length.
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Option<Checksum> {
        (bytes.len() == algorithm.digest_len()).then(|| Checksum {
            algorithm,
            hex: hex::encode(bytes),
        })
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// A running digest of one of the supported algorithms.
#[derive(Debug, Clone)]
pub enum Hasher {
    Md5(Md5),
    Sha1(Sha1),
    Sha256(Sha256),
    Sha512(Sha512),
    /// CRC-32, CRC-32C or CRC-64/NVME.
    Crc(Algorithm, crc_fast::Digest),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Md5 => Hasher::Md5(Md5::new()),
            Algorithm::Sha1 => Hasher::Sha1(Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
            Algorithm::Crc32 => crc(algorithm, crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Algorithm::Crc32c => crc(algorithm, crc_fast::CrcAlgorithm::Crc32Iscsi),
            Algorithm::Crc64Nvme => crc(algorithm, crc_fast::CrcAlgorithm::Crc64Nvme),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Md5(_) => Algorithm::Md5,
            Hasher::Sha1(_) => Algorithm::Sha1,
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
            Hasher::Crc(algorithm, _) => *algorithm,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Crc(_, h) => h.update(data),
        }
    }

    /// Lower-case hex digest.
    pub fn finish_hex(self) -> String {
        match self {
            Hasher::Md5(h) => hex::encode(h.finalize()),
            Hasher::Sha1(h) => hex::encode(h.finalize()),
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
            // Big-endian, as object stores print them (base64 of the bytes).
            Hasher::Crc(Algorithm::Crc64Nvme, h) => hex::encode(h.finalize().to_be_bytes()),
            Hasher::Crc(_, h) => hex::encode((h.finalize() as u32).to_be_bytes()),
        }
    }
}

fn crc(algorithm: Algorithm, crc: crc_fast::CrcAlgorithm) -> Hasher {
    Hasher::Crc(algorithm, crc_fast::Digest::new(crc))
}

/// A digest the source vouches for itself: what the object store or registry says the bytes
/// it serves hash to. A mismatch means they were damaged on the way (or at rest), and fails the
/// import like a wrong checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDigest {
    pub checksum: Checksum,
    /// Where it comes from, for messages: "the object's ETag (its MD5)".
    pub origin: String,
}

impl Checksum {
    /// Compares a finished digest with this expectation.
    pub fn verify(&self, actual_hex: String) -> Result<(), Error> {
        if actual_hex == self.hex {
            Ok(())
        } else {
            Err(Error::ChecksumMismatch {
                algorithm: self.algorithm.name(),
                expected: self.hex.clone(),
                actual: actual_hex,
            })
        }
    }
}

/// An expected digest that may become known only while the import runs: an upload's client
/// sends the digest of the whole image with its last bytes, once it has read them. It is
/// checked before the image is committed, like [`crate::ImportSpec::checksum`]; it must use one
/// of the algorithms the import hashes with.
#[derive(Debug, Clone, Default)]
pub struct PendingChecksum(std::sync::Arc<std::sync::Mutex<Option<Checksum>>>);

impl PendingChecksum {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the expectation; a second, different one is refused (the first stays).
    pub fn set(&self, checksum: Checksum) -> Result<(), Checksum> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(existing) if *existing != checksum => Err(existing.clone()),
            _ => {
                *slot = Some(checksum);
                Ok(())
            }
        }
    }

    pub fn get(&self) -> Option<Checksum> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cdi_syntax_in_any_case() {
        let c: Checksum = "SHA256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
            .parse()
            .expect("valid");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(
            c.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn crcs_give_their_catalogue_check_values_big_endian() {
        for (algorithm, check) in [
            (Algorithm::Crc32, "cbf43926"),
            (Algorithm::Crc32c, "e3069283"),
            (Algorithm::Crc64Nvme, "ae8b14860a799888"),
        ] {
            let mut h = Hasher::new(algorithm);
            h.update(b"1234");
            h.update(b"56789");
            assert_eq!(h.finish_hex(), check, "{}", algorithm.name());
        }
        // The CRCs are a source's own digests, never a user's checksum.
        assert!("crc32c:e3069283".parse::<Checksum>().is_err());
    }

    #[test]
    fn rejects_unknown_algorithms_and_wrong_lengths() {
        for bad in ["sha256", "crc32:00000000", "md5:abc", "sha1:zz", ":"] {
            assert!(
                matches!(bad.parse::<Checksum>(), Err(Error::BadChecksumSpec(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn each_algorithm_hashes_known_vectors() {
        let cases = [
            (Algorithm::Md5, "900150983cd24fb0d6963f7d28e17f72"),
            (Algorithm::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                Algorithm::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ];
        for (algo, want) in cases {
            let mut h = Hasher::new(algo);
            h.update(b"ab");
            h.update(b"c");
            assert_eq!(h.finish_hex(), want, "{algo:?}");
        }
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert!(h.finish_hex().starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn mismatch_is_its_own_error() {
        let c: Checksum = format!("md5:{}", "0".repeat(32)).parse().expect("valid");
        let err = c.verify("1".repeat(32)).expect_err("mismatch");
        assert!(matches!(
            err,
            Error::ChecksumMismatch {
                algorithm: "md5",
                ..
            }
        ));
    }
}
