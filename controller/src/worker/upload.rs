//! The upload server's pod, Service and TLS Secret for a claim, per upstream's pod contract
//! (reference §3.3, Appendix A.3). Unlike upstream, no scratch claim: our upload server converts
//! while the bytes stream in, as the importer does.

use std::collections::BTreeMap;
use std::time::SystemTime;

use cdi_crds::annotations::{content, labels, passthrough, pod as pod_ann};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, PersistentVolumeClaim, Pod, Probe, Secret,
    SecretVolumeSource, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::cloner::{self, CloneRequest};
use super::pod::{
    BLOCK_DEVICE, METRICS_PORT, WorkerPod, claim_owner, data_volume, env, is_block, log_format_env,
    owner_uid, requested_size, restricted_container_security, worker_pod,
};
use crate::cdiconfig::EffectiveConfig;
use crate::certs::UPLOAD_CLIENT_NAME;
use crate::datavolume::plan::pod_passthrough_annotations;
use crate::naming;
use crate::settings::Settings;

/// Where the TLS Secret is mounted in the upload pod.
const TLS_DIR: &str = "/etc/tls/";
/// The label that ties the Service to its pod.
const SERVICE_LABEL: &str = "service";

/// What the upload objects are made from.
#[derive(Clone, Copy, Debug)]
pub struct UploadInput<'a> {
    pub claim: &'a PersistentVolumeClaim,
    pub settings: &'a Settings,
    pub config: &'a EffectiveConfig,
    /// When the pod's certificate must be replaced: its `DEADLINE`.
    pub deadline: SystemTime,
}

/// RFC 3339, as upstream's `DEADLINE`.
fn rfc3339(t: SystemTime) -> String {
    Timestamp::try_from(t)
        .map(|t| {
            t.round(k8s_openapi::jiff::Unit::Second)
                .unwrap_or(t)
                .to_string()
        })
        .unwrap_or_default()
}

/// The upload server's environment.
pub fn upload_env(input: &UploadInput) -> Vec<EnvVar> {
    let claim = input.claim;
    let a = claim.metadata.annotations.clone().unwrap_or_default();
    let block = is_block(claim);
    let class = claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref());
    let mut vars = vec![
        env("TLS_KEY_FILE", format!("{TLS_DIR}tls.key")),
        env("TLS_CERT_FILE", format!("{TLS_DIR}tls.crt")),
        env("CLIENT_CERT_FILE", format!("{TLS_DIR}ca.crt")),
        env(
            "FILESYSTEM_OVERHEAD",
            if block {
                "0".into()
            } else {
                input.config.filesystem_overhead_env(class)
            },
        ),
        env("UPLOAD_IMAGE_SIZE", requested_size(claim)),
        env("CLIENT_NAME", client_name(claim)),
        env(
            "PREALLOCATION",
            a.get(content::PREALLOCATION_REQUESTED)
                .is_some_and(|v| v == "true")
                .to_string(),
        ),
        env("TLS_CIPHERS", input.config.tls_ciphers.join(",")),
        env("TLS_MIN_VERSION", input.config.tls_min_version.clone()),
        env("DEADLINE", rfc3339(input.deadline)),
        env("OWNER_UID", owner_uid(claim)),
    ];
    if block {
        vars.push(env("DESTINATION", BLOCK_DEVICE));
    }
    if CloneRequest::of(claim).is_some() {
        // A clone target takes only the cloner's stream.
        vars.push(env("CONTENT_TYPE", "clone"));
    } else if a.get(content::CONTENT_TYPE).is_some_and(|c| c == "archive") {
        vars.push(env("CONTENT_TYPE", "archive"));
    }
    vars.extend(log_format_env(input.settings));
    vars
}

/// The common name the upload server requires of client certificates: the upload proxy's, or
/// for a clone target, the cloner's (upstream's upload client name).
fn client_name(claim: &PersistentVolumeClaim) -> String {
    match CloneRequest::of(claim) {
        Some(request) => cloner::client_name(&request, claim),
        None => UPLOAD_CLIENT_NAME.to_owned(),
    }
}

