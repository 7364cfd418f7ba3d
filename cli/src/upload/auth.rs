//! The bearer token sent with each request, and what to do when it is refused.
//!
//! Upload tokens last 5 minutes and the proxy checks one on every request, so a resumable
//! upload that runs longer needs fresh ones: `image-upload` can ask the cluster for another
//! ([`Auth::refreshing`]); a token given with `--token` cannot be renewed, and a refusal ends
//! the upload (the state file lets the next run continue it).

use std::time::{Duration, Instant};

use cdi_datapath::ErrorKind;
use futures_util::future::BoxFuture;

use super::error::UploadError;
use super::tus::Refusal;

/// A refreshable token is renewed once it is this old (tokens last 5 minutes).
const RENEW_AFTER: Duration = Duration::from_secs(4 * 60);

/// Asks for a new token.
pub type Refresh = Box<dyn FnMut() -> BoxFuture<'static, Result<String, UploadError>> + Send>;

/// Who the client is to the server.
pub struct Auth {
    token: Option<String>,
    refresh: Option<Refresh>,
    fetched: Instant,
    /// A client certificate is presented (talking to an upload server directly).
    client_certificate: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("refreshable", &self.refresh.is_some())
            .field("client_certificate", &self.client_certificate)
            .finish()
    }
}

impl Auth {
    /// A token that cannot be renewed (or none, with a client certificate).
    pub fn fixed(token: Option<String>, client_certificate: bool) -> Auth {
        Auth {
            token,
            refresh: None,
            fetched: Instant::now(),
            client_certificate,
        }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    async fn renew(&mut self) -> Result<(), UploadError> {
        if let Some(refresh) = self.refresh.as_mut() {
            self.token = Some(refresh().await?);
            self.fetched = Instant::now();
        }
        Ok(())
    }

    /// Renews a refreshable token that is about to expire.
    pub async fn keep_fresh(&mut self) -> Result<(), UploadError> {
        if self.refresh.is_some() && self.fetched.elapsed() > RENEW_AFTER {
            self.renew().await?;
        }
        Ok(())
    }

    /// The server refused us (401 or 403): renew the token if we can and it is not brand new,
    /// else say what to do.
    pub async fn refused(&mut self, r: &Refusal) -> Result<(), UploadError> {
        if self.refresh.is_some() && self.fetched.elapsed() > Duration::from_secs(5) {
            return self.renew().await;
        }
        Err(self.refusal_error(r))
    }

    fn refusal_error(&self, r: &Refusal) -> UploadError {
        if self.client_certificate {
            UploadError::new(
                ErrorKind::Auth,
                format!("the upload server refused the client certificate ({r})"),
                "use a certificate signed by the CA in the server's CLIENT_CERT_FILE, with CLIENT_NAME as its common name",
            )
        } else if self.token.is_none() {
            UploadError::new(
                ErrorKind::Auth,
                format!("the server wants a token ({r})"),
                "pass --token (from an UploadTokenRequest), or use `cdictl image-upload`, which gets one",
            )
        } else {
            UploadError::new(
                ErrorKind::Auth,
                format!("the token was refused ({r})"),
                "get a fresh one (tokens last 5 minutes) and run the same command again: the upload continues where it stopped",
            )
        }
    }
}
