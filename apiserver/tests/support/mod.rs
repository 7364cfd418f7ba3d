//! Shared by the router, TLS and end-to-end tests: a stub issuer and authorizer, and
//! certificates made with rcgen.

#![allow(dead_code)] // each test binary uses part of it

use std::sync::{Arc, Mutex};

use cdi_apiserver::authz::{Authorizer, Decision};
use cdi_apiserver::issuer::{IssueError, TokenIssuer};
use futures_util::future::BoxFuture;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;

/// A response's status and body: JSON when it is, else the text as a JSON string.
pub async fn status_and_body(
    response: http::Response<axum::body::Body>,
) -> (http::StatusCode, serde_json::Value) {
    use http_body_util::BodyExt;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    (status, body)
}

/// Issues `token:<namespace>/<pvc>` and `clone:…` tokens (or fails, when told to).
#[derive(Debug, Default)]
pub struct StubIssuer {
    pub fail: bool,
}

impl TokenIssuer for StubIssuer {
    fn issue_upload(&self, pvc_name: &str, namespace: &str) -> Result<String, IssueError> {
        if self.fail {
            return Err("the key is broken".into());
        }
        Ok(format!("token:{namespace}/{pvc_name}"))
    }

    /// `clone:<source ns>/<source name>-><target ns>/<target name>`.
    fn issue_clone(&self, request: &cdi_token::CloneRequest) -> Result<String, IssueError> {
        if self.fail {
            return Err("the key is broken".into());
        }
        Ok(format!(
            "clone:{}/{}->{}/{}",
            request.source.namespace,
            request.source.name,
            request.target_namespace,
            request.target_name
        ))
    }
}

/// What the stub authorizer answers.
#[derive(Debug, Clone)]
pub enum Answer {
    Decide(Decision),
    /// The SubjectAccessReview itself fails (the apiserver is unreachable, ...).
    Fail,
}

/// Answers every review the same way and records them.
#[derive(Debug)]
pub struct StubAuthorizer {
    pub answer: Answer,
    pub reviews: Mutex<Vec<SubjectAccessReview>>,
}

impl StubAuthorizer {
    pub fn new(answer: Answer) -> Arc<StubAuthorizer> {
        Arc::new(StubAuthorizer {
            answer,
            reviews: Mutex::new(Vec::new()),
        })
    }

    pub fn allowing() -> Arc<StubAuthorizer> {
        StubAuthorizer::new(Answer::Decide(Decision::Allowed))
    }

    pub fn reviews(&self) -> Vec<SubjectAccessReview> {
        self.reviews.lock().expect("not poisoned").clone()
    }
}

impl Authorizer for StubAuthorizer {
    fn review(&self, review: SubjectAccessReview) -> BoxFuture<'_, Result<Decision, kube::Error>> {
        self.reviews.lock().expect("not poisoned").push(review);
        let answer = self.answer.clone();
        Box::pin(async move {
            match answer {
                Answer::Decide(decision) => Ok(decision),
                Answer::Fail => Err(kube::Error::TlsRequired),
            }
        })
    }
}

/// A CA and the certificates it signs.
pub struct Ca {
    pub pem: String,
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
}

/// A leaf certificate and its key, in PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-signed");
        Ca {
            pem: cert.pem(),
            params,
            key,
        }
    }

    fn sign(&self, params: rcgen::CertificateParams) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("key");
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signed");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client certificate with common name `cn`.
    pub fn client(&self, cn: &str) -> Leaf {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A serving certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cdi-apiserver");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }
}
