//! Request-header authentication, as every aggregated API server does it.
//!
//! kube-apiserver authenticates the user, then proxies the request to us over TLS with its
//! front-proxy client certificate and the identity in headers (`X-Remote-User`,
//! `X-Remote-Group`, `X-Remote-Extra-<key>`). The headers are believed only when the connection
//! carries a client certificate signed by the request-header CA and, if a list of allowed names
//! is published, whose common name is on it. The CA, names and header names are published by
//! kube-apiserver in ConfigMap `kube-system/extension-apiserver-authentication`.
//!
//! The TLS layer verifies the chain (see `tls.rs`); this module decides, per request, from the
//! verified certificate's name and the headers. Pure: no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderMap;

/// Namespace of the ConfigMap kube-apiserver publishes its authentication settings in.
pub const AUTH_CONFIG_MAP_NAMESPACE: &str = "kube-system";
/// Name of that ConfigMap.
pub const AUTH_CONFIG_MAP_NAME: &str = "extension-apiserver-authentication";

const KEY_CLIENT_CA: &str = "requestheader-client-ca-file";
const KEY_ALLOWED_NAMES: &str = "requestheader-allowed-names";
const KEY_USERNAME_HEADERS: &str = "requestheader-username-headers";
const KEY_GROUP_HEADERS: &str = "requestheader-group-headers";
const KEY_EXTRA_PREFIXES: &str = "requestheader-extra-headers-prefix";

/// The request-header settings, from the ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    /// PEM of the CA that signs the front proxy's client certificate; `None` when kube-apiserver
    /// runs without `--requestheader-client-ca-file` (then nobody is authenticated).
    pub client_ca_pem: Option<Arc<str>>,
    /// Common names allowed to assert identities; empty means any name the CA signed.
    pub allowed_names: Vec<String>,
    /// Header names carrying the user name, first present wins (lowercase).
    pub username_headers: Vec<String>,
    /// Header names carrying groups, all values of all of them (lowercase).
    pub group_headers: Vec<String>,
    /// Prefixes of headers carrying extra attributes (lowercase).
    pub extra_header_prefixes: Vec<String>,
}

impl Default for RequestHeaderConfig {
    /// No CA, any name, the default headers.
    fn default() -> Self {
        RequestHeaderConfig {
            client_ca_pem: None,
            allowed_names: Vec::new(),
            username_headers: vec!["x-remote-user".into()],
            group_headers: vec!["x-remote-group".into()],
            extra_header_prefixes: vec!["x-remote-extra-".into()],
        }
    }
}

/// A value of the ConfigMap that is not what kube-apiserver writes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{AUTH_CONFIG_MAP_NAMESPACE}/{AUTH_CONFIG_MAP_NAME} key {key} is not a JSON list of strings: {detail}"
)]
pub struct ConfigError {
    pub key: &'static str,
    pub detail: String,
}

impl RequestHeaderConfig {
    /// Reads the ConfigMap's `data`. kube-apiserver writes each list as a JSON array of strings;
    /// a missing or empty list of headers means the defaults (`X-Remote-User`, ...).
    pub fn from_config_map(data: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let list = |key: &'static str| -> Result<Vec<String>, ConfigError> {
            match data.get(key).map(|s| s.trim()) {
                None | Some("") => Ok(Vec::new()),
                Some(text) => serde_json::from_str::<Vec<String>>(text).map_err(|e| ConfigError {
                    key,
                    detail: e.to_string(),
                }),
            }
        };
        let lowercase = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let defaults = RequestHeaderConfig::default();
        let or_default = |v: Vec<String>, d: Vec<String>| if v.is_empty() { d } else { v };
        Ok(RequestHeaderConfig {
            client_ca_pem: data
                .get(KEY_CLIENT_CA)
                .filter(|pem| !pem.trim().is_empty())
                .map(|pem| Arc::from(pem.as_str())),
            allowed_names: list(KEY_ALLOWED_NAMES)?,
            username_headers: or_default(
                lowercase(list(KEY_USERNAME_HEADERS)?),
                defaults.username_headers,
            ),
            group_headers: or_default(lowercase(list(KEY_GROUP_HEADERS)?), defaults.group_headers),
            extra_header_prefixes: or_default(
                lowercase(list(KEY_EXTRA_PREFIXES)?),
                defaults.extra_header_prefixes,
            ),
        })
    }
}

/// What the TLS layer established about the client, attached to each request of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCert {
    /// No client certificate was presented.
    None,
    /// A certificate that chains to `trusted_ca` (the request-header CA in force when the
    /// connection was made; a certificate from any other CA fails the handshake).
    Verified {
        common_name: Option<String>,
        trusted_ca: Arc<str>,
    },
}

