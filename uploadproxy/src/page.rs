//! The browser page's files, from the directory given by `--page-dir`: `/` is its
//! `index.html`, `/static/<path>` its `static/<path>`, and `/vendor/tus-js-client/<file>` the
//! npm package's `node_modules/tus-js-client/dist/<file>` (its built bundles; nothing else of
//! `node_modules` is reachable). 404 without a directory, for a missing file, and for any path
//! that would leave its directory.

use std::path::{Component, Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{self, HeaderValue};

use crate::app::AppState;

/// `GET /`.
pub async fn index(State(state): State<AppState>) -> Response {
    serve(state.page_dir(), "index.html").await
}

/// `GET /static/{*path}`.
pub async fn asset(State(state): State<AppState>, UrlPath(path): UrlPath<String>) -> Response {
    match relative(&path) {
        Some(relative) => serve(state.page_dir(), &Path::new("static").join(relative)).await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The page holds an upload token: only its own files run, it talks to this origin only, and
/// no other site may frame it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Where `npm ci` puts tus-js-client's bundles, under the page directory.
const TUS_JS_CLIENT_DIST: &str = "node_modules/tus-js-client/dist";

/// `GET /vendor/tus-js-client/{*path}`.
pub async fn tus_js_client(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
) -> Response {
    match relative(&path) {
        Some(relative) => {
            serve(
                state.page_dir(),
                &Path::new(TUS_JS_CLIENT_DIST).join(relative),
            )
            .await
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve(dir: Option<&Path>, relative: impl AsRef<Path>) -> Response {
    let Some(dir) = dir else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let path = dir.join(relative);
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(&path)),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            response
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `path` as a relative path of plain names only (no `..`, no root, nothing empty).
fn relative(path: &str) -> Option<PathBuf> {
    if path.is_empty() || path.contains('\\') || path.contains('\0') {
        return None;
    }
    let path = Path::new(path);
    path.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| path.to_path_buf())
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_served() {
        assert_eq!(relative("app.js"), Some(PathBuf::from("app.js")));
        assert_eq!(
            relative("img/logo.svg"),
            Some(PathBuf::from("img/logo.svg"))
        );
        for bad in ["", "../secret", "a/../../b", "/etc/passwd", "./a", "a\\b"] {
            assert_eq!(relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type(Path::new("index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("tus.min.js.map")),
            "application/json"
        );
        assert_eq!(content_type(Path::new("x.bin")), "application/octet-stream");
    }
}
