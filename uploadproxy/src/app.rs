//! The router: health, the upload paths, the tus endpoint and the page, behind CORS.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware;
use axum::response::Response;
use axum::routing::{any, get};
use cdi_token::{Payload, Validator};
use tracing::info;

use crate::auth::{self, TokenSources};
use crate::backend;
use crate::cors;
use crate::error::AppError;
use crate::forward::{Forwarder, LocationRewrite};
use crate::naming;
use crate::page;
use crate::readiness::{self, ReadinessPolicy};
use crate::reload::Reloadable;
use crate::routes;
use crate::targets::UploadTargets;

/// Everything a request needs.
pub struct AppConfig {
    /// Checks upload tokens (reloaded when the public key file changes).
    pub validator: Reloadable<Validator>,
    /// Reads claims and upload pods.
    pub targets: Arc<dyn UploadTargets>,
    /// Sends requests on to upload servers.
    pub forwarder: Forwarder,
    /// How long to wait for a claim's upload server to be ready.
    pub readiness: ReadinessPolicy,
    /// The browser page's files (`--page-dir`), if any.
    pub page_dir: Option<PathBuf>,
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("validator", &self.validator)
            .field("forwarder", &self.forwarder)
            .field("readiness", &self.readiness)
            .field("page_dir", &self.page_dir)
            .finish_non_exhaustive()
    }
}

/// The shared state of the router (cheap to clone).
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<AppConfig>,
}

impl AppState {
    /// State from `config`.
    pub fn new(config: AppConfig) -> Self {
        AppState {
            inner: Arc::new(config),
        }
    }

    pub(crate) fn page_dir(&self) -> Option<&Path> {
        self.inner.page_dir.as_deref()
    }
}

/// The proxy's routes. Every response carries the CORS headers; `OPTIONS` on a route is
/// answered without a token.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route(routes::HEALTHZ, get(|| async { "OK" }))
        .route(routes::READYZ, get(|| async { "OK" }));
    for path in routes::UPLOAD_PATHS {
        router = router.route(path, any(upload));
    }
    router
        .route(routes::TUS, any(tus))
        .route(&format!("{}/{{id}}", routes::TUS), any(tus))
        .route("/", get(page::index))
        .route(
            &format!("{}{{*path}}", routes::STATIC_PREFIX),
            get(page::asset),
        )
        .route(
            &format!("{}{{*path}}", routes::TUS_JS_CLIENT_PREFIX),
            get(page::tus_js_client),
        )
        .layer(middleware::from_fn(cors::cors))
        .with_state(state)
}

/// One of upstream's upload paths: the token from the header only; archives rewritten.
async fn upload(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    let payload = authorize(&state, &request, TokenSources::HeaderOnly)?;
    let content = readiness::wait_until_ready(
        state.inner.targets.as_ref(),
        &payload.namespace,
        &payload.name,
        state.inner.readiness,
    )
    .await?;
    let path = readiness::upload_server_path(request.uri().path(), content).to_owned();
    forward(&state, &payload, &path, request, LocationRewrite::Keep).await
}

/// The tus endpoint: the token from the header or `?token=`; the path passes unchanged (the
/// upload server knows the claim's content type), and `Location` is pointed at the proxy.
async fn tus(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    let payload = authorize(&state, &request, TokenSources::HeaderOrQuery)?;
    readiness::wait_until_ready(
        state.inner.targets.as_ref(),
        &payload.namespace,
        &payload.name,
        state.inner.readiness,
    )
    .await?;
    let path = request.uri().path().to_owned();
    forward(&state, &payload, &path, request, LocationRewrite::Tus).await
}

fn authorize(
    state: &AppState,
    request: &Request,
    sources: TokenSources,
) -> Result<Payload, AppError> {
    let token = auth::request_token(request.headers(), request.uri().query(), sources)?;
    let payload = state
        .inner
        .validator
        .current()
        .validate(&token, SystemTime::now())?;
    info!(pvc = %payload.name, namespace = %payload.namespace, "Received a valid upload token.");
    Ok(payload)
}

async fn forward(
    state: &AppState,
    payload: &Payload,
    path: &str,
    request: Request<Body>,
    location: LocationRewrite,
) -> Result<Response, AppError> {
    let (namespace, claim) = (&payload.namespace, &payload.name);
    let pod_name = naming::upload_pod(claim);
    let pod = state
        .inner
        .targets
        .pod(namespace, &pod_name)
        .await
        .map_err(|e| AppError::Backend(e.to_string()))?
        .ok_or_else(|| AppError::Backend(format!("upload pod {pod_name} does not exist")))?;
    let server = backend::upload_server(&pod, claim, namespace).map_err(AppError::Backend)?;
    let method = request.method().clone();
    let response = state
        .inner
        .forwarder
        .forward(&server, path, request, location)
        .await?;
    info!(pvc = %claim, %namespace, %method, path, status = response.status().as_u16(),
        "Forwarded to the upload server.");
    Ok(response)
}
