//! Resolves a registry image's tag to its manifest digest without pulling anything: one
//! manifest `HEAD` (a `GET` only when the registry sends no `Docker-Content-Digest`), with
//! Basic credentials or a bearer token got from the registry's challenge and kept until it
//! expires, so an unchanged image costs one request per poll.
//!
//! ```text
//!  HEAD /v2/<repo>/manifests/<tag> ──200 + Docker-Content-Digest──► digest
//!        │401 WWW-Authenticate: Bearer realm=…  ──► GET realm?service&scope (Basic) ──► token ─┐
//!        │401 WWW-Authenticate: Basic            ──► Basic credentials ─────────────────────┤
//!        └◄─────────────────────────────────────── retry once with the credentials ◄──────────┘
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cdi_imageref::Reference;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use sha2::{Digest, Sha256};

/// The manifest types asked for: the digest is that of what the registry serves for these,
/// which is what an importer pulling the tag would get.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";
/// The header registries put a manifest's digest in.
const DIGEST_HEADER: &str = "docker-content-digest";
/// How long a token without `expires_in` is kept (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Each request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach one cron's registry: the cron's secret, CA bundle and CDIConfig's insecure list.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryAccess {
    /// User and password (`accessKeyId`, `secretKey` of `secretRef`).
    pub credentials: Option<(String, String)>,
    /// PEM CA certificates (every entry of `certConfigMap`).
    pub ca_pem: Vec<u8>,
    /// The registry is listed in CDIConfig's `insecureRegistries`: any certificate, or plain
    /// HTTP when it does not speak TLS.
    pub insecure: bool,
}

impl std::fmt::Debug for RegistryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAccess")
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// Why a digest could not be had. Each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("registry {registry} could not be reached: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error(
        "registry {registry} refused the credentials for {image} (HTTP {status}): check the \
         user and password in the secretRef Secret"
    )]
    Unauthorized {
        registry: String,
        image: String,
        status: u16,
    },
    #[error("{image} does not exist in its registry (HTTP 404): check the repository and tag")]
    NotFound { image: String },
    #[error("registry {registry} answered HTTP {status} for {image}")]
    Status {
        registry: String,
        image: String,
        status: u16,
    },
    #[error("registry {registry}'s token service at {realm} failed: {detail}")]
    Token {
        registry: String,
        realm: String,
        detail: String,
    },
    #[error("the CA bundle of certConfigMap is not PEM: {0}")]
    BadCa(String),
}

impl PollError {
    /// The reason on the cron's condition and event.
    pub fn reason(&self) -> &'static str {
        match self {
            PollError::Unreachable { .. } => "RegistryUnreachable",
            PollError::Unauthorized { .. } | PollError::Token { .. } => "RegistryUnauthorized",
            PollError::NotFound { .. } => "ImageNotFound",
            PollError::Status { .. } => "RegistryError",
            PollError::BadCa(_) => "InvalidCertConfigMap",
        }
    }
}

/// A credential a registry accepted (or handed out) for one repository.
#[derive(Clone, Debug)]
struct Grant {
    header: HeaderValue,
    until: Option<Instant>,
}

/// Resolves digests; keeps HTTP clients and tokens between polls.
#[derive(Default)]
pub struct Poller {
    /// HTTP clients by TLS settings (CA bundle hash, insecure), so connections are reused.
    clients: Mutex<HashMap<String, reqwest::Client>>,
    grants: Mutex<HashMap<String, Grant>>,
    /// The scheme an insecure registry answered on, so it is probed once.
    schemes: Mutex<HashMap<String, &'static str>>,
    /// Registry requests made (the controller registers it as a metric).
    pub requests: prometheus_client::metrics::counter::Counter,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller").finish_non_exhaustive()
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value (`Bearer realm="…",service="…",scope="…"` or `Basic …`).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, params) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut fields = HashMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(',').map_or((after, ""), |(v, n)| (v, n))
        };
        fields.insert(key, value.to_owned());
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: fields.remove("realm")?,
        service: fields.remove("service"),
        scope: fields.remove("scope"),
    })
}

