//! Every response that is not a success: a status and a sentence for the client.

use axum::response::{IntoResponse, Response};
use cdi_datapath::ErrorKind;
use cdi_worker::Failure;
use http::StatusCode;

use crate::state::Refusal;

/// A refused or failed request.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub message: String,
    /// Extra response headers (tus offsets on a conflict).
    pub headers: Vec<(&'static str, String)>,
}

impl AppError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> AppError {
        self.headers.push((name, value));
        self
    }

    /// A failed import: 400 for what the client sent (an invalid or unsupported image, one
    /// too large for the volume, a digest mismatch, a stream that ended early), 507 when the
    /// volume is full, 500 for the rest. The message says what is left on the volume.
    pub fn from_failure(f: &Failure) -> AppError {
        let e = &f.error;
        tracing::warn!(error = %e, target = %f.target_state, "Upload failed.");
        let (status, prefix) = match e.kind() {
            ErrorKind::TooLarge => (
                StatusCode::BAD_REQUEST,
                "effective image size is larger than the reported available storage: ",
            ),
            ErrorKind::InvalidImage
            | ErrorKind::Unsupported
            | ErrorKind::ChecksumMismatch
            | ErrorKind::Config
            | ErrorKind::Network => (StatusCode::BAD_REQUEST, "upload refused: "),
            ErrorKind::NoSpace => (StatusCode::INSUFFICIENT_STORAGE, "Saving stream failed: "),
            ErrorKind::NotFound | ErrorKind::Auth | ErrorKind::Io => {
                (StatusCode::INTERNAL_SERVER_ERROR, "Saving stream failed: ")
            }
        };
        AppError::new(status, format!("{prefix}{e} ({})", f.target_state))
    }
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> AppError {
        match r {
            Refusal::Busy(why) => AppError::new(StatusCode::SERVICE_UNAVAILABLE, why),
            Refusal::Done => AppError::new(
                StatusCode::CONFLICT,
                "the upload already completed; this server takes no more",
            ),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.message, "Request failed.");
        }
        let mut response = (self.status, format!("{}\n", self.message)).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = value.parse() {
                response.headers_mut().insert(name, v);
            }
        }
        response
    }
}
