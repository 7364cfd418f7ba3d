//! Making upload and clone tokens. The handlers depend on the small [`TokenIssuer`] trait so
//! that their tests can use a stub; the server uses [`cdi_token::Issuer`] (PS256 with the
//! signing key, issuer `cdi-apiserver`, 5 minutes).

use std::time::SystemTime;

/// Why no token could be made (a broken key; never the caller's fault).
pub type IssueError = Box<dyn std::error::Error + Send + Sync>;

/// Makes tokens, valid from now.
pub trait TokenIssuer: Send + Sync + 'static {
    /// The upload token for claim `pvc_name` in `namespace`.
    fn issue_upload(&self, pvc_name: &str, namespace: &str) -> Result<String, IssueError>;
    /// The clone token for `request` (what the DataVolume webhook adds).
    fn issue_clone(&self, request: &cdi_token::CloneRequest) -> Result<String, IssueError>;
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

    fn issue_clone(&self, request: &cdi_token::CloneRequest) -> Result<String, IssueError> {
        Ok(cdi_token::Issuer::issue_clone(
            self,
            request,
            SystemTime::now(),
        )?)
    }
}
