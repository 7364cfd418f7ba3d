//! The importer pod for a claim, exactly as upstream's controller makes it (reference Appendix
//! A.2): name, labels, annotations, owner, restricted security context, resources, volumes,
//! and the environment in upstream's order, so upstream's importer image would run in it and
//! ours runs in upstream's.

use std::collections::BTreeMap;

use cdi_crds::annotations::{checkpoint, content, import, labels, pod as pod_ann};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EnvVar, PersistentVolumeClaim, Pod,
    SecretVolumeSource, Volume, VolumeMount,
};

use super::pod::{
    METRICS_PORT, WorkerPod, data_volume, env, is_block, log_format_env, owner_uid, requested_size,
    restricted_container_security, secret_env, worker_pod,
};
use crate::cdiconfig::EffectiveConfig;
use crate::datavolume::plan::pod_passthrough_annotations;
use crate::naming;
use crate::settings::Settings;

/// What an importer pod is made from.
#[derive(Clone, Copy, Debug)]
pub struct ImporterInput<'a> {
    pub claim: &'a PersistentVolumeClaim,
    pub settings: &'a Settings,
    pub config: &'a EffectiveConfig,
}

/// The importer's environment, in upstream's order.
pub fn importer_env(input: &ImporterInput) -> Vec<EnvVar> {
    let a = input.claim.metadata.annotations.clone().unwrap_or_default();
    let get = |k: &str| a.get(k).cloned().unwrap_or_default();
    let block = is_block(input.claim);
    let class = input
        .claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref());
    let proxy = input.config.import_proxy.clone().unwrap_or_default();
    let source = a
        .get(import::SOURCE)
        .cloned()
        .unwrap_or_else(|| "http".into());
    // insecureSkipVerify, or (as upstream) a registry CDIConfig lists as insecure.
    let insecure = a
        .get(import::INSECURE_SKIP_VERIFY)
        .is_some_and(|v| v == "true")
        || (source == "registry" && input.config.is_insecure_registry(&get(import::ENDPOINT)));
    let mut vars = vec![
        env("IMPORTER_SOURCE", source),
        env("IMPORTER_ENDPOINT", get(import::ENDPOINT)),
        env(
            "IMPORTER_CONTENTTYPE",
            a.get(content::CONTENT_TYPE)
                .cloned()
                .unwrap_or_else(|| "kubevirt".into()),
        ),
        env("IMPORTER_IMAGE_SIZE", requested_size(input.claim)),
        env("OWNER_UID", owner_uid(input.claim)),
        env(
            "FILESYSTEM_OVERHEAD",
            if block {
                "0".into()
            } else {
                input.config.filesystem_overhead_env(class)
            },
        ),
        env("INSECURE_TLS", insecure.to_string()),
        env("IMPORTER_DISK_ID", get(import::DISK_ID)),
        env("IMPORTER_UUID", get(import::UUID)),
        env("IMPORTER_PULL_METHOD", get(import::REGISTRY_IMPORT_METHOD)),
        env(
            "IMPORTER_READY_FILE",
            if node_pull(&a) { READY_FILE } else { "" },
        ),
        env(
            "IMPORTER_DONE_FILE",
            if node_pull(&a) { DONE_FILE } else { "" },
        ),
        env("IMPORTER_BACKING_FILE", get(import::BACKING_FILE)),
        env("IMPORTER_THUMBPRINT", get(import::VDDK_THUMBPRINT)),
        env("http_proxy", proxy.http_proxy.unwrap_or_default()),
        env("https_proxy", proxy.https_proxy.unwrap_or_default()),
        env("no_proxy", proxy.no_proxy.unwrap_or_default()),
        env("IMPORTER_CURRENT_CHECKPOINT", get(checkpoint::CURRENT)),
        env("IMPORTER_PREVIOUS_CHECKPOINT", get(checkpoint::PREVIOUS)),
        env("IMPORTER_FINAL_CHECKPOINT", get(checkpoint::FINAL)),
        env(
            "PREALLOCATION",
            a.get(content::PREALLOCATION_REQUESTED)
                .is_some_and(|v| v == "true")
                .to_string(),
        ),
        env("CACHE_MODE", ""),
        env(
            "IMPORTER_REGISTRY_IMAGE_ARCHITECTURE",
            get(import::REGISTRY_IMAGE_ARCHITECTURE),
        ),
    ];
    if let Some(secret) = a.get(import::SECRET_NAME).filter(|s| !s.is_empty()) {
        if is_gcs(&a) {
            // A GCS service-account key is mounted as a file, not passed as keys.
            vars.push(env("GOOGLE_APPLICATION_CREDENTIALS", GCS_CREDENTIALS));
        } else {
            vars.push(secret_env("IMPORTER_ACCESS_KEY_ID", secret, "accessKeyId"));
            vars.push(secret_env("IMPORTER_SECRET_KEY", secret, "secretKey"));
        }
    }
    if a.get(import::CERT_CONFIG_MAP)
        .is_some_and(|c| !c.is_empty())
    {
        vars.push(env("IMPORTER_CERT_DIR", "/certs"));
    }
    if proxy.trusted_ca_proxy.is_some() {
        vars.push(env("IMPORTER_PROXY_CERT_DIR", "/proxycerts/"));
    }
    for (i, header) in prefixed(&a, import::EXTRA_HEADERS_PREFIX)
        .into_iter()
        .enumerate()
    {
        vars.push(env(&format!("IMPORTER_EXTRA_HEADER_{i}"), header));
    }
    if let Some(sum) = a.get(import::CHECKSUM).filter(|c| !c.is_empty()) {
        vars.push(env("IMPORTER_CHECKSUM", sum.clone()));
    }
    vars.extend(log_format_env(input.settings));
    vars
}

