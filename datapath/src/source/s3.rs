//! S3 objects (`s3://bucket/key`, or an http(s) URL in path or virtual-host style, as CDI users
//! give them) over the resumable HTTP source: every request is signed afresh with SigV4
//! (object_store's signer), resumes are pinned to the object's ETag (`If-Match`, so a replaced
//! object fails instead of mixing), and the object's own checksum is verified: a full-object
//! `x-amz-checksum-*` when S3 has one, else the ETag when it is the MD5 of the bytes.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::http::{HttpOptions, HttpSource, RequestSigner, SignFuture, SignedRequest};
use super::object_url;
use crate::checksum::{Algorithm, Checksum, SourceDigest};
use crate::error::{Error, ErrorKind};

/// S3's region when nothing says otherwise, as the AWS SDKs assume.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How to reach an S3 object.
#[derive(Clone, Default)]
pub struct S3Options {
    /// Static credentials (CDI's secret: `accessKeyId`, `secretKey`); none for a public
    /// object.
    pub access_key_id: Option<String>,
    pub secret_key: Option<String>,
    /// A session token for temporary credentials.
    pub session_token: Option<String>,
    /// The bucket's region; from the endpoint's host name on AWS, else `us-east-1`.
    pub region: Option<String>,
    /// For `s3://` URLs: the endpoint of an S3-compatible store (MinIO, Ceph), reached in path
    /// style unless `virtual_hosted`.
    pub endpoint: Option<String>,
    pub virtual_hosted: bool,
    /// TLS, retries, timeouts and the resume counter.
    pub http: HttpOptions,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("virtual_hosted", &self.virtual_hosted)
            .field("http", &self.http)
            .finish()
    }
}

/// Where an object is: the URL to GET, and what signing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    pub url: String,
    pub bucket: String,
    pub key: String,
    /// Region named by the URL (`s3.eu-west-1.amazonaws.com`), if any.
    pub region: Option<String>,
}

/// Finds the bucket, key and request URL in `location`.
pub fn locate(location: &str, options: &S3Options) -> Result<S3Object, Error> {
    let bad = |why: &str| {
        Error::Config(format!(
            "{location:?} is not an S3 object URL ({why}); use s3://BUCKET/KEY or https://ENDPOINT/BUCKET/KEY"
        ))
    };
    let url = Url::parse(location).map_err(|e| bad(&e.to_string()))?;
    let host = url.host_str().ok_or_else(|| bad("no host"))?.to_owned();
    let segments = object_url::segments(&url);
    match url.scheme() {
        "s3" => {
            let key = segments.join("/");
            if key.is_empty() {
                return Err(bad("no key after the bucket"));
            }
            let bucket = host;
            let region = options.region.clone();
            let base = match &options.endpoint {
                Some(endpoint) => {
                    let endpoint = Url::parse(endpoint).map_err(|e| {
                        Error::Config(format!("the S3 endpoint {endpoint:?} is not a URL: {e}"))
                    })?;
                    if options.virtual_hosted {
                        let mut u = endpoint.clone();
                        let h = endpoint.host_str().unwrap_or_default();
                        u.set_host(Some(&format!("{bucket}.{h}")))
                            .map_err(|e| Error::Config(format!("bucket {bucket:?}: {e}")))?;
                        (u, false)
                    } else {
                        (endpoint, true)
                    }
                }
                None => {
                    let region = region.as_deref().unwrap_or(DEFAULT_REGION);
                    // Buckets with dots do not match the wildcard certificate of the virtual
                    // hosts: path style for them.
                    if bucket.contains('.') {
                        (aws_url(&format!("s3.{region}.amazonaws.com"))?, true)
                    } else {
                        (
                            aws_url(&format!("{bucket}.s3.{region}.amazonaws.com"))?,
                            false,
                        )
                    }
                }
            };
            Ok(S3Object {
                url: object_url(&base.0, base.1.then_some(bucket.as_str()), &key),
                bucket,
                key,
                region,
            })
        }
        "http" | "https" => {
            let (bucket, key, path_style) = match virtual_host_bucket(&host) {
                Some(bucket) => (bucket, segments.join("/"), false),
                None => {
                    let mut rest = segments.into_iter();
                    let bucket = rest.next().unwrap_or_default();
                    (bucket, rest.collect::<Vec<_>>().join("/"), true)
                }
            };
            if bucket.is_empty() || key.is_empty() {
                return Err(bad("it needs a bucket and a key"));
            }
            let mut base = url.clone();
            base.set_path("/");
            base.set_query(None);
            base.set_fragment(None);
            Ok(S3Object {
                url: object_url(&base, path_style.then_some(bucket.as_str()), &key),
                region: options.region.clone().or_else(|| aws_region(&host)),
                bucket,
                key,
            })
        }
        other => Err(bad(&format!("scheme {other}"))),
    }
}

