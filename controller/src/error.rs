//! The controller's error type. A reconcile that fails is logged, counted (by [`ErrorKind`])
//! and retried with back-off; problems the user must fix in a DataVolume (a claim that cannot
//! be rendered) are not errors but DataVolume status and events.

use std::net::SocketAddr;

/// What went wrong while reconciling or starting.
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
    #[error(
        "the cdi.kubevirt.io CRDs are not installed on this cluster: apply them first \
         (kubectl apply -f deploy/crds/, or kubectl apply -k deploy/)"
    )]
    CrdsMissing,
    #[error(
        "CDIConfig importProxy.trustedCAProxy names ConfigMap {name}, which does not exist in \
         namespace {namespace}: create it there or clear the setting"
    )]
    ProxyCaMissing { name: String, namespace: String },
    #[error("binding the metrics and probes address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("DataImportCron {cron}: {message}")]
    SourcePoll { cron: String, message: String },
    #[error("the watch caches stopped before they were filled: {0}")]
    WatchCaches(#[source] kube::runtime::reflector::store::WriterDropped),
}

/// The class of an [`Error`], for metrics and for deciding what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The API server refused or could not be reached: retried.
    Api,
    /// An object lacks a field the controller needs (name, namespace).
    MalformedObject,
    /// Something the controller produced could not be serialised (a bug).
    Internal,
    /// The upload CAs or a certificate could not be made or read.
    Certificate,
    /// The cluster or CDIConfig lacks something an administrator must provide.
    Configuration,
    /// The controller could not start serving.
    Startup,
    /// A DataImportCron's source (a registry) could not be polled: retried with back-off.
    Source,
}

impl ErrorKind {
    /// The label of the reconcile-error metric.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Api => "kube",
            ErrorKind::MalformedObject => "missing_key",
            ErrorKind::Internal => "serialize",
            ErrorKind::Certificate => "certificate",
            ErrorKind::Configuration => "configuration",
            ErrorKind::Startup => "startup",
            ErrorKind::Source => "source",
        }
    }
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Kube(_) => ErrorKind::Api,
            Error::MissingObjectKey(_) => ErrorKind::MalformedObject,
            Error::Serialize { .. } => ErrorKind::Internal,
            Error::Certificate(_) => ErrorKind::Certificate,
            Error::CrdsMissing | Error::ProxyCaMissing { .. } => ErrorKind::Configuration,
            Error::Bind { .. } | Error::WatchCaches(_) => ErrorKind::Startup,
            Error::SourcePoll { .. } => ErrorKind::Source,
        }
    }

    /// A label for the reconcile-error metric.
    pub fn metric_label(&self) -> &'static str {
        self.kind().label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_errors_say_what_to_provide() {
        let e = Error::ProxyCaMissing {
            name: "proxy-ca".into(),
            namespace: "cdi".into(),
        };
        assert_eq!(e.kind(), ErrorKind::Configuration);
        assert_eq!(e.metric_label(), "configuration");
        assert!(e.to_string().contains("create it there"), "{e}");
        assert!(Error::CrdsMissing.to_string().contains("kubectl apply"));
        assert_eq!(
            Error::MissingObjectKey(".metadata.name").metric_label(),
            "missing_key"
        );
    }
}
