//! Where a claim's upload server listens: its pod's IP and port 8443 (or, under the test
//! kubelet stand-in, the loopback port it mapped 8443 to), verified as the DNS name its
//! serving certificate is issued for, `cdi-upload-<claim>.<namespace>.svc`.
//!
//! Upstream dials that DNS name; we dial the pod directly, so the proxy needs no cluster DNS
//! (and works against the stand-in, whose pods have no Service endpoints), but the TLS check
//! is the same.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::Pod;

use crate::naming;

/// The upload server's port in its pod.
pub const UPLOAD_SERVER_PORT: u16 = 8443;
/// The test kubelet stand-in's map of container ports to loopback ports (JSON object).
pub const STANDIN_PORTS_ANNOTATION: &str = "kubelet-standin.cdi-rs.io/ports";

/// One upload server to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadServer {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The name its certificate must be valid for (also sent as SNI and `Host`).
    pub server_name: String,
}

/// The upload server of claim `claim` in `namespace`, running in `pod`.
pub fn upload_server(pod: &Pod, claim: &str, namespace: &str) -> Result<UploadServer, String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("?");
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| format!("upload pod {pod_name} has no IP yet"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("upload pod {pod_name} has an invalid IP {ip:?}"))?;
    let port = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STANDIN_PORTS_ANNOTATION))
        .and_then(|json| serde_json::from_str::<BTreeMap<String, u16>>(json).ok())
        .and_then(|ports| ports.get(&UPLOAD_SERVER_PORT.to_string()).copied())
        .unwrap_or(UPLOAD_SERVER_PORT);
    Ok(UploadServer {
        addr: SocketAddr::new(ip, port),
        server_name: naming::upload_server_dns_name(claim, namespace),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(ip: Option<&str>, annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("cdi-upload-disk".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                pod_ip: ip.map(str::to_owned),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn pod_ip_and_port_8443_verified_as_the_service_name() {
        let server = upload_server(&pod(Some("10.0.0.7"), &[]), "disk.v1", "vms").expect("ok");
        assert_eq!(server.addr, "10.0.0.7:8443".parse().expect("addr"));
        assert_eq!(server.server_name, "cdi-upload-disk-v1.vms.svc");
    }

    #[test]
    fn standin_port_map_replaces_8443_and_ipv6_works() {
        let annotated = pod(
            Some("::1"),
            &[(STANDIN_PORTS_ANNOTATION, r#"{"8443":41234,"8080":1}"#)],
        );
        let server = upload_server(&annotated, "disk", "vms").expect("ok");
        assert_eq!(server.addr, "[::1]:41234".parse().expect("addr"));
    }

    #[test]
    fn pod_without_ip_is_not_reachable() {
        let err = upload_server(&pod(None, &[]), "disk", "vms").expect_err("no IP");
        assert_eq!(err, "upload pod cdi-upload-disk has no IP yet");
        let err = upload_server(&pod(Some("nope"), &[]), "disk", "vms").expect_err("bad IP");
        assert!(err.contains("invalid IP"), "{err}");
    }
}