fn aws_url(host: &str) -> Result<Url, Error> {
    Url::parse(&format!("https://{host}/")).map_err(|e| Error::Config(format!("{host}: {e}")))
}

/// `base` + `/bucket` (path style) + `/key`, each segment escaped as SigV4 wants it.
fn object_url(base: &Url, bucket: Option<&str>, key: &str) -> String {
    object_url::join(base.as_str(), bucket.into_iter().chain(key.split('/')))
}

/// The bucket of an AWS virtual-host name: `BUCKET.s3.amazonaws.com`,
/// `BUCKET.s3.REGION.amazonaws.com`, `BUCKET.s3-REGION.amazonaws.com`.
fn virtual_host_bucket(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.strip_suffix(".amazonaws.com")?.split('.').collect();
    let s3 = labels
        .iter()
        .position(|l| *l == "s3" || l.starts_with("s3-"))?;
    (s3 > 0).then(|| labels[..s3].join("."))
}

/// The region in an AWS S3 host name, if it names one (`s3.REGION.` or `s3-REGION.`).
fn aws_region(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.strip_suffix(".amazonaws.com")?.split('.').collect();
    let s3 = labels
        .iter()
        .position(|l| *l == "s3" || l.starts_with("s3-"))?;
    let region = match labels[s3].strip_prefix("s3-") {
        Some(region) => region,
        None => labels.get(s3 + 1)?,
    };
    region.contains('-').then(|| region.to_owned())
}

/// Signs each GET with SigV4, pinned to the first response's ETag once there was one.
struct S3Signer {
    url: String,
    credential: Option<AwsCredential>,
    region: String,
}

impl std::fmt::Debug for S3Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Signer")
            .field("url", &self.url)
            .field("signed", &self.credential.is_some())
            .field("region", &self.region)
            .finish()
    }
}

impl RequestSigner for S3Signer {
    fn sign<'a>(&'a self, first: Option<&'a HeaderMap>) -> SignFuture<'a> {
        Box::pin(async move { self.signed(first) })
    }
}

impl S3Signer {
    fn signed(&self, first: Option<&HeaderMap>) -> Result<SignedRequest, String> {
        let mut headers = HeaderMap::new();
        // Ask for the object's stored checksums, to verify the bytes against.
        headers.insert(
            HeaderName::from_static("x-amz-checksum-mode"),
            HeaderValue::from_static("ENABLED"),
        );
        if let Some(etag) = first.and_then(|h| h.get(reqwest::header::ETAG)) {
            headers.insert(reqwest::header::IF_MATCH, etag.clone());
        }
        let Some(credential) = &self.credential else {
            return Ok(SignedRequest {
                url: self.url.clone(),
                headers,
            });
        };
        let mut request = http::Request::get(&self.url)
            .body(object_store::client::HttpRequestBody::empty())
            .map_err(|e| format!("building the request: {e}"))?;
        *request.headers_mut() = headers;
        AwsAuthorizer::new(credential, "s3", &self.region)
            .with_sign_payload(false)
            .try_authorize(&mut request, None)
            .map_err(|e| e.to_string())?;
        Ok(SignedRequest {
            url: self.url.clone(),
            headers: request.headers().clone(),
        })
    }
}

