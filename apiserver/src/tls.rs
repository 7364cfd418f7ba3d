//! Serving TLS (rustls, aws-lc-rs): the serving certificate from files, and client certificates
//! verified against the request-header CA when one is presented (kube-apiserver's front-proxy
//! certificate). A connection without one is accepted and its requests are answered 401 by
//! the router, except the probes; a certificate from another CA fails the handshake.
//!
//! The configuration is swapped whole when the CA (from the cluster) or the serving files
//! change; each new connection takes the current one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::Error;
use crate::authn::ClientCert;

/// The serving certificate chain and its key, as read from files.
#[derive(Debug)]
pub struct ServingCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for ServingCert {
    fn clone(&self) -> Self {
        ServingCert {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl ServingCert {
    /// Reads a PEM chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_files(cert: &Path, key: &Path) -> Result<ServingCert, Error> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| Error::ReadingFile {
                path: path.to_path_buf(),
                source,
            })
        };
        ServingCert::from_pem(&read(cert)?, &read(key)?, cert, key)
    }

    fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert: &Path,
        key: &Path,
    ) -> Result<ServingCert, Error> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::Pem {
                path: cert.to_path_buf(),
                source,
            })?;
        if chain.is_empty() {
            return Err(Error::NoCertificate(cert.to_path_buf()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| Error::Pem {
            path: key.to_path_buf(),
            source,
        })?;
        Ok(ServingCert { chain, key })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server configuration presenting `serving`, and verifying client certificates against
/// `client_ca_pem` when given (optional: a client may present none).
pub fn server_config(
    serving: &ServingCert,
    client_ca_pem: Option<&str>,
) -> Result<Arc<ServerConfig>, Error> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| Error::ClientCa(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::ClientCa(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(Error::ClientCa("no certificate in the bundle".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(serving.chain.clone(), serving.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What a connection's handshake established about its client.
pub fn client_cert(conn: &rustls::ServerConnection, trusted_ca: Option<&Arc<str>>) -> ClientCert {
    let (Some(leaf), Some(ca)) = (conn.peer_certificates().and_then(|c| c.first()), trusted_ca)
    else {
        return ClientCert::None;
    };
    ClientCert::Verified {
        common_name: common_name(leaf),
        trusted_ca: ca.clone(),
    }
}

/// The subject's first common name.
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// The configuration new connections get, and the CA its client verifier trusts.
#[derive(Debug, Clone)]
pub struct Current {
    pub config: Arc<ServerConfig>,
    pub trusted_ca: Option<Arc<str>>,
}

/// The serving configuration, replaced when the request-header CA or the serving certificate
/// changes.
#[derive(Debug)]
pub struct Tls {
    state: RwLock<(ServingCert, Current)>,
}

impl Tls {
    /// Serves `serving`, trusting no client certificate until [`Tls::set_client_ca`].
    pub fn new(serving: ServingCert) -> Result<Tls, Error> {
        let config = server_config(&serving, None)?;
        Ok(Tls {
            state: RwLock::new((
                serving,
                Current {
                    config,
                    trusted_ca: None,
                },
            )),
        })
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Current {
        match self.state.read() {
            Ok(state) => state.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    /// Trusts client certificates from `ca` (a PEM bundle) from now on; `None` trusts none.
    /// Unchanged CA: nothing is rebuilt. A CA that cannot be used is an error and trusts none.
    pub fn set_client_ca(&self, ca: Option<Arc<str>>) -> Result<(), Error> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if state.1.trusted_ca == ca {
            return Ok(());
        }
        match server_config(&state.0, ca.as_deref()) {
            Ok(config) => {
                state.1 = Current {
                    config,
                    trusted_ca: ca,
                };
                Ok(())
            }
            Err(e) => {
                state.1 = Current {
                    config: server_config(&state.0, None)?,
                    trusted_ca: None,
                };
                Err(e)
            }
        }
    }

    /// Serves `serving` from now on (the CA stays).
    pub fn set_serving(&self, serving: ServingCert) -> Result<(), Error> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let config = server_config(&serving, state.1.trusted_ca.as_deref())?;
        *state = (
            serving,
            Current {
                config,
                trusted_ca: state.1.trusted_ca.clone(),
            },
        );
        Ok(())
    }
}

/// The serving certificate's files, polled for changes (Secrets mounted in a pod are replaced
/// atomically, so a changed pair is read whole).
#[derive(Debug, Clone)]
pub struct ServingFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ServingFiles {
    /// The files' contents, to compare with the last ones read.
    pub fn contents(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        Some((
            std::fs::read(&self.cert).ok()?,
            std::fs::read(&self.key).ok()?,
        ))
    }

    pub fn load(&self) -> Result<ServingCert, Error> {
        ServingCert::from_files(&self.cert, &self.key)
    }
}
