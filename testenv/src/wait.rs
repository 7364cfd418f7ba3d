//! Polling until something holds, for tests against an eventually consistent API.

use std::time::Duration;

use crate::Error;

/// Polls `check` every 200 ms until it returns `Some`, or fails naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Setup(format!(
                "timed out after {timeout:?} waiting for {what}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long [`until`] waits.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// [`eventually`] with [`TEST_TIMEOUT`], for tests: panics with the timeout message instead of
/// returning it.
pub async fn until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match eventually(what, TEST_TIMEOUT, check).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}
