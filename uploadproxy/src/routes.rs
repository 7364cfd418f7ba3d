//! The proxy's paths.

/// Upstream's upload paths (`ProxyPaths`), forwarded after the token and readiness checks.
pub const UPLOAD_PATHS: &[&str] = &[
    "/v1beta1/upload",
    "/v1alpha1/upload",
    "/v1beta1/upload-async",
    "/v1alpha1/upload-async",
    "/v1beta1/upload-form",
    "/v1alpha1/upload-form",
    "/v1beta1/upload-form-async",
    "/v1alpha1/upload-form-async",
];

/// The resumable (tus 1.0.0) endpoint: uploads are created here and live under it.
pub const TUS: &str = "/v1beta1/upload-tus";
/// Liveness (upstream's only probe path).
pub const HEALTHZ: &str = "/healthz";
/// Readiness: every file was loaded before the proxy listened, so serving means ready.
pub const READYZ: &str = "/readyz";
/// The browser page's assets live under this prefix.
pub const STATIC_PREFIX: &str = "/static/";
/// tus-js-client's bundles (from the page directory's `node_modules`) live under this prefix.
pub const TUS_JS_CLIENT_PREFIX: &str = "/vendor/tus-js-client/";

/// The tus endpoint or one upload under it (`/v1beta1/upload-tus/<id>`).
pub fn is_tus(path: &str) -> bool {
    path == TUS
        || path
            .strip_prefix(TUS)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// A path the proxy serves.
pub fn is_known(path: &str) -> bool {
    path == HEALTHZ
        || path == READYZ
        || path == "/"
        || path.starts_with(STATIC_PREFIX)
        || path.starts_with(TUS_JS_CLIENT_PREFIX)
        || UPLOAD_PATHS.contains(&path)
        || is_tus(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tus_paths_are_the_endpoint_and_one_level_below_it() {
        assert!(is_tus("/v1beta1/upload-tus"));
        assert!(is_tus("/v1beta1/upload-tus/abc"));
        assert!(!is_tus("/v1beta1/upload-tus/"));
        assert!(!is_tus("/v1beta1/upload-tus/a/b"));
        assert!(!is_tus("/v1beta1/upload-tusx"));
        assert!(!is_tus("/v1alpha1/upload-tus"));
    }

    #[test]
    fn known_paths_are_the_routes() {
        for path in UPLOAD_PATHS {
            assert!(is_known(path), "{path}");
        }
        assert!(is_known("/healthz"));
        assert!(is_known("/readyz"));
        assert!(is_known("/static/app.js"));
        assert!(is_known("/vendor/tus-js-client/tus.min.js"));
        assert!(!is_known("/vendor/other/x.js"));
        assert!(
            !is_known("/v1beta1/upload-archive"),
            "not a proxy path upstream either"
        );
        assert!(!is_known("/metrics"));
    }
}
