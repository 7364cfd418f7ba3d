//! One description of where an import reads from, turned into a [`Source`] by one function:
//! `cdictl` and the importer both build a [`SourceSpec`], so each kind of source is a
//! constructor, not a branch in each caller.

use std::path::PathBuf;

use super::gcs::{self, GcsOptions};
use super::http::{HttpOptions, HttpSource};
use super::registry::{self, RegistryOptions};
use super::s3::{self, S3Options};
use super::{FileSource, Source, StdinSource};
use crate::error::Error;

/// Where the bytes come from, and how to reach them.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    File(PathBuf),
    Stdin,
    /// An http(s) URL.
    Http {
        url: String,
        options: HttpOptions,
    },
    /// An S3 object: `s3://bucket/key` or an http(s) URL of an S3 endpoint.
    S3 {
        url: String,
        options: S3Options,
    },
    /// A GCS object: `gs://bucket/object` or `https://storage.googleapis.com/...`.
    Gcs {
        url: String,
        options: GcsOptions,
    },
    /// A container image or disk artifact: `docker://host/repository:tag`.
    Registry {
        url: String,
        options: RegistryOptions,
    },
}

/// The kind of source a location names by its form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Stdin,
    File,
    Http,
    S3,
    Gcs,
    Registry,
}

impl Scheme {
    /// `-`, a path, or a URL: `http(s)://`, `s3://`, `gs://`, `docker://`.
    pub fn of(location: &str) -> Scheme {
        let lower = location.to_ascii_lowercase();
        if location == "-" {
            Scheme::Stdin
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            Scheme::Http
        } else if lower.starts_with("s3://") {
            Scheme::S3
        } else if lower.starts_with("gs://") {
            Scheme::Gcs
        } else if lower.starts_with("docker://") {
            Scheme::Registry
        } else {
            Scheme::File
        }
    }
}

impl SourceSpec {
    /// Opens the source: connects, signs, resolves manifests; fails with the source's error
    /// (not found, unauthorized, ...) before any byte is imported.
    pub fn open(self) -> Result<Box<dyn Source>, Error> {
        Ok(match self {
            SourceSpec::File(path) => Box::new(FileSource::open(&path)?),
            SourceSpec::Stdin => Box::new(StdinSource::default()),
            SourceSpec::Http { url, options } => Box::new(HttpSource::open_with(&url, options)?),
            SourceSpec::S3 { url, options } => Box::new(s3::open(&url, options)?),
            SourceSpec::Gcs { url, options } => Box::new(gcs::open(&url, options)?),
            SourceSpec::Registry { url, options } => registry::open(&url, options)?,
        })
    }

    /// The location, without credentials, for messages.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::File(path) => path.display().to_string(),
            SourceSpec::Stdin => "standard input".into(),
            SourceSpec::Http { url, .. }
            | SourceSpec::S3 { url, .. }
            | SourceSpec::Gcs { url, .. }
            | SourceSpec::Registry { url, .. } => super::redact(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_their_kind_by_form() {
        for (location, scheme) in [
            ("-", Scheme::Stdin),
            ("disk.qcow2", Scheme::File),
            ("/dev/sdb", Scheme::File),
            ("HTTPS://example.com/x", Scheme::Http),
            ("http://127.0.0.1/x", Scheme::Http),
            ("s3://bucket/key", Scheme::S3),
            ("gs://bucket/object", Scheme::Gcs),
            ("docker://quay.io/x/y:1", Scheme::Registry),
        ] {
            assert_eq!(Scheme::of(location), scheme, "{location}");
        }
    }
}
