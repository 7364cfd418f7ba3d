//! Container registries (`docker://host/repository:tag` or `@sha256:`): containerDisk images
//! (the one file under `disk/` in their layers) and KubeVirt disk artifacts (the layer is the
//! disk), streamed into the import with no scratch copy. oci-client resolves the manifest
//! (an index to the wanted architecture) and the registry's token; each blob is then read by
//! the resumable HTTP source, signed with a fresh token per request, and checked against its
//! digest before the import commits.

mod layers;
mod manifest;

use std::sync::Arc;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

pub use cdi_imageref::{describe, host_architecture};
pub use layers::LayerDiskSource;
pub use manifest::{Descriptor, DiskPlan};

/// The reference in a `docker://` URL; a bad one is a configuration error.
pub fn parse(location: &str) -> Result<Reference, Error> {
    cdi_imageref::parse(location).map_err(|e| Error::Config(e.to_string()))
}

use super::Source;
use super::http::{HttpOptions, HttpSource, RequestSigner, SignFuture, SignedRequest, error_chain};
use crate::checksum::{Checksum, SourceDigest};
use crate::error::{Error, ErrorKind};

/// How to reach a registry.
#[derive(Clone, Default)]
pub struct RegistryOptions {
    /// User name and password (or token) from the DataVolume's secret; none for anonymous
    /// pulls.
    pub credentials: Option<(String, String)>,
    /// The architecture to pick from an image index (default: this machine's).
    pub architecture: Option<String>,
    /// TLS (extra CAs; `insecure` also allows a registry that speaks plain HTTP), retries,
    /// timeouts and the resume counter.
    pub http: HttpOptions,
}

impl std::fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("architecture", &self.architecture)
            .field("http", &self.http)
            .finish()
    }
}

/// oci-client, and the runtime it runs on (kept alive for the whole import: the blob requests
/// ask it for tokens).
pub struct RegistryClient {
    oci: oci_client::Client,
    runtime: tokio::runtime::Runtime,
    auth: RegistryAuth,
    /// `http` or `https`.
    scheme: &'static str,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// Opens the disk of the image at `location`.
pub fn open(location: &str, options: RegistryOptions) -> Result<Box<dyn Source>, Error> {
    let reference = parse(location)?;
    let image = describe(&reference);
    let architecture = options
        .architecture
        .clone()
        .unwrap_or_else(|| host_architecture().to_owned());
    let client = Arc::new(RegistryClient::new(&reference, &options)?);
    let resolved = client.runtime.block_on(manifest::resolve(
        &client,
        &reference,
        &client.auth,
        &architecture,
    ))?;
    tracing::info!(image, resolved = %resolved.reference, "Resolved the image.");
    let blob_source = {
        let client = Arc::clone(&client);
        let reference = resolved.reference.clone();
        let http = options.http.clone();
        let image = image.clone();
        move |layer: &Descriptor| -> Result<Box<dyn Source>, Error> {
            open_blob(&client, &reference, layer, http.clone(), &image).map(|s| Box::new(s) as _)
        }
    };
    match resolved.plan {
        DiskPlan::Artifact(layer) => blob_source(&layer),
        DiskPlan::Filesystem(layers) => Ok(Box::new(LayerDiskSource::open(
            &image,
            layers,
            Box::new(blob_source),
        )?)),
    }
}

impl RegistryClient {
    fn new(reference: &Reference, options: &RegistryOptions) -> Result<Self, Error> {
        let image = describe(reference);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("registry")
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("starting the registry client: {e}")))?;
        let mut extra = Vec::new();
        for pem in &options.http.extra_ca_pem {
            extra.extend(pem_blocks(pem).into_iter().map(|data| Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            }));
        }
        let registry = reference.resolve_registry().to_owned();
        let scheme = if options.http.insecure {
            runtime.block_on(probe_scheme(&registry))
        } else {
            "https"
        };
        let config = ClientConfig {
            protocol: if scheme == "http" {
                ClientProtocol::HttpsExcept(vec![registry])
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: options.http.insecure,
            extra_root_certificates: extra,
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: options.http.read_timeout,
            user_agent: concat!("cdi-rs/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let auth = match &options.credentials {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        };
        tracing::debug!(image, scheme, "Registry client ready.");
        Ok(RegistryClient {
            oci: oci_client::Client::new(config),
            runtime,
            auth,
            scheme,
        })
    }
}

/// With `insecure`, a registry may speak plain HTTP: HTTPS if it answers over TLS (whatever its
/// certificate), else HTTP.
async fn probe_scheme(registry: &str) -> &'static str {
    let client = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build();
    let Ok(client) = client else { return "https" };
    if client
        .get(format!("https://{registry}/v2/"))
        .send()
        .await
        .is_ok()
    {
        return "https";
    }
    match client.get(format!("http://{registry}/v2/")).send().await {
        Ok(_) => "http",
        Err(_) => "https",
    }
}

