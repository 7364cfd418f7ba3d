//! The source side of a host-assisted clone: the `cdi-cloner` pod on the source claim (in the
//! source's namespace) and the Secret with its client certificate, per upstream's contract
//! (reference §4.2). Unlike upstream, the cloner is also told the upload pod's address
//! (`UPLOAD_SERVER_ADDR`): it connects there and verifies the server as `UPLOAD_URL`'s host, as
//! the upload proxy does, so no cluster DNS is needed.

use std::collections::BTreeMap;

use cdi_crds::annotations::{clone, content, labels};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource,
    Pod, Secret, Volume, VolumeDevice, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::pod::{
    BLOCK_DEVICE, METRICS_PORT, WorkerPod, claim_owner, env, is_block, log_format_env, owner_uid,
    restricted_container_security, secret_env, worker_pod,
};
use crate::cdiconfig::EffectiveConfig;
use crate::naming;
use crate::settings::Settings;

/// Where a Filesystem source is mounted (read-only), as upstream's `MOUNT_POINT`.
pub const SOURCE_DIR: &str = "/var/run/cdi/clone/source";
/// The source volume's name in the pod.
const SOURCE_VOLUME: &str = "cdi-clone-source";
/// The container's name.
pub const CONTAINER: &str = "cdi-clone-source";
/// Label tying a cloner pod to its source claim (upstream's, for same-node affinity).
pub const SOURCE_LABEL: &str = "cdi.kubevirt.io/hostAssistedSourcePodCloneSource";

/// The clone a claim asks for: `k8s.io/CloneRequest` = `<namespace>/<name>` of the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloneRequest {
    pub namespace: String,
    pub name: String,
}

impl CloneRequest {
    /// The request on `claim`, if it carries a well-formed one.
    pub fn of(claim: &PersistentVolumeClaim) -> Option<CloneRequest> {
        let value = claim
            .metadata
            .annotations
            .as_ref()?
            .get(clone::CLONE_REQUEST)?;
        let (namespace, name) = value.split_once('/')?;
        (!namespace.is_empty() && !name.is_empty()).then(|| CloneRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `<namespace>/<name>`, as the annotation and messages write it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The name of the cloner pod (and its Secret) for target claim `target`.
pub fn pod_name(target: &PersistentVolumeClaim) -> String {
    naming::clone_source_pod(target.metadata.uid.as_deref().unwrap_or_default())
}

/// The common name the target's upload server requires of the cloner's certificate.
pub fn client_name(request: &CloneRequest, target: &PersistentVolumeClaim) -> String {
    naming::clone_client_name(
        &request.namespace,
        &request.name,
        target.metadata.namespace.as_deref().unwrap_or_default(),
        target.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// What the cloner's objects are made from.
#[derive(Clone, Copy, Debug)]
pub struct ClonerInput<'a> {
    /// The claim being filled (its upload server takes the stream).
    pub target: &'a PersistentVolumeClaim,
    /// The claim being read.
    pub source: &'a PersistentVolumeClaim,
    /// Where the target's upload server listens (`ip:port`).
    pub upload_addr: &'a str,
    pub settings: &'a Settings,
    pub config: &'a EffectiveConfig,
}

/// The owner reference a cloner's objects carry: the target claim when it shares their
/// namespace (references cannot cross namespaces; the worker controller deletes them then).
fn owner(
    input: &ClonerInput,
) -> Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>> {
    (input.target.metadata.namespace == input.source.metadata.namespace)
        .then(|| claim_owner(input.target))
        .flatten()
}

/// Annotations on the cloner's objects naming the target claim, so its events find the way back.
fn target_annotation(target: &PersistentVolumeClaim) -> BTreeMap<String, String> {
    BTreeMap::from([(
        clone::CLONE_TARGET.to_owned(),
        format!(
            "{}/{}",
            target.metadata.namespace.as_deref().unwrap_or_default(),
            target.metadata.name.as_deref().unwrap_or_default()
        ),
    )])
}

/// The Secret with the cloner's client certificate and the CA it trusts the server by.
pub fn render_secret(input: &ClonerInput, cert: String, key: String, server_ca: String) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(pod_name(input.target)),
            namespace: input.source.metadata.namespace.clone(),
            labels: Some(crate::datavolume::plan::cdi_labels()),
            annotations: Some(target_annotation(input.target)),
            owner_references: owner(input),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(cert.into_bytes())),
            ("tls.key".to_owned(), ByteString(key.into_bytes())),
            ("ca.crt".to_owned(), ByteString(server_ca.into_bytes())),
        ])),
        ..Default::default()
    }
}

