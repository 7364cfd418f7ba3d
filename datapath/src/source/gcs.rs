//! Google Cloud Storage objects (`gs://bucket/object`, or `https://storage.googleapis.com/...`)
//! over the resumable HTTP source: public objects are read anonymously; with a
//! service-account key (CDI mounts it at `/google/credentials.json`) each request gets a V4
//! signed URL (object_store's signer). Resumes are pinned to the object's generation, so a
//! replaced object fails instead of mixing, and the object's CRC32C (else MD5) from
//! `x-goog-hash` is verified.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder};
use object_store::signer::{SignedUrlOptions, Signer};
use reqwest::Url;
use reqwest::header::HeaderMap;

use super::http::{HttpOptions, HttpSource, RequestSigner, SignFuture, SignedRequest};
use super::object_url;
use crate::checksum::{Algorithm, Checksum, SourceDigest};
use crate::error::{Error, ErrorKind};

/// Where GCS serves objects (the XML API, which signed URLs address).
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
/// How long a signed URL is valid: a request signed now is sent at once, so this only has to
/// outlive a slow start.
const SIGNED_FOR: Duration = Duration::from_secs(60 * 60);

/// How to reach a GCS object.
#[derive(Clone, Default, Debug)]
pub struct GcsOptions {
    /// A service-account key (JSON), as `GOOGLE_APPLICATION_CREDENTIALS` names it; none for a
    /// public object.
    pub credentials_file: Option<PathBuf>,
    /// GCS's address, for `gs://` URLs (default [`DEFAULT_ENDPOINT`]; a key file's
    /// `gcs_base_url` also sets it, as emulators use).
    pub endpoint: Option<String>,
    /// TLS, retries, timeouts and the resume counter.
    pub http: HttpOptions,
}

/// Where an object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsObject {
    /// Scheme, host and port of the XML API.
    pub endpoint: String,
    pub bucket: String,
    pub object: String,
}

impl GcsObject {
    /// The object's URL, each segment escaped.
    pub fn url(&self) -> String {
        object_url::join(
            &self.endpoint,
            std::iter::once(self.bucket.as_str()).chain(self.object.split('/')),
        )
    }
}

/// Finds the bucket and object in `location`.
pub fn locate(location: &str, options: &GcsOptions) -> Result<GcsObject, Error> {
    let bad = |why: &str| {
        Error::Config(format!(
            "{location:?} is not a GCS object URL ({why}); use gs://BUCKET/OBJECT or https://storage.googleapis.com/BUCKET/OBJECT"
        ))
    };
    let url = Url::parse(location).map_err(|e| bad(&e.to_string()))?;
    let host = url.host_str().ok_or_else(|| bad("no host"))?.to_owned();
    let segments = object_url::segments(&url);
    let (endpoint, bucket, object) = match url.scheme() {
        "gs" => (
            options
                .endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            host,
            segments.join("/"),
        ),
        "http" | "https" => {
            let origin = url.origin().ascii_serialization();
            match host.strip_suffix(".storage.googleapis.com") {
                Some(bucket) => (
                    DEFAULT_ENDPOINT.to_owned(),
                    bucket.to_owned(),
                    segments.join("/"),
                ),
                None => {
                    // storage.cloud.google.com serves browsers; the API is the same path on
                    // storage.googleapis.com.
                    let endpoint = if host == "storage.cloud.google.com" {
                        DEFAULT_ENDPOINT.to_owned()
                    } else {
                        origin
                    };
                    let mut rest = segments.into_iter();
                    let bucket = rest.next().unwrap_or_default();
                    (endpoint, bucket, rest.collect::<Vec<_>>().join("/"))
                }
            }
        }
        other => return Err(bad(&format!("scheme {other}"))),
    };
    if bucket.is_empty() || object.is_empty() {
        return Err(bad("it needs a bucket and an object name"));
    }
    Ok(GcsObject {
        endpoint,
        bucket,
        object,
    })
}

/// Makes each GET: a V4 signed URL with a key, the plain URL without; both pinned to the first
/// response's generation once there was one.
struct GcsSigner {
    object: GcsObject,
    store: Option<GoogleCloudStorage>,
}

