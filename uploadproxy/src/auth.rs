//! Finding the upload token in a request.
//!
//! As upstream, the `Authorization` header must match `(?i)^Bearer\s+([A-Za-z0-9\-._~+/]+)$`.
//! Browsers' tus clients cannot always set a header on every request (a `PATCH` resumed by
//! another tab, a plain link), so on the tus paths only the token may also come as the query
//! parameter `?token=<token>` (percent-encoded as any query value); the header wins when both
//! are present. The query is never logged and never forwarded. Every tus request is checked
//! on its own, so a client resuming after the token's 5 minutes asks for a fresh token; and
//! one that authenticates by query adds `?token=` to the upload URL the creation's `Location`
//! gives it.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::error::AppError;

/// Where a token may come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSources {
    /// The `Authorization` header only (the upstream upload paths).
    HeaderOnly,
    /// The header, else the `token` query parameter (the tus paths).
    HeaderOrQuery,
}

/// The token of a request with these `headers` and this raw `query`.
pub fn request_token(
    headers: &HeaderMap,
    query: Option<&str>,
    sources: TokenSources,
) -> Result<String, AppError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AppError::MalformedAuthorization)?;
        return bearer_token(value)
            .map(str::to_owned)
            .ok_or(AppError::MalformedAuthorization);
    }
    if sources == TokenSources::HeaderOrQuery
        && let Some(token) = query.and_then(query_token)
    {
        return if !token.is_empty() && token.chars().all(is_token_char) {
            Ok(token)
        } else {
            Err(AppError::MalformedAuthorization)
        };
    }
    Err(AppError::MissingToken)
}

/// The token of an `Authorization` header value, if it is `Bearer <token>`.
pub fn bearer_token(value: &str) -> Option<&str> {
    const SCHEME: &str = "bearer";
    let scheme = value.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    // Go's \s: tab, newline, form feed, carriage return, space.
    let token = rest.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if token.len() == rest.len() || token.is_empty() || !token.chars().all(is_token_char) {
        return None;
    }
    Some(token)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/')
}

/// The decoded value of the first `token` parameter of a raw query string.
fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == "token").then(|| percent_decode(value))
    })
}

/// `application/x-www-form-urlencoded` decoding of one value; invalid escapes are kept as
/// they are (and then fail the token character check).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            out.push(b' ');
            i += 1;
            continue;
        }
        if b == b'%'
            && let (Some(high), Some(low)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2)))
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: Option<&u8>) -> Option<u8> {
    match b? {
        b @ b'0'..=b'9' => Some(b - b'0'),
        b @ b'a'..=b'f' => Some(b - b'a' + 10),
        b @ b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_whitespace() {
        assert_eq!(bearer_token("Bearer abc.def-_~+/"), Some("abc.def-_~+/"));
        assert_eq!(bearer_token("bEaReR \t abc"), Some("abc"));
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer abc def"), None);
        assert_eq!(
            bearer_token("Bearer abc="),
            None,
            "= is not a token character"
        );
        assert_eq!(bearer_token("Bear"), None);
        assert_eq!(bearer_token("Bearer é"), None);
    }

    #[test]
    fn missing_and_malformed_headers_are_told_apart() {
        let none = HeaderMap::new();
        assert!(matches!(
            request_token(&none, None, TokenSources::HeaderOnly),
            Err(AppError::MissingToken)
        ));
        assert!(matches!(
            request_token(
                &with_authorization("Token x"),
                None,
                TokenSources::HeaderOnly
            ),
            Err(AppError::MalformedAuthorization)
        ));
        let token = request_token(
            &with_authorization("Bearer t.o.k"),
            None,
            TokenSources::HeaderOnly,
        );
        assert_eq!(token.ok().as_deref(), Some("t.o.k"));
    }

    #[test]
    fn query_token_counts_only_where_allowed_and_the_header_wins() {
        let none = HeaderMap::new();
        let query = Some("a=1&token=q.u.e%2By&b=2");
        assert!(matches!(
            request_token(&none, query, TokenSources::HeaderOnly),
            Err(AppError::MissingToken)
        ));
        let token = request_token(&none, query, TokenSources::HeaderOrQuery);
        assert_eq!(token.ok().as_deref(), Some("q.u.e+y"));
        let token = request_token(
            &with_authorization("Bearer h"),
            query,
            TokenSources::HeaderOrQuery,
        );
        assert_eq!(token.ok().as_deref(), Some("h"));
        assert!(matches!(
            request_token(&none, Some("token=a%20b"), TokenSources::HeaderOrQuery),
            Err(AppError::MalformedAuthorization)
        ));
        assert!(matches!(
            request_token(&none, Some("token="), TokenSources::HeaderOrQuery),
            Err(AppError::MalformedAuthorization)
        ));
        assert!(matches!(
            request_token(&none, Some("tokens=x"), TokenSources::HeaderOrQuery),
            Err(AppError::MissingToken)
        ));
    }

    #[test]
    fn invalid_percent_escapes_are_kept_literally() {
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
        assert_eq!(percent_decode("%41+b"), "A b");
    }
}
