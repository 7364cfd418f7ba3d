//! Registering an API server that runs as a local process on 127.0.0.1 with kube-apiserver's
//! aggregation layer.
//!
//! The aggregator resolves an APIService's Service to an address: the cluster IP for a
//! ClusterIP Service (nothing listens on 10.96.x.x here, and Endpoints may not name loopback
//! addresses), but for an `ExternalName` Service its external name and the APIService's port. So
//! an ExternalName Service `localhost` and `spec.service.port` = the process's port reach it.
//! The server's certificate is still verified, against the APIService's `caBundle`, for the
//! name `<service>.<namespace>.svc` ([`server_name`]).

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
    APIService, APIServiceSpec, ServiceReference,
};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use crate::Error;

/// Namespace of the Services made for aggregated API servers.
pub const SERVICE_NAMESPACE: &str = "default";
/// How long an APIService may take to become `Available` (about a second here).
pub const AVAILABLE_TIMEOUT: Duration = Duration::from_secs(60);
const FIELD_MANAGER: &str = "cdi-testenv";

/// The name of the Service made for `group`: `api-` and the group with dots as dashes, cut to
/// a DNS label.
pub fn service_name(group: &str) -> String {
    let mut name: String = format!("api-{group}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    while name.ends_with('-') {
        name.pop();
    }
    name
}

/// The DNS name kube-apiserver verifies the aggregated server's certificate against
/// (`api-upload-cdi-kubevirt-io.default.svc` for `upload.cdi.kubevirt.io`): put it in the
/// serving certificate's SANs.
pub fn server_name(group: &str) -> String {
    format!("{}.{SERVICE_NAMESPACE}.svc", service_name(group))
}

/// Creates (or updates) the ExternalName Service and the APIService `<version>.<group>` for a
/// server on `localhost:port` whose certificate is signed by `ca_pem`, and waits until
/// kube-apiserver reports the APIService `Available`.
pub async fn register(
    client: &Client,
    group: &str,
    version: &str,
    port: u16,
    ca_pem: &str,
) -> Result<(), Error> {
    let service_name = service_name(group);
    let service = Service {
        metadata: ObjectMeta {
            name: Some(service_name.clone()),
            namespace: Some(SERVICE_NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".to_owned()),
            external_name: Some("localhost".to_owned()),
            ports: Some(vec![ServicePort {
                name: Some("https".to_owned()),
                port: i32::from(port),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    Api::<Service>::namespaced(client.clone(), SERVICE_NAMESPACE)
        .patch(&service_name, &apply, &Patch::Apply(&service))
        .await?;

    let name = format!("{version}.{group}");
    let api_service = APIService {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(APIServiceSpec {
            group: Some(group.to_owned()),
            version: Some(version.to_owned()),
            service: Some(ServiceReference {
                namespace: Some(SERVICE_NAMESPACE.to_owned()),
                name: Some(service_name),
                port: Some(i32::from(port)),
            }),
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            group_priority_minimum: 1000,
            version_priority: 15,
            insecure_skip_tls_verify: None,
        }),
        status: None,
    };
    let api_services: Api<APIService> = Api::all(client.clone());
    api_services
        .patch(&name, &apply, &Patch::Apply(&api_service))
        .await?;
    wait_available(&api_services, &name).await
}

async fn wait_available(api: &Api<APIService>, name: &str) -> Result<(), Error> {
    let mut last = String::from("no status yet");
    let deadline = tokio::time::Instant::now() + AVAILABLE_TIMEOUT;
    loop {
        let current = api.get(name).await?;
        let available = current
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Available");
        if let Some(condition) = available {
            if condition.status == "True" {
                return Ok(());
            }
            last = format!(
                "{}: {}",
                condition.reason.unwrap_or_default(),
                condition.message.unwrap_or_default()
            );
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Setup(format!(
                "APIService {name} not Available after {AVAILABLE_TIMEOUT:?} ({last})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_is_a_dns_label_derived_from_the_group() {
        assert_eq!(
            service_name("upload.cdi.kubevirt.io"),
            "api-upload-cdi-kubevirt-io"
        );
        assert_eq!(
            server_name("upload.cdi.kubevirt.io"),
            "api-upload-cdi-kubevirt-io.default.svc"
        );
        let long = service_name(&"a.".repeat(40));
        assert!(long.len() <= 63 && !long.ends_with('-'), "{long}");
    }
}
