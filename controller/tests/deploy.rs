//! The manifests in `deploy/` parse as the Kubernetes and CDI types they claim to be, the
//! kustomization lists every file that exists (and every CRD), the Deployment matches the
//! controller's flags and RBAC, and the RBAC grants what the controller uses. (The e2e suite
//! also runs the controller under exactly this RBAC against a real apiserver.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cdi_crds::{CdiConfig, DataVolume};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn documents(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str_multiple::<serde_json::Value, Vec<_>>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn parse<T: serde::de::DeserializeOwned>(doc: &serde_json::Value, path: &Path) -> T {
    serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{}: a {} does not parse: {e}", path.display(), doc["kind"]))
}

struct Manifests {
    deployment: Option<Deployment>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    roles: Vec<Role>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    role_bindings: Vec<RoleBinding>,
}

/// Every manifest outside `crds/`, each parsed as its kind.
fn manifests() -> Manifests {
    let mut m = Manifests {
        deployment: None,
        service_accounts: Vec::new(),
        cluster_roles: Vec::new(),
        roles: Vec::new(),
        cluster_role_bindings: Vec::new(),
        role_bindings: Vec::new(),
    };
    let mut files: Vec<PathBuf> = ["", "examples"]
        .iter()
        .flat_map(|sub| {
            std::fs::read_dir(deploy_dir().join(sub))
                .expect("deploy dir")
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in &files {
        for doc in documents(path) {
            if doc["kind"] == "Kustomization" {
                continue;
            }
            assert!(
                doc["metadata"]["name"].is_string(),
                "{}: a {} without metadata.name",
                path.display(),
                doc["kind"]
            );
            match doc["kind"].as_str().unwrap_or("") {
                "Namespace" => drop(parse::<Namespace>(&doc, path)),
                "Service" => drop(parse::<Service>(&doc, path)),
                "CDIConfig" => drop(parse::<CdiConfig>(&doc, path)),
                "DataVolume" => drop(parse::<DataVolume>(&doc, path)),
                "APIService" => drop(parse::<APIService>(&doc, path)),
                // cdi-apiserver's Deployment is checked by deploy/check.py.
                "Deployment" if doc["metadata"]["name"] == "cdi-deployment" => {
                    m.deployment = Some(parse(&doc, path))
                }
                "Deployment" => drop(parse::<Deployment>(&doc, path)),
                "ServiceAccount" => m.service_accounts.push(parse(&doc, path)),
                "ClusterRole" => m.cluster_roles.push(parse(&doc, path)),
                "Role" => m.roles.push(parse(&doc, path)),
                "ClusterRoleBinding" => m.cluster_role_bindings.push(parse(&doc, path)),
                "RoleBinding" => m.role_bindings.push(parse(&doc, path)),
                other => panic!("{}: unexpected kind {other:?}", path.display()),
            }
        }
    }
    m
}

#[test]
fn kustomization_lists_every_manifest_and_crd() {
    let path = deploy_dir().join("kustomization.yaml");
    let doc = &documents(&path)[0];
    let listed: BTreeSet<String> = doc["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a path").to_owned())
        .collect();
    for file in &listed {
        assert!(
            deploy_dir().join(file).exists(),
            "kustomization lists missing {file}"
        );
    }
    for entry in std::fs::read_dir(deploy_dir().join("crds"))
        .expect("crds")
        .flatten()
    {
        let name = format!("crds/{}", entry.file_name().to_string_lossy());
        assert!(listed.contains(&name), "kustomization misses {name}");
    }
    for file in [
        "namespace.yaml",
        "rbac.yaml",
        "controller.yaml",
        "cdiconfig.yaml",
    ] {
        assert!(listed.contains(file), "kustomization misses {file}");
    }
}

#[test]
fn deployment_runs_the_controller_as_the_rbac_service_account() {
    let m = manifests();
    let deployment = m.deployment.expect("a Deployment");
    let pod = deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec");
    let sa = pod.service_account_name.expect("serviceAccountName");
    assert!(
        m.service_accounts
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(sa.as_str())),
        "ServiceAccount {sa} is not in rbac.yaml"
    );
    // The controller's bindings (the others are cdi-apiserver's).
    for binding in m
        .cluster_role_bindings
        .iter()
        .filter(|b| b.role_ref.name == "cdi-controller")
        .map(|b| &b.subjects)
        .chain(
            m.role_bindings
                .iter()
                .filter(|b| b.role_ref.name == "cdi-controller")
                .map(|b| &b.subjects),
        )
    {
        assert!(
            binding.iter().flatten().any(|s| s.name == sa),
            "a binding does not name {sa}"
        );
    }
    let container = &pod.containers[0];
    let env: BTreeSet<&str> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    for wanted in [
        "IMPORTER_IMAGE",
        "UPLOADSERVER_IMAGE",
        "CDI_NAMESPACE",
        "POD_NAME",
    ] {
        assert!(env.contains(wanted), "the controller's env lacks {wanted}");
    }
    let sc = container.security_context.clone().expect("securityContext");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
}

