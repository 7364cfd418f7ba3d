//! The digests a client may send with an upload, and the one the server sends back.
//!
//! Expected digest of the whole upload, any of:
//! - `Repr-Digest` or `Content-Digest` (RFC 9530): `sha-256=:BASE64:` or `sha-512=:BASE64:`,
//!   several members allowed (the strongest we verify is used);
//! - `X-CDI-Checksum`: CDI's `ALGORITHM:HEX` (`md5`, `sha1`, `sha256`, `sha512`), the syntax of
//!   a DataVolume's `checksum`;
//! - for a resumable upload, `checksum` in `Upload-Metadata` in the same `ALGORITHM:HEX` form.
//!
//! And per tus PATCH, `Upload-Checksum: ALGORITHM BASE64` for that request's bytes only.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cdi_datapath::checksum::Hasher;
use cdi_datapath::{Algorithm, Checksum};
use http::HeaderMap;

/// CDI's header for an `ALGORITHM:HEX` digest of the upload.
pub const CDI_CHECKSUM: &str = "x-cdi-checksum";

/// A digest header that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("{header} is malformed: {reason}")]
    Malformed {
        header: &'static str,
        reason: String,
    },
    #[error("{header} names no algorithm this server verifies (use sha-256 or sha-512)")]
    NoKnownAlgorithm { header: &'static str },
    #[error("the digest headers disagree: {0} and {1}")]
    Disagree(String, String),
}

fn rfc9530_algorithm(name: &str) -> Option<Algorithm> {
    match name.trim().to_ascii_lowercase().as_str() {
        "sha-256" => Some(Algorithm::Sha256),
        "sha-512" => Some(Algorithm::Sha512),
        _ => None,
    }
}

fn strength(a: Algorithm) -> u8 {
    match a {
        // Never a client's digest here (CDI's syntax has no CRCs); weakest if it were.
        Algorithm::Crc32 | Algorithm::Crc32c | Algorithm::Crc64Nvme => 0,
        Algorithm::Md5 => 0,
        Algorithm::Sha1 => 1,
        Algorithm::Sha256 => 2,
        Algorithm::Sha512 => 3,
    }
}

/// The strongest digest we verify in an RFC 9530 dictionary (`sha-256=:…:, sha-512=:…:`).
pub fn parse_rfc9530(header: &'static str, value: &str) -> Result<Checksum, DigestError> {
    let malformed = |reason: &str| DigestError::Malformed {
        header,
        reason: reason.into(),
    };
    let mut best: Option<Checksum> = None;
    for member in value.split(',') {
        let member = member.trim();
        if member.is_empty() {
            continue;
        }
        let (name, rest) = member
            .split_once('=')
            .ok_or_else(|| malformed("expected name=:base64:"))?;
        // Parameters (`;…`) after a member carry nothing we use.
        let rest = rest.split(';').next().unwrap_or("").trim();
        let b64 = rest
            .strip_prefix(':')
            .and_then(|r| r.strip_suffix(':'))
            .ok_or_else(|| malformed("a digest value is a byte sequence, :base64:"))?;
        let Some(algorithm) = rfc9530_algorithm(name) else {
            continue;
        };
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| malformed("the digest is not base64"))?;
        let candidate = format!("{}:{}", algorithm.name(), hex::encode(bytes))
            .parse::<Checksum>()
            .map_err(|_| malformed("the digest has the wrong length for its algorithm"))?;
        if best
            .as_ref()
            .is_none_or(|b| strength(candidate.algorithm) > strength(b.algorithm))
        {
            best = Some(candidate);
        }
    }
    best.ok_or(DigestError::NoKnownAlgorithm { header })
}

pub fn cdi_form(header: &'static str, value: &str) -> Result<Checksum, DigestError> {
    value
        .trim()
        .parse::<Checksum>()
        .map_err(|_| DigestError::Malformed {
            header,
            reason: "expected ALGORITHM:HEX with md5, sha1, sha256 or sha512".into(),
        })
}

/// The expected digest of the whole upload from the request headers (and, for tus, the
/// `checksum` metadata value). Two digests of the same algorithm must agree; of different
/// algorithms the strongest is verified.
pub fn expected(
    headers: &HeaderMap,
    metadata_checksum: Option<&str>,
) -> Result<Option<Checksum>, DigestError> {
    let mut found: Vec<Checksum> = Vec::new();
    let text = |name: &'static str| -> Result<Option<String>, DigestError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(str::to_owned)
                    .map_err(|_| DigestError::Malformed {
                        header: name,
                        reason: "not visible ASCII".into(),
                    })
            })
            .transpose()
    };
    if let Some(v) = text(CDI_CHECKSUM)? {
        found.push(cdi_form("X-CDI-Checksum", &v)?);
    }
    if let Some(v) = text("repr-digest")? {
        found.push(parse_rfc9530("Repr-Digest", &v)?);
    }
    if let Some(v) = text("content-digest")? {
        found.push(parse_rfc9530("Content-Digest", &v)?);
    }
    if let Some(v) = metadata_checksum {
        found.push(cdi_form("Upload-Metadata checksum", v)?);
    }
    for (i, a) in found.iter().enumerate() {
        for b in &found[i + 1..] {
            if a.algorithm == b.algorithm && a.hex != b.hex {
                return Err(DigestError::Disagree(a.to_string(), b.to_string()));
            }
        }
    }
    Ok(found.into_iter().max_by_key(|c| strength(c.algorithm)))
}

