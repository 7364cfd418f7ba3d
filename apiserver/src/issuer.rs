//! Making upload tokens. The handler depends on the small [`TokenIssuer`] trait so that its
//! tests can use a stub; the server uses [`cdi_token::Issuer`] (PS256 with the signing key).

use std::time::SystemTime;

/// Why no token could be made (a broken key; never the caller's fault).
pub type IssueError = Box<dyn std::error::Error + Send + Sync>;

/// Makes the upload token for claim `pvc_name` in `namespace`.
pub trait TokenIssuer: Send + Sync + 'static {
    fn issue_upload(&self, pvc_name: &str, namespace: &str) -> Result<String, IssueError>;
}

impl TokenIssuer for cdi_token::Issuer {
    fn issue_upload(&self, pvc_name: &str, namespace: &str) -> Result<String, IssueError> {
        Ok(cdi_token::Issuer::issue_upload(
            self,
            pvc_name,
            namespace,
            SystemTime::now(),
        )?)
    }
}
