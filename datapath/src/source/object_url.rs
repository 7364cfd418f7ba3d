//! Object paths in URLs, shared by the S3 and GCS sources: a URL's path as decoded segments,
//! and URLs built back with each segment escaped as request signing expects (everything but
//! RFC 3986's unreserved characters).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use reqwest::Url;

const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The decoded segments of `url`'s path (`/a%20b/c` → `["a b", "c"]`).
pub(crate) fn segments(url: &Url) -> Vec<String> {
    url.path()
        .trim_start_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// `base` followed by each of `segments`, escaped, `/`-separated.
pub(crate) fn join<'a>(base: &str, segments: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = base.trim_end_matches('/').to_owned();
    for segment in segments {
        out.push('/');
        out.extend(utf8_percent_encode(segment, SEGMENT));
    }
    out
}

/// A header map of `pairs`, for the object sources' tests.
#[cfg(test)]
pub(crate) fn header_map(pairs: &[(&str, &str)]) -> reqwest::header::HeaderMap {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut h = reqwest::header::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_with_everything_but_unreserved_escaped() {
        let url = Url::parse("https://h/b/dir%20x/a+b:c~d.img").expect("url");
        let parts = segments(&url);
        assert_eq!(parts, ["b", "dir x", "a+b:c~d.img"]);
        assert_eq!(
            join("https://h/", parts.iter().map(String::as_str)),
            "https://h/b/dir%20x/a%2Bb%3Ac~d.img"
        );
    }
}