/// The object's own digest in S3's answer: a full-object `x-amz-checksum-*` (the cheapest
/// first), else the ETag when it is the MD5 of the bytes (a single-part upload stored without
/// KMS or customer keys).
pub fn digests(headers: &HeaderMap) -> Vec<SourceDigest> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let composite =
        text("x-amz-checksum-type").is_some_and(|t| t.eq_ignore_ascii_case("COMPOSITE"));
    if !composite {
        for (header, algorithm) in [
            ("x-amz-checksum-crc64nvme", Algorithm::Crc64Nvme),
            ("x-amz-checksum-crc32c", Algorithm::Crc32c),
            ("x-amz-checksum-crc32", Algorithm::Crc32),
            ("x-amz-checksum-sha1", Algorithm::Sha1),
            ("x-amz-checksum-sha256", Algorithm::Sha256),
        ] {
            // A composite checksum (of parts) ends in "-N".
            let Some(value) = text(header).filter(|v| !v.contains('-')) else {
                continue;
            };
            if let Some(checksum) = STANDARD
                .decode(value.trim())
                .ok()
                .and_then(|raw| Checksum::from_bytes(algorithm, &raw))
            {
                return vec![SourceDigest {
                    checksum,
                    origin: format!("the object's {header}"),
                }];
            }
        }
    }
    let encrypted = text("x-amz-server-side-encryption").is_some_and(|e| e.starts_with("aws:kms"))
        || text("x-amz-server-side-encryption-customer-algorithm").is_some();
    let etag = text("etag").map(|e| e.trim().trim_matches('"').to_ascii_lowercase());
    match etag {
        Some(tag)
            if !encrypted && tag.len() == 32 && tag.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            vec![SourceDigest {
                checksum: Checksum {
                    algorithm: Algorithm::Md5,
                    hex: tag,
                },
                origin: "the object's ETag (its MD5)".into(),
            }]
        }
        _ => Vec::new(),
    }
}

/// Opens `location` for reading.
pub fn open(location: &str, options: S3Options) -> Result<HttpSource, Error> {
    let object = locate(location, &options)?;
    let credential = match (&options.access_key_id, &options.secret_key) {
        (Some(key_id), Some(secret_key)) => Some(AwsCredential {
            key_id: key_id.clone(),
            secret_key: secret_key.clone(),
            token: options.session_token.clone(),
        }),
        (None, None) => None,
        _ => {
            return Err(Error::Config(
                "S3 credentials need both the access key id and the secret key".into(),
            ));
        }
    };
    let region = match &object.region {
        Some(region) => region.clone(),
        None if is_aws(&object.url) => bucket_region(&object.bucket)?,
        None => DEFAULT_REGION.to_owned(),
    };
    let signer = S3Signer {
        url: object.url.clone(),
        credential,
        region,
    };
    let mut http = options.http;
    http.signer = Some(Arc::new(signer));
    http.digests = Some(Arc::new(digests));
    HttpSource::open_with(&object.url, http).map_err(|e| explain(e, &object))
}

fn is_aws(url: &str) -> bool {
    Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.ends_with(".amazonaws.com")))
        .unwrap_or(false)
}

/// Asks AWS where a bucket lives (a request must be signed for its region).
fn bucket_region(bucket: &str) -> Result<String, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("starting a runtime: {e}")))?;
    runtime
        .block_on(object_store::aws::resolve_bucket_region(
            bucket,
            &object_store::ClientOptions::default(),
        ))
        .map_err(|e| Error::Http {
            url: format!("s3://{bucket}"),
            message: format!("finding the bucket's region: {e}; give the region"),
            kind: if e.to_string().contains("not found") {
                ErrorKind::NotFound
            } else {
                ErrorKind::Network
            },
        })
}

