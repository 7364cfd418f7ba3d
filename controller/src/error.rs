//! The controller's error type. A reconcile that fails is logged, counted and retried with
//! back-off; problems the user must fix (a claim that cannot be rendered) are not errors but
//! DataVolume status and events.

/// What went wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
    #[error("serialising {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("{0}")]
    Io(String),
}

impl Error {
    /// A label for the reconcile-error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingObjectKey(_) => "missing_key",
            Error::Serialize { .. } => "serialize",
            Error::Certificate(_) => "certificate",
            Error::Io(_) => "io",
        }
    }
}
