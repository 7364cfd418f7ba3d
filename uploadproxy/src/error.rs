//! The one error type of the request path and the response each error gets.

use axum::response::{IntoResponse, Response};
use cdi_token::TokenError;
use http::{HeaderValue, StatusCode, header};
use tracing::{info, warn};

/// Why a request was not forwarded (or forwarding failed). Bodies are plain text; the ones
/// that echo a claim name are HTML-escaped as upstream does.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No `Authorization` header (and, on tus paths, no `token` query parameter).
    #[error("missing Authorization header (Bearer token)")]
    MissingToken,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("malformed Authorization header; expected \"Bearer <token>\"")]
    MalformedAuthorization,
    /// The token was refused.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The claim cannot take an upload (yet); the message is upstream's.
    #[error("{0}")]
    NotReady(String),
    /// The upload server could not be reached or broke off.
    #[error("error in upload-proxy: {0}")]
    Backend(String),
}

impl AppError {
    /// The status code of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::MissingToken | AppError::MalformedAuthorization => StatusCode::BAD_REQUEST,
            AppError::Token(e) => StatusCode::from_u16(e.kind().http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            AppError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Backend(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            warn!(status = status.as_u16(), error = %self, "Upload request not forwarded.");
        } else {
            info!(status = status.as_u16(), error = %self, "Upload request refused.");
        }
        let body = html_escape(&self.to_string());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}

/// The five characters Go's `html.EscapeString` escapes, escaped the same way.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_special_characters_are_escaped_as_go_does() {
        assert_eq!(
            html_escape(r#"PVC <b>"x"</b> & 'y'"#),
            "PVC &lt;b&gt;&#34;x&#34;&lt;/b&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn each_error_has_cdis_status_code() {
        assert_eq!(AppError::MissingToken.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            AppError::MalformedAuthorization.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            AppError::Token(TokenError::BadSignature).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            AppError::Token(TokenError::MissingName).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            AppError::NotReady("x".into()).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            AppError::Backend("x".into()).status(),
            StatusCode::BAD_GATEWAY
        );
    }
}