impl Poller {
    /// The digest `reference` (a tag or a digest) currently names.
    pub async fn digest(
        &self,
        reference: &Reference,
        access: &RegistryAccess,
    ) -> Result<String, PollError> {
        let registry = reference.resolve_registry().to_owned();
        let image = cdi_imageref::describe(reference);
        let client = self.client(access)?;
        let scheme = if access.insecure {
            self.probe_scheme(&client, &registry).await
        } else {
            "https"
        };
        let target = reference
            .digest()
            .or(reference.tag())
            .unwrap_or("latest")
            .to_owned();
        let url = format!(
            "{scheme}://{registry}/v2/{}/manifests/{target}",
            reference.repository()
        );
        // Kept per repository and credentials (hashed: never held in clear twice).
        let who = access.credentials.as_ref().map_or(String::new(), |(u, p)| {
            hex::encode(Sha256::digest(format!("{u}:{p}").as_bytes()))
        });
        let grant_key = format!("{registry}/{}|{who}", reference.repository());
        let unreachable = |e: reqwest::Error| PollError::Unreachable {
            registry: registry.clone(),
            detail: error_chain(&e),
        };
        let mut method = reqwest::Method::HEAD;
        let mut authorised_once = false;
        loop {
            let mut request = client
                .request(method.clone(), &url)
                .header(ACCEPT, MANIFEST_TYPES);
            if let Some(grant) = self.grant(&grant_key) {
                request = request.header(AUTHORIZATION, grant);
            }
            self.count();
            let response = request.send().await.map_err(unreachable)?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !authorised_once {
                authorised_once = true;
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                let grant = match challenge {
                    Some(Challenge::Bearer {
                        realm,
                        service,
                        scope,
                    }) => {
                        let scope = scope.unwrap_or_else(|| {
                            format!("repository:{}:pull", reference.repository())
                        });
                        self.token(&client, &registry, &realm, service, &scope, access)
                            .await?
                    }
                    Some(Challenge::Basic) | None => match &access.credentials {
                        Some((user, password)) => Grant {
                            header: basic(user, password),
                            until: None,
                        },
                        None => {
                            return Err(PollError::Unauthorized {
                                registry,
                                image,
                                status: status.as_u16(),
                            });
                        }
                    },
                };
                self.keep(grant_key.clone(), grant);
                continue;
            }
            match status {
                s if s.is_success() => {
                    if let Some(digest) = header_digest(response.headers()) {
                        return Ok(digest);
                    }
                    if method == reqwest::Method::GET {
                        let body = response.bytes().await.map_err(unreachable)?;
                        return Ok(format!("sha256:{}", hex::encode(Sha256::digest(&body))));
                    }
                    method = reqwest::Method::GET;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    self.forget(&grant_key);
                    return Err(PollError::Unauthorized {
                        registry,
                        image,
                        status: status.as_u16(),
                    });
                }
                StatusCode::NOT_FOUND => return Err(PollError::NotFound { image }),
                s => {
                    return Err(PollError::Status {
                        registry,
                        image,
                        status: s.as_u16(),
                    });
                }
            }
        }
    }

    /// A poller counting its registry requests in `requests`.
    pub fn new(requests: prometheus_client::metrics::counter::Counter) -> Poller {
        Poller {
            requests,
            ..Poller::default()
        }
    }

    fn count(&self) {
        self.requests.inc();
    }

    fn grant(&self, key: &str) -> Option<HeaderValue> {
        let mut grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        match grants.get(key) {
            Some(g) if g.until.is_none_or(|t| Instant::now() < t) => Some(g.header.clone()),
            Some(_) => {
                grants.remove(key);
                None
            }
            None => None,
        }
    }