/// The volume a node-pull pod's containers share, and the files on it.
const SHARED_VOLUME: &str = "cdi-image-server";
const SHARED_DIR: &str = "/shared";
const SERVER_PROGRAM: &str = "/shared/server";
const READY_FILE: &str = "/shared/ready";
const DONE_FILE: &str = "/shared/done";
/// Where `cdi-containerimage-server` is in the importer image, and where it listens.
const SERVER_IN_IMPORTER_IMAGE: &str = "/usr/bin/cdi-containerimage-server";
const SERVER_PORT: &str = "8100";
/// Where a containerDisk holds its image.
const IMAGE_DIR: &str = "/disk";

/// Whether the claim's registry image is pulled by the node (the kubelet runs it as a
/// container of the importer pod).
fn node_pull(a: &BTreeMap<String, String>) -> bool {
    a.get(import::SOURCE).is_some_and(|s| s == "registry")
        && a.get(import::REGISTRY_IMPORT_METHOD)
            .is_some_and(|m| m == "node")
}

/// The containers that make a node pull, beside the importer: an init container that copies
/// `cdi-containerimage-server` from the importer image onto the shared volume, and the user's
/// image running it to serve its `/disk` file.
fn node_pull_containers(input: &ImporterInput, image: &str) -> (Container, Container) {
    let shared = VolumeMount {
        name: SHARED_VOLUME.into(),
        mount_path: SHARED_DIR.into(),
        ..Default::default()
    };
    let init = Container {
        name: "init".into(),
        image: Some(input.settings.importer_image.clone()),
        image_pull_policy: Some(input.settings.pull_policy.clone()),
        command: Some(vec![
            SERVER_IN_IMPORTER_IMAGE.into(),
            "--install".into(),
            SERVER_PROGRAM.into(),
        ]),
        resources: Some(input.config.pod_resources.clone()),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![shared.clone()]),
        ..Default::default()
    };
    let server = Container {
        name: "server".into(),
        image: Some(image.to_owned()),
        image_pull_policy: Some(input.settings.pull_policy.clone()),
        command: Some(
            [
                SERVER_PROGRAM,
                "-p",
                SERVER_PORT,
                "-image-dir",
                IMAGE_DIR,
                "-ready-file",
                READY_FILE,
                "-done-file",
                DONE_FILE,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ),
        resources: Some(input.config.pod_resources.clone()),
        security_context: Some(restricted_container_security()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(vec![shared]),
        ..Default::default()
    };
    (init, server)
}

/// Where a GCS service-account key is mounted.
const GCS_CREDENTIALS: &str = "/google/credentials.json";

fn is_gcs(a: &BTreeMap<String, String>) -> bool {
    a.get(import::SOURCE).is_some_and(|s| s == "gcs")
}

/// The copy of the import proxy's CA ConfigMap made in the claim's namespace, as upstream names
/// it.
pub fn proxy_ca_config_map(claim: &str) -> String {
    format!("import-proxy-cm-{claim}")
}

/// Values of the annotations whose names start with `prefix`, in name order.
fn prefixed(a: &BTreeMap<String, String>, prefix: &str) -> Vec<String> {
    a.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The importer pod for `input.claim`.
pub fn render(input: &ImporterInput) -> Pod {
    let claim = input.claim;
    let claim_name = claim.metadata.name.clone().unwrap_or_default();
    let a = claim.metadata.annotations.clone().unwrap_or_default();
    let block = is_block(claim);

    let mut pod_labels = claim.metadata.labels.clone().unwrap_or_default();
    pod_labels.insert(labels::APP.into(), labels::APP_VALUE.into());
    pod_labels.insert(labels::COMPONENT.into(), labels::COMPONENT_IMPORTER.into());
    pod_labels.insert(labels::PROMETHEUS.into(), "true".into());
    let mut annotations = pod_passthrough_annotations(&a);
    annotations.insert(pod_ann::CREATED_BY_CONTROLLER.into(), "yes".into());

    let (data, mount, device) = data_volume(&claim_name, block);
    let mut volumes = vec![data];
    let mut mounts: Vec<VolumeMount> = mount.into_iter().collect();
    if let Some(secret) = a
        .get(import::SECRET_NAME)
        .filter(|s| !s.is_empty() && is_gcs(&a))
    {
        volumes.push(Volume {
            name: "cdi-gcs-secret-vol".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "cdi-gcs-secret-vol".into(),
            mount_path: "/google".into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if input
        .config
        .import_proxy
        .as_ref()
        .is_some_and(|p| p.trusted_ca_proxy.is_some())
    {
        volumes.push(Volume {
            name: "cdi-proxy-cert-vol".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: proxy_ca_config_map(&claim_name),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "cdi-proxy-cert-vol".into(),
            mount_path: "/proxycerts/".into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if let Some(cm) = a.get(import::CERT_CONFIG_MAP).filter(|c| !c.is_empty()) {
        volumes.push(Volume {
            name: "cdi-cert-vol".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "cdi-cert-vol".into(),
            mount_path: "/certs".into(),
            ..Default::default()
        });
    }
    for (i, secret) in prefixed(&a, import::SECRET_EXTRA_HEADERS_PREFIX)
        .into_iter()
        .enumerate()
    {
        let name = format!("cdi-secret-extra-headers-vol-{i}");
        volumes.push(Volume {
            name: name.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: format!("/extraheaders/{i}"),
            read_only: Some(true),
            ..Default::default()
        });
    }

    let mut init_containers = Vec::new();
    let mut sidecars = Vec::new();
    let mut node_selector = BTreeMap::new();
    if node_pull(&a) {
        let endpoint = a.get(import::ENDPOINT).cloned().unwrap_or_default();
        let image = endpoint.strip_prefix("docker://").unwrap_or(&endpoint);
        let (init, server) = node_pull_containers(input, image);
        init_containers.push(init);
        sidecars.push(server);
        volumes.push(Volume {
            name: SHARED_VOLUME.into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: SHARED_VOLUME.into(),
            mount_path: SHARED_DIR.into(),
            ..Default::default()
        });
        if let Some(arch) = a
            .get(import::REGISTRY_IMAGE_ARCHITECTURE)
            .filter(|a| !a.is_empty())
        {
            node_selector.insert("kubernetes.io/arch".to_owned(), arch.clone());
        }
        if a.get(import::REGISTRY_IMAGE_STREAM)
            .is_some_and(|v| v == "true")
        {
            // OpenShift resolves the image stream name in the container's image.
            annotations.insert(
                "alpha.image.policy.openshift.io/resolve-names".into(),
                "*".into(),
            );
        }
    }

    let container = Container {
        name: "importer".into(),
        image: Some(input.settings.importer_image.clone()),
        image_pull_policy: Some(input.settings.pull_policy.clone()),
        args: Some(vec![format!("-v={}", input.settings.verbosity)]),
        env: Some(importer_env(input)),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: Some(input.config.pod_resources.clone()),
        security_context: Some(restricted_container_security()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(mounts).filter(|m| !m.is_empty()),
        volume_devices: device.map(|d| vec![d]),
        ..Default::default()
    };

    worker_pod(
        WorkerPod {
            name: naming::importer_pod(&claim_name),
            labels: pod_labels,
            annotations,
            container,
            volumes,
            init_containers,
            sidecars,
            node_selector,
        },
        claim,
        input.config,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datavolume::plan::render_claim;
    use crate::fixtures::{DV_UID, dv, storage};
    use serde_json::json;

    fn claim_for(source: serde_json::Value) -> PersistentVolumeClaim {
        let mut claim = render_claim(
            &dv("dv-http", source),
            &EffectiveConfig::default(),
            &storage(),
        )
        .expect("renders");
        claim.metadata.uid = Some("pvc-uid".into());
        claim
    }

    fn pod_for(claim: &PersistentVolumeClaim) -> Pod {
        render(&ImporterInput {
            claim,
            settings: &Settings {
                importer_image: "importer:test".into(),
                ..Settings::default()
            },
            config: &EffectiveConfig::default(),
        })
    }

    fn env_pairs(pod: &Pod) -> Vec<(String, String)> {
        pod.spec.as_ref().expect("spec").containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn http_importer_pod_matches_appendix_a2_field_by_field() {
        let claim = claim_for(json!({"http": {"url": "http://127.0.0.1:18090/disk.qcow2"}}));
        let pod = pod_for(&claim);

        assert_eq!(pod.metadata.name.as_deref(), Some("importer-dv-http"));
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("PersistentVolumeClaim", "dv-http", "pvc-uid")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let ann = pod.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(ann["cdi.kubevirt.io/storage.createdByController"], "yes");
        assert_eq!(ann["sidecar.istio.io/inject"], "false");
        assert_eq!(ann["linkerd.io/inject"], "disabled");
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["cdi.kubevirt.io"], "importer");
        assert_eq!(labels["prometheus.cdi.kubevirt.io"], "true");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "cdi-controller",
            "the claim's labels too"
        );

        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.restart_policy.as_deref(), Some("OnFailure"));
        assert_eq!(spec.enable_service_links, Some(false));
        assert_eq!(
            spec.security_context.as_ref().and_then(|s| s.fs_group),
            Some(107)
        );
        let c = &spec.containers[0];
        assert_eq!(c.name, "importer");
        assert_eq!(c.image.as_deref(), Some("importer:test"));
        assert_eq!(c.args, Some(vec!["-v=2".to_string()]));
        let port = &c.ports.as_ref().expect("ports")[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port),
            (Some("metrics"), 8443)
        );
        assert_eq!(
            c.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        let res = c.resources.as_ref().expect("resources");
        let q = |m: &Option<
            BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >,
                 k: &str| { m.as_ref().expect("set")[k].0.clone() };
        assert_eq!(q(&res.limits, "cpu"), "750m");
        assert_eq!(q(&res.limits, "memory"), "600M");
        assert_eq!(q(&res.requests, "cpu"), "100m");
        assert_eq!(q(&res.requests, "memory"), "60M");
        let sc = c.security_context.as_ref().expect("security context");
        assert_eq!(sc.run_as_user, Some(107));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(
            sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        let mount = &c.volume_mounts.as_ref().expect("mounts")[0];
        assert_eq!(
            (mount.name.as_str(), mount.mount_path.as_str()),
            ("cdi-data-vol", "/data")
        );
        let vol = &spec.volumes.as_ref().expect("volumes")[0];
        assert_eq!(
            vol.persistent_volume_claim
                .as_ref()
                .map(|p| p.claim_name.as_str()),
            Some("dv-http")
        );

        let expected: Vec<(String, String)> = [
            ("IMPORTER_SOURCE", "http"),
            ("IMPORTER_ENDPOINT", "http://127.0.0.1:18090/disk.qcow2"),
            ("IMPORTER_CONTENTTYPE", "kubevirt"),
            ("IMPORTER_IMAGE_SIZE", "1138166334"),
            ("OWNER_UID", DV_UID),
            ("FILESYSTEM_OVERHEAD", "0.06"),
            ("INSECURE_TLS", "false"),
            ("IMPORTER_DISK_ID", ""),
            ("IMPORTER_UUID", ""),
            ("IMPORTER_PULL_METHOD", ""),
            ("IMPORTER_READY_FILE", ""),
            ("IMPORTER_DONE_FILE", ""),
            ("IMPORTER_BACKING_FILE", ""),
            ("IMPORTER_THUMBPRINT", ""),
            ("http_proxy", ""),
            ("https_proxy", ""),
            ("no_proxy", ""),
            ("IMPORTER_CURRENT_CHECKPOINT", ""),
            ("IMPORTER_PREVIOUS_CHECKPOINT", ""),
            ("IMPORTER_FINAL_CHECKPOINT", ""),
            ("PREALLOCATION", "false"),
            ("CACHE_MODE", ""),
            ("IMPORTER_REGISTRY_IMAGE_ARCHITECTURE", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env_pairs(&pod), expected);
    }

    #[test]
    fn blank_pod_has_source_none_and_no_endpoint() {
        let pod = pod_for(&claim_for(json!({"blank": {}})));
        let env = env_pairs(&pod);
        assert_eq!(env[0], ("IMPORTER_SOURCE".into(), "none".into()));
        assert_eq!(env[1], ("IMPORTER_ENDPOINT".into(), "".into()));
        assert_eq!(env[3], ("IMPORTER_IMAGE_SIZE".into(), "1138166334".into()));
    }

    #[test]
    fn secrets_certs_headers_and_checksum_reach_the_importer() {
        let claim = claim_for(json!({"http": {
            "url": "https://x/disk.img", "secretRef": "creds", "certConfigMap": "ca",
            "checksum": "sha256:ab", "extraHeaders": ["X-A: 1"], "secretExtraHeaders": ["hs"],
        }}));
        let pod = pod_for(&claim);
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        let env = c.env.as_ref().expect("env");
        let key_ref = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value_from.as_ref())
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|s| (s.name.clone(), s.key.clone()))
        };
        assert_eq!(
            key_ref("IMPORTER_ACCESS_KEY_ID"),
            Some(("creds".into(), "accessKeyId".into()))
        );
        assert_eq!(
            key_ref("IMPORTER_SECRET_KEY"),
            Some(("creds".into(), "secretKey".into()))
        );
        let pairs = env_pairs(&pod);
        assert!(pairs.contains(&("IMPORTER_CERT_DIR".into(), "/certs".into())));
        assert!(pairs.contains(&("IMPORTER_EXTRA_HEADER_0".into(), "X-A: 1".into())));
        assert!(pairs.contains(&("IMPORTER_CHECKSUM".into(), "sha256:ab".into())));
        let mounts: Vec<_> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/data", "/certs", "/extraheaders/0"]);
    }

    #[test]
    fn gcs_secret_is_mounted_as_a_credentials_file() {
        let claim =
            claim_for(json!({"gcs": {"url": "gs://bucket/disk.img", "secretRef": "sa-key"}}));
        let pod = pod_for(&claim);
        let pairs = env_pairs(&pod);
        assert!(pairs.contains(&(
            "GOOGLE_APPLICATION_CREDENTIALS".into(),
            "/google/credentials.json".into()
        )));
        assert!(!pairs.iter().any(|(k, _)| k == "IMPORTER_ACCESS_KEY_ID"));
        let spec = pod.spec.as_ref().expect("spec");
        let mount = spec.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == "/google");
        assert!(mount.is_some(), "the key is mounted at /google");
        assert!(
            spec.volumes.iter().flatten().any(|v| v
                .secret
                .as_ref()
                .and_then(|s| s.secret_name.as_deref())
                == Some("sa-key"))
        );
    }

    #[test]
    fn registries_pass_every_field_and_listed_insecure_registries_skip_verification() {
        let source = json!({"registry": {
            "url": "docker://registry.local:5000/disks/fedora:42",
            "secretRef": "pull-secret",
            "certConfigMap": "registry-ca",
            "platform": {"architecture": "arm64"},
        }});
        let claim = claim_for(source);
        let value = |pod: &Pod, name: &str| {
            env_pairs(pod)
                .into_iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let pod = pod_for(&claim);
        assert_eq!(value(&pod, "IMPORTER_SOURCE"), "registry");
        assert_eq!(
            value(&pod, "IMPORTER_ENDPOINT"),
            "docker://registry.local:5000/disks/fedora:42"
        );
        assert_eq!(value(&pod, "IMPORTER_REGISTRY_IMAGE_ARCHITECTURE"), "arm64");
        assert_eq!(value(&pod, "IMPORTER_CERT_DIR"), "/certs");
        assert_eq!(value(&pod, "INSECURE_TLS"), "false");
        let keys = pod.spec.as_ref().expect("spec").containers[0]
            .env
            .iter()
            .flatten()
            .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
            .map(|r| (r.name.clone(), r.key.clone()))
            .collect::<Vec<_>>();
        assert_eq!(
            keys,
            [
                ("pull-secret".to_owned(), "accessKeyId".to_owned()),
                ("pull-secret".to_owned(), "secretKey".to_owned())
            ]
        );
        let mut config = EffectiveConfig::default();
        config.insecure_registries = vec!["registry.local:5000".into()];
        let pod = render(&ImporterInput {
            claim: &claim,
            settings: &Settings::default(),
            config: &config,
        });
        assert_eq!(value(&pod, "INSECURE_TLS"), "true");
        config.insecure_registries = vec!["registry.local".into()];
        let pod = render(&ImporterInput {
            claim: &claim,
            settings: &Settings::default(),
            config: &config,
        });
        assert_eq!(
            value(&pod, "INSECURE_TLS"),
            "false",
            "another port is another registry"
        );
    }

    #[test]
    fn a_node_pull_runs_the_image_beside_the_importer_with_the_server_copied_in() {
        let claim = claim_for(json!({"registry": {
            "url": "docker://quay.io/containerdisks/fedora:42",
            "pullMethod": "node",
            "platform": {"architecture": "arm64"},
        }}));
        let pod = pod_for(&claim);
        let spec = pod.spec.as_ref().expect("spec");
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["importer", "server"], "the importer stays first");
        let init = &spec.init_containers.as_ref().expect("init")[0];
        assert_eq!(init.image.as_deref(), Some("importer:test"));
        assert_eq!(
            init.command.as_deref().expect("command"),
            [
                "/usr/bin/cdi-containerimage-server",
                "--install",
                "/shared/server"
            ]
        );
        let server = &spec.containers[1];
        assert_eq!(
            server.image.as_deref(),
            Some("quay.io/containerdisks/fedora:42")
        );
        assert_eq!(
            server.command.as_deref().expect("command").join(" "),
            "/shared/server -p 8100 -image-dir /disk -ready-file /shared/ready -done-file /shared/done"
        );
        assert_eq!(
            spec.node_selector.as_ref().expect("selector")["kubernetes.io/arch"],
            "arm64"
        );
        let shared = |c: &Container| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == SHARED_VOLUME && m.mount_path == "/shared")
        };
        assert!(shared(init) && shared(server) && shared(&spec.containers[0]));
        assert!(
            spec.volumes
                .iter()
                .flatten()
                .any(|v| v.name == SHARED_VOLUME && v.empty_dir.is_some())
        );
        let pairs = env_pairs(&pod);
        for (k, v) in [
            ("IMPORTER_PULL_METHOD", "node"),
            ("IMPORTER_READY_FILE", "/shared/ready"),
            ("IMPORTER_DONE_FILE", "/shared/done"),
        ] {
            assert!(pairs.contains(&(k.into(), v.into())), "{k}");
        }
        // A pod pull has none of it.
        let pod = pod_for(&claim_for(
            json!({"registry": {"url": "docker://quay.io/x/y:1"}}),
        ));
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.containers.len(), 1);
        assert!(spec.init_containers.is_none() && spec.node_selector.is_none());
        assert!(env_pairs(&pod).contains(&("IMPORTER_READY_FILE".into(), String::new())));
    }

    #[test]
    fn proxy_ca_is_mounted_from_the_copied_config_map() {
        let claim = claim_for(json!({"http": {"url": "https://x/disk.img"}}));
        let mut config = EffectiveConfig::default();
        config.import_proxy = Some(cdi_crds::config::ImportProxy {
            https_proxy: Some("http://proxy:3128".into()),
            trusted_ca_proxy: Some("proxy-ca".into()),
            ..Default::default()
        });
        let pod = render(&ImporterInput {
            claim: &claim,
            settings: &Settings::default(),
            config: &config,
        });
        let pairs = env_pairs(&pod);
        assert!(pairs.contains(&("https_proxy".into(), "http://proxy:3128".into())));
        assert!(pairs.contains(&("IMPORTER_PROXY_CERT_DIR".into(), "/proxycerts/".into())));
        let spec = pod.spec.as_ref().expect("spec");
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "cdi-proxy-cert-vol")
            .expect("volume");
        assert_eq!(
            volume.config_map.as_ref().map(|c| c.name.as_str()),
            Some("import-proxy-cm-dv-http")
        );
        assert!(
            spec.containers[0]
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == "/proxycerts/")
        );
    }

    #[test]
    fn block_claim_gets_a_device_and_no_overhead() {
        let mut claim = claim_for(json!({"blank": {}}));
        if let Some(s) = claim.spec.as_mut() {
            s.volume_mode = Some("Block".into());
        }
        let pod = pod_for(&claim);
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        assert!(c.volume_mounts.is_none());
        assert_eq!(
            c.volume_devices.as_ref().expect("device")[0].device_path,
            "/dev/cdi-block-volume"
        );
        assert!(env_pairs(&pod).contains(&("FILESYSTEM_OVERHEAD".into(), "0".into())));
    }

    #[test]
    fn worker_pods_log_as_the_controller_was_told_to() {
        let claim = claim_for(json!({"http": {"url": "http://x/disk.img"}}));
        let has_format = |pod: &Pod| {
            env_pairs(pod)
                .into_iter()
                .find(|(k, _)| k == "CDI_LOG_FORMAT")
                .map(|(_, v)| v)
        };
        assert_eq!(
            has_format(&pod_for(&claim)),
            None,
            "upstream's env when unset"
        );
        let settings = Settings {
            log_format: Some("json".into()),
            ..Settings::default()
        };
        let config = EffectiveConfig::default();
        let pod = render(&ImporterInput {
            claim: &claim,
            settings: &settings,
            config: &config,
        });
        assert_eq!(has_format(&pod).as_deref(), Some("json"));
        let pod = crate::worker::upload::render_pod(&crate::worker::upload::UploadInput {
            claim: &claim,
            settings: &settings,
            config: &config,
            deadline: std::time::UNIX_EPOCH,
        });
        assert_eq!(has_format(&pod).as_deref(), Some("json"));
    }
}
