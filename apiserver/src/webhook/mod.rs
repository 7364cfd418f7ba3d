//! The DataVolume admission webhooks kube-apiserver calls (AdmissionReview v1 over TLS, no
//! request-header authentication: the caller is kube-apiserver, the user is in the review).
//!
//! ```text
//!  POST /datavolume-mutate   (CREATE)          mutate.rs: clone authorization + clone token
//!  POST /datavolume-validate (CREATE, UPDATE)  validate.rs: cdi_crds::validate rules
//!        body ─► review.rs parse ─► admit ─► AdmissionReview with the response
//! ```
//!
//! A body that is not a DataVolume review is refused in a response (kube-apiserver then fails
//! the request, as the webhooks are registered `failurePolicy: Fail`).

pub mod clone_auth;
pub mod mutate;
pub mod review;
pub mod validate;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview};

pub use mutate::{DataSources, KubeDataSources, MutateState};
use review::Refusal;

/// Path of the mutating webhook.
pub const MUTATE_PATH: &str = "/datavolume-mutate";
/// Path of the validating webhook.
pub const VALIDATE_PATH: &str = "/datavolume-validate";
/// An AdmissionReview holds the object and, on update, the old one: each at most etcd's 1.5 MiB.
pub const MAX_REVIEW_BYTES: usize = 4 * 1024 * 1024;

/// The webhooks' routes.
pub fn router(state: MutateState) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(mutate_handler))
        .route(VALIDATE_PATH, post(validate_handler))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(state)
}

type ReviewBody = Json<AdmissionReview<DynamicObject>>;

async fn mutate_handler(
    State(state): State<MutateState>,
    body: Result<Bytes, BytesRejection>,
) -> ReviewBody {
    let response = match read(body) {
        Ok(request) => mutate::admit(&state, &request).await,
        Err(response) => *response,
    };
    Json(response.into_review())
}

async fn validate_handler(body: Result<Bytes, BytesRejection>) -> ReviewBody {
    let response = match read(body) {
        Ok(request) => validate::admit(&request),
        Err(response) => *response,
    };
    Json(response.into_review())
}

/// The request of a review body, or the response refusing it.
fn read(body: Result<Bytes, BytesRejection>) -> Result<review::Request, Box<AdmissionResponse>> {
    let body = body.map_err(|e| {
        Box::new(review::refuse_unreadable(
            None,
            Refusal::bad_request(format!("reading the body: {e}")),
        ))
    })?;
    review::parse(&body).map_err(|(uid, e)| {
        tracing::warn!(error = %e, "Unreadable AdmissionReview.");
        Box::new(review::refuse_unreadable(
            uid,
            Refusal::bad_request(e.to_string()),
        ))
    })
}