impl std::fmt::Debug for GcsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsSigner")
            .field("object", &self.object)
            .field("signed", &self.store.is_some())
            .finish()
    }
}

impl RequestSigner for GcsSigner {
    fn sign<'a>(&'a self, first: Option<&'a HeaderMap>) -> SignFuture<'a> {
        Box::pin(async move {
            let generation = first
                .and_then(|h| h.get("x-goog-generation"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let url = match &self.store {
                Some(store) => {
                    let query: Vec<(String, String)> = generation
                        .into_iter()
                        .map(|g| ("generation".to_owned(), g))
                        .collect();
                    let options = SignedUrlOptions::new().with_query(query);
                    let path = object_store::path::Path::from(self.object.object.as_str());
                    store
                        .signed_url_opts(http::Method::GET, &path, SIGNED_FOR, &options)
                        .await
                        .map_err(|e| e.to_string())?
                        .to_string()
                }
                None => {
                    let mut url = self.object.url();
                    if let Some(g) = generation {
                        url.push_str(&format!("?generation={g}"));
                    }
                    url
                }
            };
            Ok(SignedRequest {
                url,
                headers: HeaderMap::new(),
            })
        })
    }
}

/// The object's own digest in GCS's answer: the CRC32C of `x-goog-hash` (cheap to check),
/// else its MD5; none when GCS decompressed the object on the way (the hash is of the stored,
/// compressed bytes).
pub fn digests(headers: &HeaderMap) -> Vec<SourceDigest> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let transcoded = text("x-goog-stored-content-encoding").is_some_and(|e| e == "gzip")
        && text("content-encoding").is_none_or(|e| e != "gzip");
    if transcoded {
        return Vec::new();
    }
    let hashes: Vec<(&str, &str)> = headers
        .get_all("x-goog-hash")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|member| member.trim().split_once('='))
        .collect();
    for (name, algorithm) in [("crc32c", Algorithm::Crc32c), ("md5", Algorithm::Md5)] {
        let found = hashes.iter().find(|(n, _)| *n == name).and_then(|(_, v)| {
            let raw = STANDARD.decode(v.trim()).ok()?;
            Checksum::from_bytes(algorithm, &raw)
        });
        if let Some(checksum) = found {
            return vec![SourceDigest {
                checksum,
                origin: format!("the object's {name} (x-goog-hash)"),
            }];
        }
    }
    Vec::new()
}

/// Opens `location` for reading.
pub fn open(location: &str, options: GcsOptions) -> Result<HttpSource, Error> {
    let mut object = locate(location, &options)?;
    let store = match &options.credentials_file {
        None => None,
        Some(file) => {
            let mut builder = GoogleCloudStorageBuilder::new()
                .with_bucket_name(&object.bucket)
                .with_service_account_path(file.to_string_lossy());
            if location.starts_with("http") || options.endpoint.is_some() {
                builder = builder.with_base_url(&object.endpoint);
            }
            let store = builder.build().map_err(|e| Error::Http {
                url: location.to_owned(),
                message: format!(
                    "the service-account key {} cannot be used: {e}",
                    file.display()
                ),
                kind: ErrorKind::Auth,
            })?;
            // A key file may name its own endpoint (emulators): sign for that one.
            if let Some(base) = key_file_endpoint(file)
                && location.starts_with("gs:")
                && options.endpoint.is_none()
            {
                object.endpoint = base;
            }
            Some(store)
        }
    };
    let url = object.url();
    let mut http = options.http;
    http.signer = Some(Arc::new(GcsSigner {
        object: object.clone(),
        store,
    }));
    http.digests = Some(Arc::new(digests));
    HttpSource::open_with(&url, http).map_err(|e| match e {
        Error::Http { url, message, kind } => {
            let hint = match kind {
                ErrorKind::NotFound => format!(
                    "; check the bucket ({}) and object ({})",
                    object.bucket, object.object
                ),
                ErrorKind::Auth => {
                    " (a private object needs a service-account key with read access: the DataVolume's secretRef)".to_owned()
                }
                _ => String::new(),
            };
            Error::Http {
                url,
                message: format!("{message}{hint}"),
                kind,
            }
        }
        other => other,
    })
}

