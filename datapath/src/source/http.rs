//! A plain streaming HTTP(S) GET. Compression is never negotiated or decoded by the client: the
//! checksum covers the bytes as served and the format is detected from them.

use std::io::Read;

use bytes::Bytes;

use super::{Source, read_chunk};
use crate::error::{Error, ErrorKind};

/// One GET, streamed.
pub struct HttpSource {
    url: String,
    body: reqwest::blocking::Response,
    len: Option<u64>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("url", &self.url)
            .field("len", &self.len)
            .finish()
    }
}

impl HttpSource {
    /// Sends the GET and checks the status; the body is read by [`Source::next_chunk`].
    pub fn open(url: &str) -> Result<Self, Error> {
        let shown = redact(url);
        let http = |message: String, kind| Error::Http {
            url: shown.clone(),
            message,
            kind,
        };
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("cdi-rs/", env!("CARGO_PKG_VERSION")))
            .timeout(None)
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| http(e.to_string(), ErrorKind::Config))?;
        let resp = client
            .get(url)
            .header(reqwest::header::ACCEPT_ENCODING, "identity")
            .send()
            .map_err(|e| http(error_chain(&e), ErrorKind::Network))?;
        let status = resp.status();
        if !status.is_success() {
            let kind = match status.as_u16() {
                404 | 410 => ErrorKind::NotFound,
                401 | 403 => ErrorKind::Config,
                _ => ErrorKind::Network,
            };
            return Err(http(format!("server answered {status}"), kind));
        }
        let len = resp.content_length();
        Ok(HttpSource {
            url: shown,
            body: resp,
            len,
        })
    }
}

impl Source for HttpSource {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn total_len(&self) -> Option<u64> {
        self.len
    }

    fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        read_chunk(&mut self.body as &mut dyn Read).map_err(|e| Error::Http {
            url: self.url.clone(),
            message: format!("reading the body: {e}"),
            kind: ErrorKind::Network,
        })
    }
}

/// The URL without user information, for logs and messages.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        cur = s.source();
    }
    msg
}