/// The PEM blocks of a bundle, one certificate each (oci-client reads one per entry).
fn pem_blocks(pem: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(pem);
    let mut blocks = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN") {
            current.clear();
        }
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END") {
            blocks.push(std::mem::take(&mut current).into_bytes());
        }
    }
    blocks
}

/// The resumable HTTP source of one blob, checked against its digest by the import.
fn open_blob(
    client: &Arc<RegistryClient>,
    reference: &Reference,
    layer: &Descriptor,
    mut http: HttpOptions,
    image: &str,
) -> Result<HttpSource, Error> {
    let url = format!(
        "{}://{}/v2/{}/blobs/{}",
        client.scheme,
        reference.resolve_registry(),
        reference.repository(),
        layer.digest
    );
    let vouched: Vec<SourceDigest> = layers::blob_digest(&layer.digest)
        .map(|(algorithm, hex)| SourceDigest {
            checksum: Checksum { algorithm, hex },
            origin: format!("the digest of {image}'s disk layer"),
        })
        .into_iter()
        .collect();
    http.signer = Some(Arc::new(BlobSigner {
        client: Arc::clone(client),
        reference: reference.clone(),
        url: url.clone(),
    }));
    http.digests = Some(Arc::new(move |_: &HeaderMap| vouched.clone()));
    http.basic_auth = None;
    HttpSource::open_with(&url, http).map_err(|e| match e {
        Error::Http { message, kind, .. } => Error::Registry {
            image: image.to_owned(),
            message: format!("reading layer {}: {message}", layer.digest),
            kind,
        },
        other => other,
    })
}

/// A fresh registry token (or the basic credentials) for each blob request.
struct BlobSigner {
    client: Arc<RegistryClient>,
    reference: Reference,
    url: String,
}

impl std::fmt::Debug for BlobSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSigner")
            .field("url", &self.url)
            .finish()
    }
}

impl RequestSigner for BlobSigner {
    fn sign<'a>(&'a self, _first: Option<&'a HeaderMap>) -> SignFuture<'a> {
        Box::pin(async move {
            let client = Arc::clone(&self.client);
            let reference = self.reference.clone();
            // oci-client's connections live on its own runtime.
            let token = self
                .client
                .runtime
                .spawn(async move {
                    client
                        .oci
                        .auth(&reference, &client.auth, RegistryOperation::Pull)
                        .await
                })
                .await
                .map_err(|e| format!("the registry client stopped: {e}"))?
                .map_err(|e| format!("the registry refused the credentials: {e}"))?;
            let mut headers = HeaderMap::new();
            let value = match (token, &self.client.auth) {
                (Some(token), _) => Some(format!("Bearer {token}")),
                (None, RegistryAuth::Basic(user, password)) => {
                    use base64::Engine;
                    let pair = format!("{user}:{password}");
                    Some(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ))
                }
                _ => None,
            };
            if let Some(value) = value {
                let mut value =
                    HeaderValue::from_str(&value).map_err(|_| "the token is not a header value")?;
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
            Ok(SignedRequest {
                url: self.url.clone(),
                headers,
            })
        })
    }
}

/// An oci-client error in the data path's terms.
pub(crate) fn registry_error(
    image: &str,
    doing: &str,
    e: &oci_client::errors::OciDistributionError,
) -> Error {
    use oci_client::errors::OciDistributionError as E;
    let kind = match e {
        E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => ErrorKind::Auth,
        E::ImageManifestNotFoundError(_) => ErrorKind::NotFound,
        E::ServerError { code, .. } if *code == 401 || *code == 403 => ErrorKind::Auth,
        E::ServerError { code, .. } if *code == 404 => ErrorKind::NotFound,
        E::RegistryError { envelope, .. } => {
            use oci_client::errors::OciErrorCode as C;
            let any = |codes: &[C]| envelope.errors.iter().any(|e| codes.contains(&e.code));
            if any(&[
                C::ManifestUnknown,
                C::NameUnknown,
                C::NotFound,
                C::BlobUnknown,
            ]) {
                ErrorKind::NotFound
            } else if any(&[C::Unauthorized, C::Denied]) {
                ErrorKind::Auth
            } else {
                ErrorKind::Network
            }
        }
        E::RequestError(r) if is_tls(r) => ErrorKind::Auth,
        E::DigestError(_) => ErrorKind::ChecksumMismatch,
        _ => ErrorKind::Network,
    };
    let hint = match kind {
        ErrorKind::Auth => {
            "; check the credentials (secretRef), and the registry's CA (certConfigMap) or insecureSkipTLSVerify"
        }
        ErrorKind::NotFound => "; check the repository and tag",
        _ => "",
    };
    Error::Registry {
        image: image.to_owned(),
        message: format!("{doing}: {}{hint}", error_chain(e)),
        kind,
    }
}

fn is_tls(e: &reqwest::Error) -> bool {
    let text = error_chain(e);
    text.contains("certificate")
        || text.contains("UnknownIssuer")
        || text.contains("InvalidCertificate")
}