fn grants(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r.api_groups.iter().flatten().any(|g| g == group)
            && r.resources.iter().flatten().any(|x| x == resource)
            && r.verbs.iter().any(|v| v == verb || v == "*")
    })
}

#[test]
fn rbac_grants_what_the_controller_uses_and_no_wildcards() {
    let m = manifests();
    let cluster: Vec<PolicyRule> = m
        .cluster_roles
        .iter()
        .flat_map(|r| r.rules.clone().unwrap_or_default())
        .collect();
    let namespaced: Vec<PolicyRule> = m
        .roles
        .iter()
        .flat_map(|r| r.rules.clone().unwrap_or_default())
        .collect();
    for rule in cluster.iter().chain(&namespaced) {
        assert!(
            !rule.verbs.iter().any(|v| v == "*"),
            "wildcard verb in {rule:?}"
        );
        assert!(
            !rule.resources.iter().flatten().any(|r| r == "*"),
            "wildcard resource in {rule:?}"
        );
    }
    for (group, resource, verb) in [
        ("cdi.kubevirt.io", "datavolumes", "watch"),
        ("cdi.kubevirt.io", "datavolumes/status", "patch"),
        ("cdi.kubevirt.io", "storageprofiles", "create"),
        ("cdi.kubevirt.io", "storageprofiles/status", "patch"),
        ("cdi.kubevirt.io", "cdiconfigs", "create"),
        ("cdi.kubevirt.io", "cdiconfigs/status", "patch"),
        ("", "persistentvolumeclaims", "create"),
        ("", "persistentvolumeclaims", "patch"),
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("", "services", "create"),
        ("", "secrets", "create"),
        ("storage.k8s.io", "storageclasses", "watch"),
        ("events.k8s.io", "events", "create"),
        // DataImportCrons: their annotations, finalizer and status; their imports, snapshots
        // and DataSources; their certConfigMap.
        ("cdi.kubevirt.io", "dataimportcrons", "watch"),
        ("cdi.kubevirt.io", "dataimportcrons", "patch"),
        ("cdi.kubevirt.io", "datavolumes", "create"),
        ("cdi.kubevirt.io", "datavolumes", "delete"),
        ("cdi.kubevirt.io", "datasources", "create"),
        ("cdi.kubevirt.io", "datasources", "patch"),
        ("cdi.kubevirt.io", "datasources", "delete"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "create"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "delete"),
        ("", "configmaps", "get"),
    ] {
        assert!(
            grants(&cluster, group, resource, verb),
            "ClusterRole lacks {verb} {group}/{resource}"
        );
    }
    for (group, resource, verb) in [
        ("coordination.k8s.io", "leases", "update"),
        ("", "secrets", "update"),
        ("", "configmaps", "create"),
    ] {
        assert!(
            grants(&namespaced, group, resource, verb),
            "Role lacks {verb} {group}/{resource}"
        );
    }
    assert!(
        !grants(&cluster, "coordination.k8s.io", "leases", "update"),
        "leases are namespaced only"
    );
}