/// The `gcs_base_url` a service-account key file names, if any.
fn key_file_endpoint(file: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("gcs_base_url")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use crate::source::object_url::header_map as headers;

    use super::*;

    #[test]
    fn every_url_form_finds_the_bucket_and_object() {
        let none = GcsOptions::default();
        let at = |l: &str| locate(l, &none).unwrap_or_else(|e| panic!("{l}: {e}"));
        let o = at("gs://images/fedora/disk 1.qcow2");
        assert_eq!(
            (o.bucket.as_str(), o.object.as_str()),
            ("images", "fedora/disk 1.qcow2")
        );
        assert_eq!(
            o.url(),
            "https://storage.googleapis.com/images/fedora/disk%201.qcow2"
        );
        for l in [
            "https://storage.googleapis.com/images/a/b.img",
            "https://storage.cloud.google.com/images/a/b.img",
            "https://images.storage.googleapis.com/a/b.img",
        ] {
            let o = at(l);
            assert_eq!(o.endpoint, DEFAULT_ENDPOINT, "{l}");
            assert_eq!(
                (o.bucket.as_str(), o.object.as_str()),
                ("images", "a/b.img"),
                "{l}"
            );
        }
        let o = at("http://127.0.0.1:9023/bkt/d%20ir/x.img");
        assert_eq!(o.endpoint, "http://127.0.0.1:9023");
        assert_eq!(o.object, "d ir/x.img");
        let emulator = GcsOptions {
            endpoint: Some("http://127.0.0.1:9023".into()),
            ..GcsOptions::default()
        };
        assert_eq!(
            locate("gs://bkt/x.img", &emulator).expect("gs").url(),
            "http://127.0.0.1:9023/bkt/x.img"
        );
        for bad in [
            "gs://bucket",
            "gs://bucket/",
            "https://storage.googleapis.com/bucket",
            "s3://a/b",
        ] {
            assert_eq!(
                locate(bad, &none).expect_err(bad).kind(),
                ErrorKind::Config,
                "{bad}"
            );
        }
    }

    #[test]
    fn crc32c_is_preferred_and_a_transcoded_object_has_no_digest() {
        let h = headers(&[(
            "x-goog-hash",
            "crc32c=aeS8Bg==,md5=icW9K3Xv7a5k7cwfIlOaMA==",
        )]);
        let d = digests(&h);
        assert_eq!(d[0].checksum.to_string(), "crc32c:69e4bc06");
        let h = headers(&[
            ("x-goog-hash", "md5=icW9K3Xv7a5k7cwfIlOaMA=="),
            ("x-goog-hash", "crc32c=aeS8Bg=="),
        ]);
        assert_eq!(digests(&h)[0].checksum.algorithm, Algorithm::Crc32c);
        let h = headers(&[("x-goog-hash", "md5=icW9K3Xv7a5k7cwfIlOaMA==")]);
        assert_eq!(
            digests(&h)[0].checksum.to_string(),
            "md5:89c5bd2b75efedae64edcc1f22539a30"
        );
        let h = headers(&[
            ("x-goog-hash", "crc32c=aeS8Bg=="),
            ("x-goog-stored-content-encoding", "gzip"),
        ]);
        assert!(digests(&h).is_empty());
    }

    #[tokio::test]
    async fn anonymous_requests_are_pinned_to_the_first_generation() {
        let signer = GcsSigner {
            object: locate("gs://bkt/a b.img", &GcsOptions::default()).expect("gs"),
            store: None,
        };
        let first = signer.sign(None).await.expect("url");
        assert_eq!(first.url, "https://storage.googleapis.com/bkt/a%20b.img");
        let h = headers(&[("x-goog-generation", "1796625417617844476")]);
        let resume = signer.sign(Some(&h)).await.expect("url");
        assert_eq!(
            resume.url,
            "https://storage.googleapis.com/bkt/a%20b.img?generation=1796625417617844476"
        );
    }
}
