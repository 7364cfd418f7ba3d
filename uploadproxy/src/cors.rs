//! CORS for browsers on every route (upstream: `cors.AllowAll()`), and the proxy's own answer
//! to `OPTIONS`: a preflight needs no token, and a tus client's discovery request on the tus
//! paths gets the protocol's headers.
//!
//! Any origin is allowed. `Access-Control-Allow-Headers: *` would not cover `Authorization`
//! (the Fetch standard excludes it from the wildcard), so the headers are listed.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::routes;

const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Content-Length, Content-Digest, \
     Repr-Digest, Want-Repr-Digest, Want-Content-Digest, Tus-Resumable, Upload-Length, \
     Upload-Offset, Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Checksum, \
     Upload-Complete, Upload-Draft-Interop-Version, X-HTTP-Method-Override, X-Requested-With, \
     X-CDI-Content-Type";
const EXPOSE_HEADERS: &str = "Upload-Offset, Location, Upload-Length, Tus-Version, \
     Tus-Resumable, Tus-Max-Size, Tus-Extension, Tus-Checksum-Algorithm, Upload-Metadata, \
     Upload-Defer-Length, Upload-Concat, Upload-Expires, Upload-Complete, Repr-Digest, \
     Content-Digest, X-CDI-Checksum";
/// How long a browser may cache a preflight answer.
const MAX_AGE_SECS: &str = "86400";

/// The tus protocol headers of the proxy's `OPTIONS` answer on the tus paths.
pub const TUS_OPTIONS: &[(&str, &str)] = &[
    ("tus-resumable", "1.0.0"),
    ("tus-version", "1.0.0"),
    ("tus-extension", "creation,termination,checksum"),
    ("tus-checksum-algorithm", "sha1,sha256,md5"),
];

/// Middleware: answers `OPTIONS` on the proxy's routes itself, adds the CORS headers to
/// every other response.
pub async fn cors(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if request.method() == Method::OPTIONS && routes::is_known(path) {
        let tus = routes::is_tus(path);
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        add_cors(headers);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_SECS),
        );
        if tus {
            for (name, value) in TUS_OPTIONS {
                headers.insert(*name, HeaderValue::from_static(value));
            }
        }
        return response;
    }
    let mut response = next.run(request).await;
    add_cors(response.headers_mut());
    response
}

fn add_cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
}
