//! The HTTP routes, testable without sockets: [`app`] builds the router from an [`AppState`];
//! the TLS layer (`serve.rs`) attaches each connection's [`ClientCert`] to its requests.
//!
//! ```text
//! /healthz, /readyz                                  no authentication (kubelet probes)
//! /, /apis, /apis/GROUP, /apis/GROUP/VERSION         discovery          ┐ request-header
//! POST /apis/GROUP/VERSION/namespaces/NS/uploadtokenrequests            │ authentication
//!      → SubjectAccessReview → body → token → 200 with status.token     ┘ (401 without)
//! anything else                                      404 Status
//! ```

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use cdi_crds::{UploadTokenRequest, UploadTokenRequestStatus};
use http::{HeaderMap, StatusCode, header};
use tokio::sync::watch;

use crate::authn::{self, ClientCert, RequestHeaderConfig, UserInfo};
use crate::authz::{self, Authorizer, Decision};
use crate::discovery::{self, GROUP, KIND, RESOURCE, VERSION};
use crate::issuer::TokenIssuer;
use crate::status::ApiError;

/// A token request is a few hundred bytes; anything much larger is not one.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Upstream answers a token request with 200 OK (not 201 Created: nothing is created);
/// clients accept either.
pub const CREATE_STATUS: StatusCode = StatusCode::OK;

/// The request-header settings as last read from the cluster; `None` until the first read.
pub type AuthConfig = watch::Receiver<Option<Arc<RequestHeaderConfig>>>;

/// What the handlers need.
#[derive(Clone)]
pub struct AppState {
    pub issuer: Arc<dyn TokenIssuer>,
    pub authorizer: Arc<dyn Authorizer>,
    pub auth_config: AuthConfig,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("auth_config_read", &self.auth_config.borrow().is_some())
            .finish_non_exhaustive()
    }
}

/// The router.
pub fn app(state: AppState) -> Router {
    let create_path = format!("/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{RESOURCE}");
    Router::new()
        .route("/", get(|| async { Json(discovery::root_paths()) }))
        .route("/apis", get(|| async { Json(discovery::api_group_list()) }))
        .route(
            "/apis/",
            get(|| async { Json(discovery::api_group_list()) }),
        )
        .route(
            &discovery::group_path(),
            get(|| async { Json(discovery::api_group()) }),
        )
        .route(
            &discovery::version_path(),
            get(|| async { Json(discovery::api_resource_list()) }),
        )
        .route(
            &create_path,
            post(create_upload_token).fallback(|| async {
                ApiError::method_not_allowed(format!(
                    "{RESOURCE}.{GROUP} only supports create (POST)"
                ))
            }),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_user))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            ApiError::not_found("the server could not find the requested resource")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Ready once the request-header settings have been read: before that every request but the
/// probes would be refused.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.auth_config.borrow().is_some() {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the request-header authentication settings",
        )
            .into_response()
    }
}

/// Authenticates the request from its connection's certificate and its identity headers, and
/// hands the [`UserInfo`] on to the handler.
async fn require_user(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let config = state.auth_config.borrow().clone();
    let cert = request
        .extensions()
        .get::<ClientCert>()
        .cloned()
        .unwrap_or(ClientCert::None);
    let user = config
        .ok_or(authn::AuthnError::NotConfigured)
        .and_then(|config| authn::authenticate(&config, &cert, request.headers()))
        .map_err(|e| {
            tracing::info!(path = request.uri().path(), error = %e, "Request not authenticated.");
            ApiError::unauthorized(e.to_string())
        })?;
    request.extensions_mut().insert(user);
    Ok(next.run(request).await)
}

async fn create_upload_token(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    Extension(user): Extension<UserInfo>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_namespace(&namespace)?;
    match state
        .authorizer
        .review(authz::access_review(&user, &namespace))
        .await
    {
        Ok(Decision::Allowed) => {}
        Ok(Decision::Denied { reason }) => {
            tracing::info!(user = %user.username, namespace, reason = ?reason, "Upload token refused.");
            return Err(ApiError::forbidden(authz::forbidden_message(
                &user,
                &namespace,
                reason.as_deref(),
            )));
        }
        Err(e) => {
            tracing::error!(user = %user.username, namespace, error = %e, "SubjectAccessReview failed.");
            return Err(ApiError::internal(format!(
                "the authorization check could not be made: {e}"
            )));
        }
    }
    check_content_type(&headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(format!("the body is larger than {MAX_BODY_BYTES} bytes"))
        } else {
            ApiError::bad_request(format!("reading the body: {e}"))
        }
    })?;
    let mut request = parse_request(&body, &namespace)?;
    let token = state
        .issuer
        .issue_upload(&request.spec.pvc_name, &namespace)
        .map_err(|e| {
            tracing::error!(namespace, pvc = %request.spec.pvc_name, error = %e, "Signing an upload token failed.");
            ApiError::internal("the upload token could not be signed")
        })?;
    tracing::info!(user = %user.username, namespace, pvc = %request.spec.pvc_name, "Upload token issued.");
    request.metadata.namespace = Some(namespace);
    request.status = Some(UploadTokenRequestStatus { token: Some(token) });
    Ok((CREATE_STATUS, Json(request)).into_response())
}

/// A namespace is a DNS label (what kube-apiserver would accept in the path).
fn check_namespace(namespace: &str) -> Result<(), ApiError> {
    let valid = !namespace.is_empty()
        && namespace.len() <= 63
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !namespace.starts_with('-')
        && !namespace.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "namespace {namespace:?} is not a valid DNS label"
        )))
    }
}

/// JSON only: there is no protobuf form of this type.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "application/json" || media.is_empty() {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(format!(
            "the body must be application/json, not {media}"
        )))
    }
}

/// Reads and checks the posted UploadTokenRequest. `metadata` and `spec` may be left out (as
/// upstream's decoder allows), but `spec.pvcName` is required; `apiVersion`, `kind` and
/// `metadata.namespace`, when given, must match the request.
pub fn parse_request(body: &[u8], namespace: &str) -> Result<UploadTokenRequest, ApiError> {
    let invalid = |detail: String| ApiError::bad_request(format!("{KIND} is invalid: {detail}"));
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| invalid("the body is not a JSON object".into()))?;
    let group_version = discovery::group_version();
    match object.get("apiVersion") {
        None => {}
        Some(v) if v.as_str() == Some(&group_version) => {}
        Some(v) => return Err(invalid(format!("apiVersion {v} is not {group_version:?}"))),
    }
    match object.get("kind") {
        None => {}
        Some(v) if v.as_str() == Some(KIND) => {}
        Some(v) => return Err(invalid(format!("kind {v} is not {KIND:?}"))),
    }
    for field in ["metadata", "spec"] {
        object
            .entry(field)
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
    }
    let pvc_name = object.get("spec").and_then(|s| s.get("pvcName"));
    if !matches!(pvc_name, Some(serde_json::Value::String(s)) if !s.is_empty()) {
        return Err(invalid("spec.pvcName: Required value".into()));
    }
    let request: UploadTokenRequest =
        serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
    if let Some(ns) = request
        .metadata
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        && ns != namespace
    {
        return Err(ApiError::bad_request(format!(
            "the namespace of the provided object ({ns}) does not match the namespace sent on the request ({namespace})"
        )));
    }
    Ok(request)
}
