//! The router without sockets: each request carries the [`ClientCert`] the TLS layer would
//! have attached, and the authorizer and issuer are stubs.

mod support;

use std::sync::Arc;

use axum::body::Body;
use cdi_apiserver::authn::{ClientCert, RequestHeaderConfig};
use cdi_apiserver::authz::Decision;
use cdi_apiserver::{AppState, app};
use http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use support::{Answer, StubAuthorizer, StubIssuer};
use tower::ServiceExt;

const CA: &str = "front-proxy CA PEM";
const CREATE: &str = "/apis/upload.cdi.kubevirt.io/v1beta1/namespaces/vms/uploadtokenrequests";
const VALID: &str = r#"{"apiVersion":"upload.cdi.kubevirt.io/v1beta1","kind":"UploadTokenRequest","metadata":{"name":"x"},"spec":{"pvcName":"disk"}}"#;

fn config() -> RequestHeaderConfig {
    RequestHeaderConfig {
        client_ca_pem: Some(Arc::from(CA)),
        allowed_names: vec!["front-proxy-client".into()],
        ..RequestHeaderConfig::default()
    }
}

struct Server {
    state: AppState,
    authorizer: Arc<StubAuthorizer>,
}

fn server_with(authorizer: Arc<StubAuthorizer>, issuer: StubIssuer) -> Server {
    let (_tx, rx) = tokio::sync::watch::channel(Some(Arc::new(config())));
    Server {
        state: AppState {
            issuer: Arc::new(issuer),
            authorizer: authorizer.clone(),
            auth_config: rx,
        },
        authorizer,
    }
}

fn server() -> Server {
    server_with(StubAuthorizer::allowing(), StubIssuer::default())
}

fn proxied() -> ClientCert {
    ClientCert::Verified {
        common_name: Some("front-proxy-client".into()),
        trusted_ca: Arc::from(CA),
    }
}

/// A request as kube-apiserver proxies it for user alice in group dev.
fn request(method: Method, path: &str, body: &str) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("X-Remote-User", "alice")
        .header("X-Remote-Group", "dev")
        .header("X-Remote-Group", "system:authenticated")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    request.extensions_mut().insert(proxied());
    request
}

