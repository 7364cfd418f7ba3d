//! Request-header authentication over real TLS connections on loopback: which client
//! certificates the handshake accepts, and what the router then makes of them.

mod support;

use std::sync::Arc;

use cdi_apiserver::authn::RequestHeaderConfig;
use cdi_apiserver::tls::{ServingFiles, Tls};
use cdi_apiserver::{AppState, app, serve};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::{Ca, Leaf, StubAuthorizer, StubIssuer};
use tokio::sync::{oneshot, watch};

const CREATE: &str = "/apis/upload.cdi.kubevirt.io/v1beta1/namespaces/vms/uploadtokenrequests";

struct Running {
    base: String,
    serving_ca: Ca,
    tls: Arc<Tls>,
    files: ServingFiles,
    auth: watch::Sender<Option<Arc<RequestHeaderConfig>>>,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Trusts `front_proxy_ca` from now on, as a new version of the ConfigMap would.
    fn trust(&self, front_proxy_ca: &Ca) {
        let ca: Arc<str> = Arc::from(front_proxy_ca.pem.as_str());
        self.tls.set_client_ca(Some(ca.clone())).expect("usable CA");
        self.auth.send_replace(Some(Arc::new(RequestHeaderConfig {
            client_ca_pem: Some(ca),
            allowed_names: vec!["front-proxy-client".into()],
            ..RequestHeaderConfig::default()
        })));
    }

    /// A client trusting our serving CA and presenting `identity`, if any.
    fn client(&self, identity: Option<&Leaf>) -> reqwest::Client {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.serving_ca.pem.as_bytes()) {
            roots.add(cert.expect("PEM")).expect("root");
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some(leaf) => {
                let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("PEM");
                let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client cert")
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .build()
            .expect("client")
    }
}

async fn start(front_proxy_ca: &Ca) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let serving_ca = Ca::new("serving CA");
    let serving = serving_ca.server(&["localhost"]);
    let files = ServingFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    std::fs::write(&files.cert, &serving.cert_pem).expect("write");
    std::fs::write(&files.key, &serving.key_pem).expect("write");
    let tls = Arc::new(Tls::new(files.load().expect("serving cert")).expect("TLS"));
    let (auth, auth_rx) = watch::channel(None);
    let state = AppState {
        issuer: Arc::new(StubIssuer::default()),
        authorizer: StubAuthorizer::allowing(),
        auth_config: auth_rx,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve::serve(listener, tls.clone(), app(state), async {
        let _ = stopped.await;
    }));
    let running = Running {
        base: format!("https://localhost:{port}"),
        serving_ca,
        tls,
        files,
        auth,
        _stop: stop,
        _dir: dir,
    };
    running.trust(front_proxy_ca);
    running
}

async fn get(client: &reqwest::Client, url: String) -> Result<(u16, String), reqwest::Error> {
    let response = client
        .get(url)
        .header("X-Remote-User", "alice")
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

#[tokio::test]
async fn proxy_certificate_from_the_request_header_ca_is_trusted() {
    let front = Ca::new("front-proxy CA");
    let server = start(&front).await;
    let client = server.client(Some(&front.client("front-proxy-client")));

    let (status, body) = get(
        &client,
        format!("{}/apis/upload.cdi.kubevirt.io/v1beta1", server.base),
    )
    .await
    .expect("request");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("uploadtokenrequests"), "{body}");

    let created = client
        .post(format!("{}{CREATE}", server.base))
        .header("X-Remote-User", "alice")
        .header("Content-Type", "application/json")
        .body(r#"{"spec":{"pvcName":"disk"}}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(created.status().as_u16(), 200);
    let body: serde_json::Value =
        serde_json::from_str(&created.text().await.expect("body")).expect("JSON");
    assert_eq!(body["status"]["token"], "token:vms/disk");
}

#[tokio::test]
async fn certificate_from_another_ca_fails_the_handshake() {
    let front = Ca::new("front-proxy CA");
    let server = start(&front).await;
    let impostor = Ca::new("front-proxy CA").client("front-proxy-client");
    let client = server.client(Some(&impostor));
    let result = get(&client, format!("{}/apis", server.base)).await;
    assert!(result.is_err(), "answered: {result:?}");
}

#[tokio::test]
async fn certificate_from_the_ca_with_a_name_not_allowed_is_401() {
    let front = Ca::new("front-proxy CA");
    let server = start(&front).await;
    let client = server.client(Some(&front.client("someone-else")));
    let (status, body) = get(&client, format!("{}/apis", server.base))
        .await
        .expect("request");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("someone-else"), "{body}");
}

#[tokio::test]
async fn client_without_certificate_gets_401_but_probes_answer() {
    let front = Ca::new("front-proxy CA");
    let server = start(&front).await;
    let client = server.client(None);
    let (status, body) = get(&client, format!("{}/apis", server.base))
        .await
        .expect("request");
    assert_eq!(status, 401, "{body}");
    let (status, body) = get(&client, format!("{}/healthz", server.base))
        .await
        .expect("request");
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn after_the_ca_is_replaced_only_the_new_one_is_trusted() {
    let old = Ca::new("old front-proxy CA");
    let server = start(&old).await;
    let new = Ca::new("new front-proxy CA");
    server.trust(&new);

    let old_client = server.client(Some(&old.client("front-proxy-client")));
    assert!(
        get(&old_client, format!("{}/apis", server.base))
            .await
            .is_err()
    );
    let new_client = server.client(Some(&new.client("front-proxy-client")));
    let (status, body) = get(&new_client, format!("{}/apis", server.base))
        .await
        .expect("request");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn new_connections_get_a_replaced_serving_certificate() {
    let front = Ca::new("front-proxy CA");
    let mut server = start(&front).await;
    let identity = front.client("front-proxy-client");

    let renewed_ca = Ca::new("renewed serving CA");
    let renewed = renewed_ca.server(&["localhost"]);
    std::fs::write(&server.files.cert, &renewed.cert_pem).expect("write");
    std::fs::write(&server.files.key, &renewed.key_pem).expect("write");
    let serving = server.files.load().expect("renewed pair");
    server.tls.set_serving(serving).expect("usable");

    // A fresh client that trusts only the old CA no longer verifies the server.
    let stale = server.client(Some(&identity));
    assert!(get(&stale, format!("{}/apis", server.base)).await.is_err());
    server.serving_ca = renewed_ca;
    let current = server.client(Some(&identity));
    let (status, body) = get(&current, format!("{}/apis", server.base))
        .await
        .expect("request");
    assert_eq!(status, 200, "{body}");
}