/// Labels of the upload pod; the Service selects on [`SERVICE_LABEL`].
fn pod_labels(claim: &PersistentVolumeClaim, service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::APP.into(), labels::APP_VALUE.into()),
        (
            labels::COMPONENT.into(),
            labels::COMPONENT_UPLOAD_SERVER.into(),
        ),
        (
            labels::UPLOAD_TARGET.into(),
            claim.metadata.uid.clone().unwrap_or_default(),
        ),
        (SERVICE_LABEL.into(), service.into()),
    ])
}

/// The upload server pod for `input.claim`.
pub fn render_pod(input: &UploadInput) -> Pod {
    let claim = input.claim;
    let claim_name = claim.metadata.name.clone().unwrap_or_default();
    let service = naming::upload_service(&claim_name);
    let pod_name = naming::upload_pod(&claim_name);
    let a = claim.metadata.annotations.clone().unwrap_or_default();
    let mut annotations = pod_passthrough_annotations(&a);
    annotations.insert(pod_ann::CREATED_BY_UPLOAD_CONTROLLER.into(), "yes".into());
    annotations.insert(
        passthrough::OVN_OPEN_DEFAULT_PORTS.into(),
        format!("- protocol: tcp\n  port: {METRICS_PORT}\n"),
    );

    let (data, mount, device) = data_volume(&claim_name, is_block(claim));
    let tls = Volume {
        name: "tls-config".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(pod_name.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut mounts: Vec<VolumeMount> = mount.into_iter().collect();
    mounts.push(VolumeMount {
        name: "tls-config".into(),
        mount_path: TLS_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    });

    let container = Container {
        name: "cdi-upload-server".into(),
        image: Some(input.settings.uploadserver_image.clone()),
        image_pull_policy: Some(input.settings.pull_policy.clone()),
        args: Some(vec![format!("-v={}", input.settings.verbosity + 1)]),
        env: Some(upload_env(input)),
        ports: Some(vec![ContainerPort {
            name: Some("https".into()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::Int(METRICS_PORT),
                scheme: Some("HTTPS".into()),
                ..Default::default()
            }),
            initial_delay_seconds: Some(2),
            period_seconds: Some(5),
            ..Default::default()
        }),
        resources: Some(input.config.pod_resources.clone()),
        security_context: Some(restricted_container_security()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(mounts),
        volume_devices: device.map(|d| vec![d]),
        ..Default::default()
    };

    worker_pod(
        WorkerPod {
            name: pod_name,
            labels: pod_labels(claim, &service),
            annotations,
            container,
            volumes: vec![data, tls],
            init_containers: Vec::new(),
            sidecars: Vec::new(),
            node_selector: BTreeMap::new(),
        },
        claim,
        input.config,
    )
}

/// The Service in front of the upload pod: 443 → 8443.
pub fn render_service(claim: &PersistentVolumeClaim) -> Service {
    let claim_name = claim.metadata.name.clone().unwrap_or_default();
    let service = naming::upload_service(&claim_name);
    Service {
        metadata: ObjectMeta {
            name: Some(service.clone()),
            namespace: claim.metadata.namespace.clone(),
            labels: Some(pod_labels(claim, &service)),
            owner_references: claim_owner(claim),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("uploadproxy".into()),
                port: 443,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(METRICS_PORT)),
                ..Default::default()
            }]),
            selector: Some(BTreeMap::from([(SERVICE_LABEL.into(), service)])),
            ..Default::default()
        }),
        status: None,
    }
}