/// The user kube-apiserver authenticated, as it told us.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub username: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why a request's identity is not believed. Each is answered with 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthnError {
    #[error(
        "the request-header authentication settings ({AUTH_CONFIG_MAP_NAMESPACE}/{AUTH_CONFIG_MAP_NAME}) have not been read yet"
    )]
    NotConfigured,
    #[error(
        "kube-apiserver publishes no request-header CA (--requestheader-client-ca-file), so no request can be authenticated"
    )]
    NoRequestHeaderCa,
    #[error(
        "no client certificate signed by the request-header CA: send requests through kube-apiserver"
    )]
    NoClientCertificate,
    #[error("the request-header CA changed since this connection was made; reconnect")]
    StaleConnection,
    #[error("client certificate name {0:?} is not one of the allowed request-header names")]
    NameNotAllowed(String),
    #[error("no user name in headers {0:?}")]
    NoUser(Vec<String>),
}

/// Believes the identity headers of a request if its connection's certificate allows it.
pub fn authenticate(
    config: &RequestHeaderConfig,
    cert: &ClientCert,
    headers: &HeaderMap,
) -> Result<UserInfo, AuthnError> {
    let current_ca = config
        .client_ca_pem
        .as_ref()
        .ok_or(AuthnError::NoRequestHeaderCa)?;
    let ClientCert::Verified {
        common_name,
        trusted_ca,
    } = cert
    else {
        return Err(AuthnError::NoClientCertificate);
    };
    if trusted_ca != current_ca {
        return Err(AuthnError::StaleConnection);
    }
    if !config.allowed_names.is_empty() {
        let name = common_name.clone().unwrap_or_default();
        if !config.allowed_names.contains(&name) {
            return Err(AuthnError::NameNotAllowed(name));
        }
    }

    let username = config
        .username_headers
        .iter()
        .flat_map(|h| headers.get_all(h.as_str()))
        .filter_map(|v| v.to_str().ok())
        .find(|v| !v.is_empty())
        .ok_or_else(|| AuthnError::NoUser(config.username_headers.clone()))?
        .to_owned();
    let groups = config
        .group_headers
        .iter()
        .flat_map(|h| headers.get_all(h.as_str()))
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        // HeaderName is always lowercase.
        let Some(key) = config
            .extra_header_prefixes
            .iter()
            .find_map(|p| name.as_str().strip_prefix(p.as_str()))
        else {
            continue;
        };
        let (Some(key), Ok(value)) = (percent_decode(key), value.to_str()) else {
            continue;
        };
        if !key.is_empty() {
            extra
                .entry(key.to_lowercase())
                .or_default()
                .push(value.to_owned());
        }
    }
    Ok(UserInfo {
        username,
        groups,
        extra,
    })
}