/// `Repr-Digest` of a computed digest, where RFC 9530 has a name for its algorithm.
pub fn repr_digest(digest: &Checksum) -> Option<String> {
    let name = match digest.algorithm {
        Algorithm::Sha256 => "sha-256",
        Algorithm::Sha512 => "sha-512",
        Algorithm::Md5
        | Algorithm::Sha1
        | Algorithm::Crc32
        | Algorithm::Crc32c
        | Algorithm::Crc64Nvme => return None,
    };
    let bytes = hex::decode(&digest.hex).ok()?;
    Some(format!("{name}=:{}:", STANDARD.encode(bytes)))
}

/// A tus `Upload-Checksum` (`sha1 BASE64`): the algorithm and the expected raw digest.
pub fn parse_upload_checksum(value: &str) -> Result<(Algorithm, Vec<u8>), DigestError> {
    let malformed = |reason: &str| DigestError::Malformed {
        header: "Upload-Checksum",
        reason: reason.into(),
    };
    let (name, b64) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| malformed("expected ALGORITHM BASE64"))?;
    let algorithm = match name.to_ascii_lowercase().as_str() {
        "md5" => Algorithm::Md5,
        "sha1" => Algorithm::Sha1,
        "sha256" => Algorithm::Sha256,
        "sha512" => Algorithm::Sha512,
        _ => {
            return Err(malformed(
                "the algorithm is not md5, sha1, sha256 or sha512",
            ));
        }
    };
    let digest = STANDARD
        .decode(b64.trim())
        .map_err(|_| malformed("the checksum is not base64"))?;
    Ok((algorithm, digest))
}

/// The raw digest of `data`.
pub fn digest_of(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
    let mut h = Hasher::new(algorithm);
    h.update(data);
    hex::decode(h.finish_hex()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("value"));
        }
        h
    }

    fn b64(hex_digest: &str) -> String {
        STANDARD.encode(hex::decode(hex_digest).expect("hex"))
    }

    #[test]
    fn repr_digest_sha256_is_read() {
        let h = headers(&[("repr-digest", &format!("sha-256=:{}:", b64(HELLO_SHA256)))]);
        let c = expected(&h, None).expect("valid").expect("some");
        assert_eq!(c.to_string(), format!("sha256:{HELLO_SHA256}"));
        assert_eq!(
            repr_digest(&c),
            Some(format!("sha-256=:{}:", b64(HELLO_SHA256)))
        );
    }

    #[test]
    fn the_strongest_known_member_wins_and_unknown_ones_are_skipped() {
        let sha512 = "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043";
        let value = format!(
            "unixsum=:AAA=:, sha-256=:{}:, sha-512=:{}:",
            b64(HELLO_SHA256),
            b64(sha512)
        );
        let c = parse_rfc9530("Repr-Digest", &value).expect("valid");
        assert_eq!(c.algorithm, Algorithm::Sha512);
    }

    #[test]
    fn cdi_form_and_metadata_are_read() {
        let h = headers(&[(CDI_CHECKSUM, &format!("sha256:{HELLO_SHA256}"))]);
        assert!(expected(&h, None).expect("valid").is_some());
        let c = expected(
            &HeaderMap::new(),
            Some(&format!("SHA256:{}", HELLO_SHA256.to_uppercase())),
        )
        .expect("valid")
        .expect("some");
        assert_eq!(c.hex, HELLO_SHA256);
    }

    #[test]
    fn unusable_digest_headers_are_refused_with_their_name() {
        let cases: [(&'static str, &str, &str); 5] = [
            ("repr-digest", "sha-256=AAAA", "Repr-Digest is malformed"),
            ("repr-digest", "md5=:AAAA:", "names no algorithm"),
            ("content-digest", "sha-256=:AAAA:", "wrong length"),
            (CDI_CHECKSUM, "sha256:12", "X-CDI-Checksum is malformed"),
            ("repr-digest", "sha-256=:!!:", "not base64"),
        ];
        for (name, value, message) in cases {
            let err = expected(&headers(&[(name, value)]), None).expect_err(value);
            assert!(err.to_string().contains(message), "{value}: {err}");
        }
    }

    #[test]
    fn two_digests_of_one_algorithm_must_agree() {
        let other = "0".repeat(64);
        let h = headers(&[
            (CDI_CHECKSUM, &format!("sha256:{other}")),
            ("repr-digest", &format!("sha-256=:{}:", b64(HELLO_SHA256))),
        ]);
        assert!(matches!(expected(&h, None), Err(DigestError::Disagree(..))));
    }

    #[test]
    fn tus_upload_checksum_is_algorithm_and_base64() {
        let (a, d) = parse_upload_checksum("sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=").expect("valid");
        assert_eq!(a, Algorithm::Sha1);
        assert_eq!(d, digest_of(Algorithm::Sha1, b"hello"));
        assert!(parse_upload_checksum("crc32 AAAA").is_err());
        assert!(parse_upload_checksum("sha1").is_err());
    }
}
