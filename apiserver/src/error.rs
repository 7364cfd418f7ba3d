//! What can stop the server from starting (or reloading its certificates).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    ReadingFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not PEM the server can use: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0}: no certificate in the file")]
    NoCertificate(PathBuf),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the request-header CA bundle holds no usable certificate: {0}")]
    ClientCa(String),
    #[error("signing key {path}: {source}")]
    SigningKey {
        path: PathBuf,
        #[source]
        source: cdi_token::TokenError,
    },
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("listening on {addr}: {source}")]
    Listening {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