async fn send(server: &Server, request: Request<Body>) -> (StatusCode, Value) {
    let response = app(server.state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    support::status_and_body(response).await
}

fn assert_status_object(body: &Value, code: u16, reason: &str) {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
}

mod create {
    use super::*;

    #[tokio::test]
    async fn allowed_user_gets_the_request_back_with_a_token() {
        let server = server();
        let (status, body) = send(&server, request(Method::POST, CREATE, VALID)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({
                "apiVersion": "upload.cdi.kubevirt.io/v1beta1",
                "kind": "UploadTokenRequest",
                "metadata": {"name": "x", "namespace": "vms"},
                "spec": {"pvcName": "disk"},
                "status": {"token": "token:vms/disk"},
            })
        );
    }

    #[tokio::test]
    async fn the_access_review_is_for_the_proxied_user_in_the_path_namespace() {
        let server = server();
        send(&server, request(Method::POST, CREATE, VALID)).await;
        let reviews = server.authorizer.reviews();
        assert_eq!(reviews.len(), 1);
        let spec = &reviews[0].spec;
        assert_eq!(spec.user.as_deref(), Some("alice"));
        assert_eq!(
            spec.groups,
            Some(vec!["dev".to_owned(), "system:authenticated".to_owned()])
        );
        let attributes = spec
            .resource_attributes
            .as_ref()
            .expect("resource attributes");
        assert_eq!(attributes.namespace.as_deref(), Some("vms"));
        assert_eq!(attributes.verb.as_deref(), Some("create"));
        assert_eq!(attributes.resource.as_deref(), Some("uploadtokenrequests"));
    }

    #[tokio::test]
    async fn body_with_only_spec_is_accepted_as_upstream_accepts_it() {
        let server = server();
        let (status, body) = send(
            &server,
            request(Method::POST, CREATE, r#"{"spec":{"pvcName":"disk"}}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"]["token"], "token:vms/disk");
    }

    #[tokio::test]
    async fn denied_user_gets_403_naming_user_verb_and_resource() {
        let server = server_with(
            StubAuthorizer::new(Answer::Decide(Decision::Denied { reason: None })),
            StubIssuer::default(),
        );
        let (status, body) = send(&server, request(Method::POST, CREATE, VALID)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_status_object(&body, 403, "Forbidden");
        let message = body["message"].as_str().expect("message");
        assert!(
            message.contains("User \"alice\" cannot create resource \"uploadtokenrequests\""),
            "{message}"
        );
        assert!(message.contains("in the namespace \"vms\""), "{message}");
    }

    #[tokio::test]
    async fn failed_access_review_is_a_500_and_no_token() {
        let server = server_with(StubAuthorizer::new(Answer::Fail), StubIssuer::default());
        let (status, body) = send(&server, request(Method::POST, CREATE, VALID)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_status_object(&body, 500, "InternalError");
    }

    #[tokio::test]
    async fn failed_signing_is_a_500_without_the_cause() {
        let server = server_with(StubAuthorizer::allowing(), StubIssuer { fail: true });
        let (status, body) = send(&server, request(Method::POST, CREATE, VALID)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !body["message"].as_str().unwrap_or("").contains("broken"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn missing_pvc_name_is_400() {
        let server = server();
        for body in [
            r#"{"metadata":{"name":"x"}}"#,
            r#"{"spec":{}}"#,
            r#"{"spec":{"pvcName":""}}"#,
            r#"{"spec":{"pvcName":7}}"#,
        ] {
            let (status, answer) = send(&server, request(Method::POST, CREATE, body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_status_object(&answer, 400, "BadRequest");
            assert!(
                answer["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("spec.pvcName"),
                "{answer}"
            );
        }
    }

    #[tokio::test]
    async fn body_that_is_not_an_upload_token_request_is_400() {
        let server = server();
        for body in [
            "not json",
            "[1]",
            r#"{"kind":"Pod","spec":{"pvcName":"d"}}"#,
            r#"{"apiVersion":"v1","spec":{"pvcName":"d"}}"#,
            r#"{"metadata":{"name":"x","namespace":"other"},"spec":{"pvcName":"d"}}"#,
            r#"{"metadata":"x","spec":{"pvcName":"d"}}"#,
        ] {
            let (status, answer) = send(&server, request(Method::POST, CREATE, body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
            assert_status_object(&answer, 400, "BadRequest");
        }
    }

    #[tokio::test]
    async fn non_json_content_type_is_415() {
        let server = server();
        let mut req = request(Method::POST, CREATE, VALID);
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/vnd.kubernetes.protobuf"),
        );
        let (status, body) = send(&server, req).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_status_object(&body, 415, "UnsupportedMediaType");
    }

    #[tokio::test]
    async fn oversized_body_is_413() {
        let server = server();
        let big = format!(
            r#"{{"spec":{{"pvcName":"disk"}},"padding":"{}"}}"#,
            "x".repeat(cdi_apiserver::app::MAX_BODY_BYTES)
        );
        let (status, body) = send(&server, request(Method::POST, CREATE, &big)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_status_object(&body, 413, "RequestEntityTooLarge");
    }

    #[tokio::test]
    async fn invalid_namespace_is_400() {
        let server = server();
        let path =
            "/apis/upload.cdi.kubevirt.io/v1beta1/namespaces/Not_A_Label/uploadtokenrequests";
        let (status, _) = send(&server, request(Method::POST, path, VALID)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn other_verbs_are_405() {
        let server = server();
        for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
            let (status, body) = send(&server, request(method.clone(), CREATE, "")).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_status_object(&body, 405, "MethodNotAllowed");
        }
        assert!(server.authorizer.reviews().is_empty());
    }
}

mod authentication {
    use super::*;

    #[tokio::test]
    async fn request_without_client_certificate_is_401_even_with_identity_headers() {
        let server = server();
        let mut req = request(Method::POST, CREATE, VALID);
        req.extensions_mut().insert(ClientCert::None);
        let (status, body) = send(&server, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_status_object(&body, 401, "Unauthorized");
        assert!(server.authorizer.reviews().is_empty());
    }

    #[tokio::test]
    async fn certificate_with_a_name_not_allowed_is_401() {
        let server = server();
        let mut req = request(Method::GET, "/apis", "");
        req.extensions_mut().insert(ClientCert::Verified {
            common_name: Some("intruder".into()),
            trusted_ca: Arc::from(CA),
        });
        let (status, body) = send(&server, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body["message"].as_str().unwrap_or("").contains("intruder"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn nothing_is_authenticated_before_the_settings_are_read() {
        let (_tx, rx) = tokio::sync::watch::channel(None);
        let mut server = server();
        server.state.auth_config = rx;
        let (status, _) = send(&server, request(Method::POST, CREATE, VALID)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = send(&server, request(Method::GET, "/readyz", "")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn probes_need_no_certificate() {
        let server = server();
        for path in ["/healthz", "/readyz", "/livez"] {
            let mut req = request(Method::GET, path, "");
            req.extensions_mut().insert(ClientCert::None);
            let (status, body) = send(&server, req).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(body, "ok");
        }
    }
}

mod discovery {
    use super::*;

    #[tokio::test]
    async fn version_lists_uploadtokenrequests_as_create_only() {
        let server = server();
        let (status, body) = send(
            &server,
            request(Method::GET, "/apis/upload.cdi.kubevirt.io/v1beta1", ""),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["kind"], "APIResourceList");
        assert_eq!(body["resources"][0]["name"], "uploadtokenrequests");
        assert_eq!(body["resources"][0]["verbs"], json!(["create"]));
        assert_eq!(body["resources"][0]["namespaced"], true);
    }

    #[tokio::test]
    async fn apis_and_group_name_the_group() {
        let server = server();
        for (path, kind) in [
            ("/apis", "APIGroupList"),
            ("/apis/", "APIGroupList"),
            ("/apis/upload.cdi.kubevirt.io", "APIGroup"),
        ] {
            let (status, body) = send(&server, request(Method::GET, path, "")).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(body["kind"], kind, "{path}");
        }
    }

    #[tokio::test]
    async fn unknown_paths_and_openapi_are_404_status_objects() {
        let server = server();
        for path in [
            "/openapi/v2",
            "/openapi/v3",
            "/apis/upload.cdi.kubevirt.io/v1",
            "/api",
        ] {
            let (status, body) = send(&server, request(Method::GET, path, "")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_status_object(&body, 404, "NotFound");
        }
    }
}