/// The cloner's environment: upstream's names, plus `UPLOAD_SERVER_ADDR`.
pub fn cloner_env(input: &ClonerInput) -> Vec<EnvVar> {
    let secret = pod_name(input.target);
    let target_name = input.target.metadata.name.as_deref().unwrap_or_default();
    let target_ns = input
        .target
        .metadata
        .namespace
        .as_deref()
        .unwrap_or_default();
    let block = is_block(input.source);
    let preallocation = input
        .target
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(content::PREALLOCATION_REQUESTED))
        .is_some_and(|v| v == "true");
    let mut vars = vec![
        env(
            "UPLOAD_URL",
            format!(
                "https://{}/v1beta1/upload",
                naming::upload_server_dns_name(target_name, target_ns)
            ),
        ),
        env("UPLOAD_SERVER_ADDR", input.upload_addr),
        secret_env("CLIENT_CERT", &secret, "tls.crt"),
        secret_env("CLIENT_KEY", &secret, "tls.key"),
        secret_env("SERVER_CA_CERT", &secret, "ca.crt"),
        env("OWNER_UID", owner_uid(input.target)),
        env("VOLUME_MODE", if block { "block" } else { "filesystem" }),
        env("MOUNT_POINT", if block { BLOCK_DEVICE } else { SOURCE_DIR }),
        env("PREALLOCATION", preallocation.to_string()),
    ];
    vars.extend(log_format_env(input.settings));
    vars
}

/// The cloner pod: the source claim mounted read-only, in the source's namespace.
pub fn render_pod(input: &ClonerInput) -> Pod {
    let source_name = input.source.metadata.name.clone().unwrap_or_default();
    let block = is_block(input.source);
    let volume = Volume {
        name: SOURCE_VOLUME.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: source_name,
            read_only: Some(true),
        }),
        ..Default::default()
    };
    let (mounts, devices) = if block {
        (
            None,
            Some(vec![VolumeDevice {
                name: SOURCE_VOLUME.into(),
                device_path: BLOCK_DEVICE.into(),
            }]),
        )
    } else {
        (
            Some(vec![VolumeMount {
                name: SOURCE_VOLUME.into(),
                mount_path: SOURCE_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            }]),
            None,
        )
    };
    let container = Container {
        name: CONTAINER.into(),
        image: Some(input.settings.cloner_image.clone()),
        image_pull_policy: Some(input.settings.pull_policy.clone()),
        args: Some(vec![format!("-v={}", input.settings.verbosity)]),
        env: Some(cloner_env(input)),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: Some(input.config.pod_resources.clone()),
        security_context: Some(restricted_container_security()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: mounts,
        volume_devices: devices,
        ..Default::default()
    };
    let pod_labels = BTreeMap::from([
        (labels::APP.into(), labels::APP_VALUE.into()),
        (
            labels::COMPONENT.into(),
            labels::COMPONENT_CLONE_SOURCE.into(),
        ),
        (labels::PROMETHEUS.into(), "true".into()),
        (
            SOURCE_LABEL.into(),
            input.source.metadata.uid.clone().unwrap_or_default(),
        ),
    ]);
    let mut pod = worker_pod(
        WorkerPod {
            name: pod_name(input.target),
            labels: pod_labels,
            annotations: target_annotation(input.target),
            container,
            volumes: vec![volume],
            init_containers: Vec::new(),
            sidecars: Vec::new(),
            node_selector: BTreeMap::new(),
        },
        input.target,
        input.config,
    );
    pod.metadata.namespace = input.source.metadata.namespace.clone();
    pod.metadata.owner_references = owner(input);
    if input.target.metadata.namespace != input.source.metadata.namespace
        && let Some(spec) = pod.spec.as_mut()
    {
        // The target's service account lives in the target's namespace, not here.
        spec.service_account_name = None;
    }
    pod
}

/// The upload server's address for the cloner: the pod's IP and its port 8443 (or the loopback
/// port the test kubelet stand-in mapped it to).
pub fn upload_address(upload_pod: &Pod) -> Option<String> {
    crate::progress::worker_address(upload_pod)
}