/// S3's answers in S3's terms.
fn explain(e: Error, object: &S3Object) -> Error {
    match e {
        Error::Http { url, message, kind } => {
            let hint = match kind {
                ErrorKind::NotFound => format!(
                    "; check the bucket ({}) and key ({})",
                    object.bucket, object.key
                ),
                ErrorKind::Auth if message.contains("answered") => {
                    " (for a private object, give the access key id and secret key; for a wrong region, the region)".to_owned()
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::object_url::header_map as headers;

    fn at(location: &str, options: &S3Options) -> S3Object {
        locate(location, options).unwrap_or_else(|e| panic!("{location}: {e}"))
    }

    #[test]
    fn every_url_style_finds_bucket_key_and_region() {
        let none = S3Options::default();
        let o = at("s3://images/fedora/disk 1.qcow2", &none);
        assert_eq!(
            (o.bucket.as_str(), o.key.as_str()),
            ("images", "fedora/disk 1.qcow2")
        );
        assert_eq!(
            o.url,
            "https://images.s3.us-east-1.amazonaws.com/fedora/disk%201.qcow2"
        );
        let o = at("s3://my.images/a+b.img", &none);
        assert_eq!(
            o.url,
            "https://s3.us-east-1.amazonaws.com/my.images/a%2Bb.img"
        );
        let minio = S3Options {
            endpoint: Some("http://127.0.0.1:9000".into()),
            ..S3Options::default()
        };
        let o = at("s3://bkt/dir/x:y.img", &minio);
        assert_eq!(o.url, "http://127.0.0.1:9000/bkt/dir/x%3Ay.img");
        let o = at("http://minio.example:9000/bkt/dir/disk.img", &none);
        assert_eq!(
            (o.bucket.as_str(), o.key.as_str(), o.region.as_deref()),
            ("bkt", "dir/disk.img", None)
        );
        assert_eq!(o.url, "http://minio.example:9000/bkt/dir/disk.img");
        let o = at("https://s3.eu-west-1.amazonaws.com/bkt/k%20ey.img", &none);
        assert_eq!((o.bucket.as_str(), o.key.as_str()), ("bkt", "k ey.img"));
        assert_eq!(o.region.as_deref(), Some("eu-west-1"));
        let o = at("https://bkt.s3.eu-central-1.amazonaws.com/a/b.img", &none);
        assert_eq!((o.bucket.as_str(), o.key.as_str()), ("bkt", "a/b.img"));
        assert_eq!(o.region.as_deref(), Some("eu-central-1"));
        assert_eq!(o.url, "https://bkt.s3.eu-central-1.amazonaws.com/a/b.img");
        let o = at("https://bkt.s3.amazonaws.com/b.img", &none);
        assert_eq!((o.bucket.as_str(), o.region.as_deref()), ("bkt", None));
    }

    #[test]
    fn urls_without_a_bucket_or_key_are_refused() {
        let none = S3Options::default();
        for bad in [
            "s3://bucket",
            "s3://bucket/",
            "https://minio.example/bucket",
            "ftp://x/y/z",
        ] {
            let e = locate(bad, &none).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}: {e}");
        }
    }

    #[test]
    fn the_cheapest_full_object_checksum_wins_else_a_plain_md5_etag() {
        let md5 = "\"89c5bd2b75efedae64edcc1f22539a30\"";
        let d = digests(&headers(&[("etag", md5)]));
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].checksum.to_string(),
            "md5:89c5bd2b75efedae64edcc1f22539a30"
        );
        let d = digests(&headers(&[
            ("etag", md5),
            (
                "x-amz-checksum-sha256",
                "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
            ),
            ("x-amz-checksum-crc32c", "yZRlqg=="),
        ]));
        assert_eq!(d[0].checksum.algorithm, Algorithm::Crc32c);
        assert_eq!(d[0].checksum.hex, "c99465aa");
        // Composite checksums and multipart or KMS ETags are no digest of the bytes.
        assert!(digests(&headers(&[("x-amz-checksum-crc32", "abcd-3")])).is_empty());
        assert!(
            digests(&headers(&[
                ("x-amz-checksum-type", "COMPOSITE"),
                ("x-amz-checksum-crc32c", "yZRlqg=="),
            ]))
            .is_empty()
        );
        assert!(
            digests(&headers(&[(
                "etag",
                "\"0123456789abcdef0123456789abcdef-4\""
            )]))
            .is_empty()
        );
        assert!(
            digests(&headers(&[
                ("etag", md5),
                ("x-amz-server-side-encryption", "aws:kms")
            ]))
            .is_empty()
        );
    }

    #[test]
    fn requests_are_signed_with_sigv4_and_resumes_pinned_to_the_etag() {
        let signer = S3Signer {
            url: "http://127.0.0.1:9000/bkt/disk.img".into(),
            credential: Some(AwsCredential {
                key_id: "AKID".into(),
                secret_key: "secret".into(),
                token: None,
            }),
            region: "eu-west-1".into(),
        };
        let first = signer.signed(None).expect("signed");
        let auth = first.headers["authorization"].to_str().expect("ascii");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/")
                && auth.contains("/eu-west-1/s3/aws4_request")
                && auth.contains("x-amz-checksum-mode"),
            "{auth}"
        );
        assert!(first.headers.get("if-match").is_none());
        let resume = signer
            .signed(Some(&headers(&[("etag", "\"abc\"")])))
            .expect("signed");
        assert_eq!(resume.headers["if-match"], "\"abc\"");
        let anonymous = S3Signer {
            credential: None,
            ..signer
        };
        assert!(
            anonymous
                .signed(None)
                .expect("plain")
                .headers
                .get("authorization")
                .is_none()
        );
    }
}