    fn keep(&self, key: String, grant: Grant) {
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, grant);
    }

    fn forget(&self, key: &str) {
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// The client for `access`'s TLS settings, made on first use.
    fn client(&self, access: &RegistryAccess) -> Result<reqwest::Client, PollError> {
        let key = format!(
            "{}|{}",
            hex::encode(Sha256::digest(&access.ca_pem)),
            access.insecure
        );
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("cdi-rs-controller/", env!("CARGO_PKG_VERSION")))
            .tls_danger_accept_invalid_certs(access.insecure);
        if !access.ca_pem.is_empty() {
            let certs = reqwest::Certificate::from_pem_bundle(&access.ca_pem)
                .map_err(|e| PollError::BadCa(error_chain(&e)))?;
            b = b.tls_certs_merge(certs);
        }
        let c = b.build().map_err(|e| PollError::BadCa(error_chain(&e)))?;
        clients.insert(key, c.clone());
        Ok(c)
    }

    /// With `insecure`, a registry may speak plain HTTP: HTTPS if it answers over TLS
    /// (whatever its certificate), else HTTP, as the importer decides.
    async fn probe_scheme(&self, client: &reqwest::Client, registry: &str) -> &'static str {
        if let Some(known) = self
            .schemes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(registry)
        {
            return known;
        }
        self.count();
        let scheme = match client.get(format!("https://{registry}/v2/")).send().await {
            Ok(_) => "https",
            Err(_) => "http",
        };
        self.schemes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(registry.to_owned(), scheme);
        scheme
    }

    /// A bearer token from `realm` for `scope`, asked with the cron's credentials if any.
    async fn token(
        &self,
        client: &reqwest::Client,
        registry: &str,
        realm: &str,
        service: Option<String>,
        scope: &str,
        access: &RegistryAccess,
    ) -> Result<Grant, PollError> {
        let failed = |detail: String| PollError::Token {
            registry: registry.to_owned(),
            realm: realm.to_owned(),
            detail,
        };
        let mut query = vec![("scope", scope.to_owned())];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut request = client.get(realm).query(&query);
        if let Some((user, password)) = &access.credentials {
            request = request.basic_auth(user, Some(password));
        }
        self.count();
        let response = request.send().await.map_err(|e| failed(error_chain(&e)))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(PollError::Unauthorized {
                registry: registry.to_owned(),
                image: scope.to_owned(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}")));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| failed(format!("the answer is not a token: {}", error_chain(&e))))?;
        let token = answer
            .token
            .or(answer.access_token)
            .ok_or_else(|| failed("the answer has no token".into()))?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| failed("the token is not a valid header value".into()))?;
        Ok(Grant {
            header,
            // Renewed a little early, so a poll never sends one that expires on the way.
            until: Some(Instant::now() + lifetime.saturating_sub(Duration::from_secs(5))),
        })
    }
}