/// Whether `pod` (a pod in the source's namespace) holds the source claim `source` and is not
/// our cloner: the source is in use and the clone waits (upstream's `CloneSourceInUse`).
pub fn uses_claim(pod: &Pod, source: &str, cloner: &str) -> bool {
    if pod.metadata.name.as_deref() == Some(cloner) {
        return false;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .any(|c| c.claim_name == source && c.read_only != Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(ns: &str, name: &str, uid: &str, block: bool) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "uid": uid, "annotations": {
                "k8s.io/CloneRequest": "golden/fedora",
                "cdi.kubevirt.io/storage.preallocation.requested": "false",
                "cdi.kubevirt.io/createdForDataVolume": "dv-uid"}},
            "spec": {"volumeMode": if block { "Block" } else { "Filesystem" },
                     "resources": {"requests": {"storage": "1Gi"}}}
        }))
        .expect("claim")
    }

    fn input<'a>(
        target: &'a PersistentVolumeClaim,
        source: &'a PersistentVolumeClaim,
        settings: &'a Settings,
        config: &'a EffectiveConfig,
    ) -> ClonerInput<'a> {
        ClonerInput {
            target,
            source,
            upload_addr: "10.0.0.7:8443",
            settings,
            config,
        }
    }

    fn env_map(pod: &Pod) -> BTreeMap<String, serde_json::Value> {
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), serde_json::to_value(e).expect("env")))
            .collect()
    }

    #[test]
    fn the_request_annotation_parses_or_is_ignored() {
        let target = claim("vms", "disk", "t-uid", false);
        assert_eq!(
            CloneRequest::of(&target),
            Some(CloneRequest {
                namespace: "golden".into(),
                name: "fedora".into()
            })
        );
        for bad in ["fedora", "/fedora", "golden/", ""] {
            let mut c = target.clone();
            c.metadata
                .annotations
                .as_mut()
                .expect("annotations")
                .insert(clone::CLONE_REQUEST.into(), bad.into());
            assert_eq!(CloneRequest::of(&c), None, "{bad:?}");
        }
        assert_eq!(
            client_name(&CloneRequest::of(&target).expect("request"), &target),
            "golden/fedora-vms/disk"
        );
    }

    #[test]
    fn a_cross_namespace_cloner_runs_beside_its_source_and_is_owned_by_nobody() {
        let target = claim("vms", "disk", "t-uid", true);
        let source = claim("golden", "fedora", "s-uid", false);
        let (settings, config) = (Settings::default(), EffectiveConfig::default());
        let i = input(&target, &source, &settings, &config);
        let pod = render_pod(&i);
        assert_eq!(pod.metadata.name.as_deref(), Some("t-uid-source-pod"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("golden"));
        assert_eq!(pod.metadata.owner_references, None);
        assert_eq!(
            pod.metadata.annotations.as_ref().expect("annotations")[clone::CLONE_TARGET],
            "vms/disk"
        );
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[labels::COMPONENT], "cdi-clone-source");
        assert_eq!(labels[SOURCE_LABEL], "s-uid");
        let spec = pod.spec.as_ref().expect("spec");
        let volume = &spec.volumes.as_ref().expect("volumes")[0];
        let pvc = volume.persistent_volume_claim.as_ref().expect("a claim");
        assert_eq!(
            (pvc.claim_name.as_str(), pvc.read_only),
            ("fedora", Some(true))
        );
        let c = &spec.containers[0];
        let mount = &c
            .volume_mounts
            .as_ref()
            .expect("a Filesystem source is mounted")[0];
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (SOURCE_DIR, Some(true))
        );
        let env = env_map(&pod);
        assert_eq!(
            env["UPLOAD_URL"]["value"],
            "https://cdi-upload-disk.vms.svc/v1beta1/upload"
        );
        assert_eq!(env["UPLOAD_SERVER_ADDR"]["value"], "10.0.0.7:8443");
        assert_eq!(env["VOLUME_MODE"]["value"], "filesystem");
        assert_eq!(env["MOUNT_POINT"]["value"], SOURCE_DIR);
        assert_eq!(env["OWNER_UID"]["value"], "dv-uid");
        assert_eq!(
            env["CLIENT_KEY"]["valueFrom"]["secretKeyRef"]["name"],
            "t-uid-source-pod"
        );

        let secret = render_secret(&i, "C".into(), "K".into(), "CA".into());
        assert_eq!(secret.metadata.namespace.as_deref(), Some("golden"));
        assert_eq!(secret.metadata.owner_references, None);
        assert_eq!(secret.data.as_ref().expect("data")["ca.crt"].0, b"CA");
    }

    #[test]
    fn a_same_namespace_cloner_is_owned_by_the_target_and_reads_a_block_source_as_a_device() {
        let target = claim("vms", "disk", "t-uid", false);
        let source = claim("vms", "golden", "s-uid", true);
        let (settings, config) = (Settings::default(), EffectiveConfig::default());
        let pod = render_pod(&input(&target, &source, &settings, &config));
        let owners = pod.metadata.owner_references.as_ref().expect("owned");
        assert_eq!(owners[0].uid, "t-uid");
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        assert!(c.volume_mounts.is_none());
        assert_eq!(
            c.volume_devices.as_ref().expect("a device")[0].device_path,
            BLOCK_DEVICE
        );
        let env = env_map(&pod);
        assert_eq!(env["VOLUME_MODE"]["value"], "block");
        assert_eq!(env["MOUNT_POINT"]["value"], BLOCK_DEVICE);
    }

    #[test]
    fn only_other_writers_of_the_source_keep_it_in_use() {
        let pod = |name: &str, claim: &str, read_only: Option<bool>, phase: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"containers": [], "volumes": [{"name": "v",
                    "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}]},
                "status": {"phase": phase}
            }))
            .expect("pod")
        };
        assert!(uses_claim(
            &pod("vm", "fedora", None, "Running"),
            "fedora",
            "c"
        ));
        assert!(!uses_claim(
            &pod("c", "fedora", None, "Running"),
            "fedora",
            "c"
        ));
        assert!(!uses_claim(
            &pod("vm", "other", None, "Running"),
            "fedora",
            "c"
        ));
        assert!(!uses_claim(
            &pod("vm", "fedora", Some(true), "Running"),
            "fedora",
            "c"
        ));
        assert!(!uses_claim(
            &pod("vm", "fedora", None, "Succeeded"),
            "fedora",
            "c"
        ));
    }
}