/// Extra keys may hold characters a header name cannot (`authentication.kubernetes.io/...`),
/// so kube-apiserver percent-encodes them. `None` if the encoding is broken.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nfront-proxy CA\n-----END CERTIFICATE-----\n";

    fn config() -> RequestHeaderConfig {
        RequestHeaderConfig::from_config_map(&BTreeMap::from([
            (KEY_CLIENT_CA.to_owned(), CA.to_owned()),
            (
                KEY_ALLOWED_NAMES.to_owned(),
                r#"["front-proxy-client"]"#.to_owned(),
            ),
            (
                KEY_USERNAME_HEADERS.to_owned(),
                r#"["X-Remote-User"]"#.to_owned(),
            ),
            (
                KEY_GROUP_HEADERS.to_owned(),
                r#"["X-Remote-Group"]"#.to_owned(),
            ),
            (
                KEY_EXTRA_PREFIXES.to_owned(),
                r#"["X-Remote-Extra-"]"#.to_owned(),
            ),
        ]))
        .expect("valid config")
    }

    fn cert(name: &str) -> ClientCert {
        ClientCert::Verified {
            common_name: Some(name.to_owned()),
            trusted_ca: Arc::from(CA),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, http::HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn config_map_lists_are_read_as_json_and_lowercased() {
        let c = config();
        assert_eq!(c.client_ca_pem.as_deref(), Some(CA));
        assert_eq!(c.allowed_names, vec!["front-proxy-client"]);
        assert_eq!(c.username_headers, vec!["x-remote-user"]);
        assert_eq!(c.group_headers, vec!["x-remote-group"]);
        assert_eq!(c.extra_header_prefixes, vec!["x-remote-extra-"]);
    }

    #[test]
    fn config_map_without_requestheader_keys_has_no_ca_and_default_headers() {
        let data = BTreeMap::from([("client-ca-file".to_owned(), CA.to_owned())]);
        let c = RequestHeaderConfig::from_config_map(&data).expect("valid");
        assert_eq!(c, RequestHeaderConfig::default());
    }

    #[test]
    fn config_map_list_that_is_not_json_is_refused() {
        let data = BTreeMap::from([(
            KEY_ALLOWED_NAMES.to_owned(),
            "front-proxy-client".to_owned(),
        )]);
        let err = RequestHeaderConfig::from_config_map(&data).expect_err("not JSON");
        assert_eq!(err.key, KEY_ALLOWED_NAMES);
    }

    #[test]
    fn allowed_name_with_headers_gives_the_user_groups_and_extra() {
        let h = headers(&[
            ("x-remote-user", "alice"),
            ("x-remote-group", "dev"),
            ("x-remote-group", "system:authenticated"),
            ("x-remote-extra-scopes", "a"),
            ("x-remote-extra-scopes", "b"),
            (
                "x-remote-extra-authentication.kubernetes.io%2fcredential-id",
                "X509SHA256=ab",
            ),
        ]);
        let user = authenticate(&config(), &cert("front-proxy-client"), &h).expect("trusted");
        assert_eq!(
            user,
            UserInfo {
                username: "alice".into(),
                groups: vec!["dev".into(), "system:authenticated".into()],
                extra: BTreeMap::from([
                    (
                        "authentication.kubernetes.io/credential-id".into(),
                        vec!["X509SHA256=ab".into()]
                    ),
                    ("scopes".into(), vec!["a".into(), "b".into()]),
                ]),
            }
        );
    }

    #[test]
    fn certificate_name_not_allowed_is_refused() {
        let h = headers(&[("x-remote-user", "alice")]);
        let err = authenticate(&config(), &cert("someone-else"), &h).expect_err("refused");
        assert_eq!(err, AuthnError::NameNotAllowed("someone-else".into()));
    }

    #[test]
    fn any_name_is_allowed_when_no_names_are_published() {
        let mut c = config();
        c.allowed_names.clear();
        let h = headers(&[("x-remote-user", "alice")]);
        let user = authenticate(&c, &cert("anything"), &h).expect("trusted");
        assert_eq!(user.username, "alice");
    }

    #[test]
    fn request_without_client_certificate_is_refused() {
        let h = headers(&[("x-remote-user", "system:admin")]);
        let err = authenticate(&config(), &ClientCert::None, &h).expect_err("refused");
        assert_eq!(err, AuthnError::NoClientCertificate);
    }

    #[test]
    fn certificate_verified_against_a_replaced_ca_is_refused() {
        let old = ClientCert::Verified {
            common_name: Some("front-proxy-client".into()),
            trusted_ca: Arc::from("old CA"),
        };
        let h = headers(&[("x-remote-user", "alice")]);
        let err = authenticate(&config(), &old, &h).expect_err("refused");
        assert_eq!(err, AuthnError::StaleConnection);
    }

    #[test]
    fn nobody_is_authenticated_without_a_request_header_ca() {
        let h = headers(&[("x-remote-user", "alice")]);
        let err = authenticate(
            &RequestHeaderConfig::default(),
            &cert("front-proxy-client"),
            &h,
        )
        .expect_err("refused");
        assert_eq!(err, AuthnError::NoRequestHeaderCa);
    }

    #[test]
    fn trusted_connection_without_user_header_is_refused() {
        let h = headers(&[("x-remote-group", "dev")]);
        let err = authenticate(&config(), &cert("front-proxy-client"), &h).expect_err("refused");
        assert_eq!(err, AuthnError::NoUser(vec!["x-remote-user".into()]));
    }

    #[test]
    fn custom_header_names_are_honoured() {
        let mut c = config();
        c.username_headers = vec!["x-user".into()];
        let h = headers(&[("x-remote-user", "ignored"), ("x-user", "bob")]);
        let user = authenticate(&c, &cert("front-proxy-client"), &h).expect("trusted");
        assert_eq!(user.username, "bob");
    }

    #[test]
    fn broken_percent_encoding_in_an_extra_key_drops_that_key() {
        let h = headers(&[("x-remote-user", "alice"), ("x-remote-extra-bad%zz", "v")]);
        let user = authenticate(&config(), &cert("front-proxy-client"), &h).expect("trusted");
        assert!(user.extra.is_empty(), "{:?}", user.extra);
    }
}