/// The pod's TLS Secret (named like the pod) holding `data` from the upload CAs.
pub fn render_secret(claim: &PersistentVolumeClaim, data: BTreeMap<String, String>) -> Secret {
    let claim_name = claim.metadata.name.clone().unwrap_or_default();
    Secret {
        metadata: ObjectMeta {
            name: Some(naming::upload_pod(&claim_name)),
            namespace: claim.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(
                labels::APP.into(),
                labels::APP_VALUE.into(),
            )])),
            owner_references: claim_owner(claim),
            ..Default::default()
        },
        string_data: Some(data),
        type_: Some("kubernetes.io/tls".into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datavolume::plan::render_claim;
    use crate::fixtures::{dv, storage};
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    fn claim() -> PersistentVolumeClaim {
        let mut c = render_claim(
            &dv("dv-upload", json!({"upload": {}})),
            &EffectiveConfig::default(),
            &storage(),
        )
        .expect("renders");
        c.metadata.uid = Some("pvc-uid".into());
        c
    }

    #[test]
    fn upload_pod_matches_appendix_a3() {
        let claim = claim();
        let config = EffectiveConfig::default();
        let settings = Settings {
            uploadserver_image: "up:test".into(),
            ..Settings::default()
        };
        let deadline = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let pod = render_pod(&UploadInput {
            claim: &claim,
            settings: &settings,
            config: &config,
            deadline,
        });

        assert_eq!(pod.metadata.name.as_deref(), Some("cdi-upload-dv-upload"));
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["cdi.kubevirt.io"], "cdi-upload-server");
        assert_eq!(labels["cdi.kubevirt.io/uploadTarget"], "pvc-uid");
        assert_eq!(labels["service"], "cdi-upload-dv-upload");
        assert_eq!(
            pod.metadata.annotations.as_ref().expect("annotations")["cdi.kubevirt.io/storage.createdByUploadController"],
            "yes"
        );
        assert_eq!(
            pod.metadata.owner_references.as_ref().expect("owner")[0].uid,
            "pvc-uid"
        );
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.restart_policy.as_deref(), Some("OnFailure"));
        let c = &spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("up:test"));
        assert_eq!(c.args, Some(vec!["-v=3".to_string()]));
        let env: BTreeMap<_, _> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(env["TLS_KEY_FILE"], "/etc/tls/tls.key");
        assert_eq!(env["TLS_CERT_FILE"], "/etc/tls/tls.crt");
        assert_eq!(env["CLIENT_CERT_FILE"], "/etc/tls/ca.crt");
        assert_eq!(env["FILESYSTEM_OVERHEAD"], "0.06");
        assert_eq!(env["UPLOAD_IMAGE_SIZE"], "1138166334");
        assert_eq!(env["CLIENT_NAME"], "client.upload-server.cdi.kubevirt.io");
        assert_eq!(env["PREALLOCATION"], "false");
        assert_eq!(env["TLS_MIN_VERSION"], "VersionTLS12");
        assert!(env["TLS_CIPHERS"].starts_with("TLS_AES_128_GCM_SHA256,"));
        assert!(env["TLS_CIPHERS"].ends_with(",DHE-RSA-AES256-GCM-SHA384"));
        assert_eq!(env["DEADLINE"], "2027-01-15T08:00:00Z");
        let probe = c
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("probe");
        assert_eq!(
            (probe.path.as_deref(), probe.scheme.as_deref()),
            (Some("/healthz"), Some("HTTPS"))
        );
        assert_eq!(probe.port, IntOrString::Int(8443));
        let p = c.readiness_probe.as_ref().expect("probe");
        assert_eq!(
            (p.initial_delay_seconds, p.period_seconds),
            (Some(2), Some(5))
        );
        let mounts: Vec<_> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/data", "/etc/tls/"]);
        let tls = &spec.volumes.as_ref().expect("volumes")[1];
        assert_eq!(
            tls.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
            Some("cdi-upload-dv-upload")
        );
    }

    #[test]
    fn service_forwards_443_to_8443_and_selects_the_pod() {
        let svc = render_service(&claim());
        assert_eq!(svc.metadata.name.as_deref(), Some("cdi-upload-dv-upload"));
        let spec = svc.spec.expect("spec");
        let port = &spec.ports.expect("ports")[0];
        assert_eq!(
            (port.port, port.target_port.clone()),
            (443, Some(IntOrString::Int(8443)))
        );
        assert_eq!(
            spec.selector.expect("selector")["service"],
            "cdi-upload-dv-upload"
        );
        assert_eq!(
            svc.metadata.owner_references.expect("owner")[0].uid,
            "pvc-uid"
        );
    }

    #[test]
    fn secret_is_named_like_the_pod_and_owned_by_the_claim() {
        let data = BTreeMap::from([("tls.crt".to_string(), "x".to_string())]);
        let s = render_secret(&claim(), data.clone());
        assert_eq!(s.metadata.name.as_deref(), Some("cdi-upload-dv-upload"));
        assert_eq!(s.string_data, Some(data));
        assert_eq!(
            s.metadata.owner_references.expect("owner")[0].uid,
            "pvc-uid"
        );
    }
}