fn basic(user: &str, password: &str) -> HeaderValue {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut v =
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or(HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

fn header_digest(headers: &HeaderMap) -> Option<String> {
    headers
        .get(DIGEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|d| d.starts_with("sha256:"))
        .map(str::to_owned)
}

/// An error and its causes, for messages.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap as AxumHeaders, Method, StatusCode as AxumStatus};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{any, get};
    use std::sync::Arc;

    #[test]
    fn bearer_and_basic_challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://auth.example/token""#),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: None,
                scope: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="cdi-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None, "no realm");
    }

    /// A registry on 127.0.0.1 (plain HTTP) that requires a bearer token from its own token
    /// endpoint, counts requests, and either sends `Docker-Content-Digest` or not.
    #[derive(Default)]
    struct Fake {
        log: Mutex<Vec<String>>,
        with_digest_header: bool,
        token_needs_basic: Option<String>,
    }

    const MANIFEST: &[u8] = br#"{"schemaVersion":2}"#;

    async fn manifests(
        State(fake): State<Arc<Fake>>,
        method: Method,
        headers: AxumHeaders,
        axum::extract::Path(path): axum::extract::Path<String>,
    ) -> Response {
        fake.log
            .lock()
            .expect("log")
            .push(format!("{method} /v2/{path}"));
        let port = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0k") {
            return (
                AxumStatus::UNAUTHORIZED,
                [(
                    "www-authenticate",
                    format!(
                        "Bearer realm=\"http://{port}/token\",service=\"fake\",scope=\"repository:disks/fedora:pull\""
                    ),
                )],
            )
                .into_response();
        }
        if !path.ends_with("/manifests/42") {
            return AxumStatus::NOT_FOUND.into_response();
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(MANIFEST)));
        let mut response = if method == Method::HEAD {
            AxumStatus::OK.into_response()
        } else {
            MANIFEST.into_response()
        };
        if fake.with_digest_header {
            response.headers_mut().insert(
                "docker-content-digest",
                digest.parse().expect("header value"),
            );
        }
        response
    }

    async fn token(State(fake): State<Arc<Fake>>, headers: AxumHeaders) -> Response {
        fake.log.lock().expect("log").push("GET /token".into());
        if let Some(want) = &fake.token_needs_basic
            && headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want)
        {
            return AxumStatus::UNAUTHORIZED.into_response();
        }
        (
            [("content-type", "application/json")],
            serde_json::json!({"token": "t0k", "expires_in": 300}).to_string(),
        )
            .into_response()
    }

    async fn start(fake: Fake) -> (String, Arc<Fake>) {
        let fake = Arc::new(fake);
        let app = Router::new()
            .route("/v2/{*path}", any(manifests))
            .route("/token", get(token))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr.to_string(), fake)
    }

    fn insecure(credentials: Option<(&str, &str)>) -> RegistryAccess {
        RegistryAccess {
            credentials: credentials.map(|(u, p)| (u.into(), p.into())),
            ca_pem: Vec::new(),
            insecure: true,
        }
    }

    fn manifest_digest() -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(MANIFEST)))
    }

    #[tokio::test]
    async fn a_bearer_registry_costs_one_head_per_poll_once_the_token_is_kept() {
        let (host, fake) = start(Fake {
            with_digest_header: true,
            token_needs_basic: Some(basic("u", "p").to_str().expect("ascii").to_owned()),
            ..Fake::default()
        })
        .await;
        let poller = Poller::default();
        let reference =
            cdi_imageref::parse(&format!("docker://{host}/disks/fedora:42")).expect("reference");
        let access = insecure(Some(("u", "p")));
        let first = poller.digest(&reference, &access).await.expect("digest");
        assert_eq!(first, manifest_digest());
        let log_after_first = fake.log.lock().expect("log").clone();
        assert_eq!(
            log_after_first,
            [
                "HEAD /v2/disks/fedora/manifests/42",
                "GET /token",
                "HEAD /v2/disks/fedora/manifests/42"
            ]
        );
        let second = poller.digest(&reference, &access).await.expect("digest");
        assert_eq!(second, first);
        let log = fake.log.lock().expect("log").clone();
        assert_eq!(log.len(), 4, "one more HEAD, no token: {log:?}");
        assert_eq!(log[3], "HEAD /v2/disks/fedora/manifests/42");
    }

    #[tokio::test]
    async fn without_a_digest_header_the_manifest_is_fetched_and_hashed() {
        let (host, fake) = start(Fake::default()).await;
        let reference =
            cdi_imageref::parse(&format!("docker://{host}/disks/fedora:42")).expect("reference");
        let digest = Poller::default()
            .digest(&reference, &insecure(None))
            .await
            .expect("digest");
        assert_eq!(digest, manifest_digest());
        let log = fake.log.lock().expect("log").clone();
        assert_eq!(
            log.last().map(String::as_str),
            Some("GET /v2/disks/fedora/manifests/42")
        );
        assert_eq!(
            log.iter().filter(|l| l.starts_with("GET /v2")).count(),
            1,
            "{log:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_tag_and_refused_credentials_are_told_apart() {
        let (host, _fake) = start(Fake {
            with_digest_header: true,
            token_needs_basic: Some(basic("u", "p").to_str().expect("ascii").to_owned()),
            ..Fake::default()
        })
        .await;
        let poller = Poller::default();
        let gone =
            cdi_imageref::parse(&format!("docker://{host}/disks/fedora:41")).expect("reference");
        let err = poller
            .digest(&gone, &insecure(Some(("u", "p"))))
            .await
            .expect_err("no such tag");
        assert_eq!(err.reason(), "ImageNotFound", "{err}");
        let tagged =
            cdi_imageref::parse(&format!("docker://{host}/disks/fedora:42")).expect("reference");
        let err = poller
            .digest(&tagged, &insecure(Some(("u", "wrong"))))
            .await
            .expect_err("bad password");
        assert_eq!(err.reason(), "RegistryUnauthorized", "{err}");
        assert!(err.to_string().contains("secretRef"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_registry_says_so() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let reference =
            cdi_imageref::parse(&format!("docker://127.0.0.1:{port}/a/b:1")).expect("reference");
        let err = Poller::default()
            .digest(&reference, &insecure(None))
            .await
            .expect_err("nothing listens");
        assert_eq!(err.reason(), "RegistryUnreachable", "{err}");
    }
}
