//! The claim and upload pod as the controller leaves them for the proxy, shared by the proxy's
//! tests (`tests/proxy`, with a fake upload server) and the client tests (`tests/clients`, with
//! the real one).

use std::collections::BTreeMap;

use cdi_uploadproxy::STANDIN_PORTS_ANNOTATION;
use cdi_uploadproxy::readiness::annotations;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub const CLAIM: &str = "disk";
pub const NAMESPACE: &str = "vms";

/// The test claim as an upload target with `extra` annotations.
pub fn claim(extra: &[(&str, &str)]) -> PersistentVolumeClaim {
    let mut annotations = BTreeMap::from([(annotations::UPLOAD_TARGET.to_owned(), String::new())]);
    for (k, v) in extra {
        annotations.insert(k.to_string(), v.to_string());
    }
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(CLAIM.into()),
            namespace: Some(NAMESPACE.into()),
            annotations: Some(annotations),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The test claim, its upload pod ready.
pub fn ready_claim(extra: &[(&str, &str)]) -> PersistentVolumeClaim {
    let mut all = vec![(annotations::POD_READY, "true")];
    all.extend_from_slice(extra);
    claim(&all)
}

/// The test claim's upload pod on 127.0.0.1, its 8443 mapped to `port` as the stand-in does.
pub fn upload_pod(port: u16) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("cdi-upload-disk".into()),
            namespace: Some(NAMESPACE.into()),
            annotations: Some(BTreeMap::from([(
                STANDIN_PORTS_ANNOTATION.to_owned(),
                format!("{{\"8443\":{port}}}"),
            )])),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            pod_ip: Some("127.0.0.1".into()),
            ..Default::default()
        }),
    }
}
