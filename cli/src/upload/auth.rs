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

    /// A token renewed by `refresh` before it expires and when it is refused.
    pub fn refreshing(token: String, refresh: Refresh) -> Auth {
        Auth {
            token: Some(token),
            refresh: Some(refresh),
            fetched: Instant::now(),
            client_certificate: false,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn unauthorized() -> Refusal {
        Refusal {
            status: 401,
            message: "token expired".into(),
            offset: None,
        }
    }

    #[test]
    fn a_refused_fixed_token_ends_the_upload_with_the_token_advice() {
        let mut auth = Auth::fixed(Some("t".into()), false);
        let e = block_on(auth.refused(&unauthorized())).expect_err("cannot renew");
        assert_eq!(e.kind, ErrorKind::Auth);
        assert_eq!(
            e.message,
            "the token was refused (401 Unauthorized: token expired)"
        );
        assert!(e.advice.contains("tokens last 5 minutes"), "{}", e.advice);
        let mut mtls = Auth::fixed(None, true);
        let e = block_on(mtls.refused(&unauthorized())).expect_err("cannot renew");
        assert!(e.message.contains("client certificate"), "{}", e.message);
    }

    #[test]
    fn a_refreshable_token_is_renewed_when_refused_but_not_when_brand_new() {
        let calls = Arc::new(AtomicU32::new(0));
        let refresh: Refresh = {
            let calls = Arc::clone(&calls);
            Box::new(move || {
                let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
                Box::pin(async move { Ok(format!("token-{n}")) })
            })
        };
        let mut auth = Auth::refreshing("token-0".into(), refresh);
        // A token refused the moment it was issued is not the age problem: stop.
        assert!(block_on(auth.refused(&unauthorized())).is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 0);
        auth.fetched = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .expect("clock");
        block_on(auth.refused(&unauthorized())).expect("renewed");
        assert_eq!(auth.token(), Some("token-1"));
        // And an aging one is renewed before it expires.
        auth.fetched = Instant::now()
            .checked_sub(RENEW_AFTER + Duration::from_secs(1))
            .expect("clock");
        block_on(auth.keep_fresh()).expect("renewed");
        assert_eq!(auth.token(), Some("token-2"));
        block_on(auth.keep_fresh()).expect("fresh");
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }
}
