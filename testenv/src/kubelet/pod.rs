//! One pod's container, run as a local process: its volumes and devices become symlinks under
//! a per-pod root (passed as `CDI_ROOT`), its env is resolved like a kubelet would, and its
//! status is reported back through the API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::Error;

/// Annotation the stand-in puts on a pod: container port → loopback port it really listens on.
pub const PORTS_ANNOTATION: &str = "kubelet-standin.cdi-rs.io/ports";

/// The port CDI's workers serve metrics (importer) or uploads (upload server) on.
pub const WORKER_PORT: i32 = 8443;

/// Everything needed to start the process, prepared from the pod and the objects it names.
#[derive(Debug)]
pub struct Prepared {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub root: PathBuf,
    pub termination_log: PathBuf,
    pub log: PathBuf,
}

/// The binary for `image`, looked up by repository name (`quay.io/x/cdi-importer:v1` →
/// `cdi-importer`).
pub fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// Resolves a container path under `root` (`/data` → `root/data`).
fn under(root: &Path, container_path: &str) -> PathBuf {
    // A trailing slash (`mountPath: /etc/tls/`, as upstream's upload pod has) would make the
    // link's path name a directory that does not exist yet.
    root.join(container_path.trim_start_matches('/').trim_end_matches('/'))
}

fn link(target: &Path, at: &Path) -> Result<(), Error> {
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    let _ = std::fs::remove_file(at);
    std::os::unix::fs::symlink(target, at)
        .map_err(|e| Error::io(format!("link {} -> {}", at.display(), target.display()), e))
}

fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    for (key, value) in files {
        let path = dir.join(key);
        std::fs::write(&path, value)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    }
    Ok(())
}

/// Prepares `container` of `pod` in `pod_dir`: materialises its volumes and resolves its env.
pub async fn prepare(
    client: &Client,
    pod: &Pod,
    container: &Container,
    binaries: &BTreeMap<String, PathBuf>,
    pod_dir: &Path,
    ports: &BTreeMap<i32, u16>,
) -> Result<Prepared, String> {
    let ns = pod.namespace().unwrap_or_default();
    let image = container.image.clone().unwrap_or_default();
    let program = binaries
        .get(image_name(&image))
        .cloned()
        .ok_or_else(|| format!("the kubelet stand-in has no local binary for image {image:?}"))?;
    let root = pod_dir.join(&container.name);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;

    let volumes: BTreeMap<String, &Volume> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|v| v.iter().map(|v| (v.name.clone(), v)).collect())
        .unwrap_or_default();
    let source_of = |name: &str| -> Result<&Volume, String> {
        volumes
            .get(name)
            .copied()
            .ok_or_else(|| format!("volume {name:?} is mounted but not declared"))
    };
    let volume_dir = pod_dir.join(".volumes");
    for mount in container.volume_mounts.iter().flatten() {
        let vol = source_of(&mount.name)?;
        let mut source = volume_source(client, pod, &ns, vol, &volume_dir).await?;
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            source = source.join(sub);
        }
        link(&source, &under(&root, &mount.mount_path)).map_err(|e| e.to_string())?;
    }
    for device in container.volume_devices.iter().flatten() {
        let vol = source_of(&device.name)?;
        let source = volume_source(client, pod, &ns, vol, &volume_dir).await?;
        link(&source, &under(&root, &device.device_path)).map_err(|e| e.to_string())?;
    }
    let termination_path = container
        .termination_message_path
        .as_deref()
        .unwrap_or("/dev/termination-log");
    let termination_log = under(&root, termination_path);
    if let Some(parent) = termination_log.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    std::fs::write(&termination_log, b"")
        .map_err(|e| format!("create {}: {e}", termination_log.display()))?;

    let mut env = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let data = config_map_data(client, &ns, &r.name, r.optional.unwrap_or(false)).await?;
            env.extend(data.into_iter().map(|(k, v)| {
                (
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            }));
        }
        if let Some(r) = &from.secret_ref {
            let data = secret_data(client, &ns, &r.name, r.optional.unwrap_or(false)).await?;
            env.extend(data.into_iter().map(|(k, v)| {
                (
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            }));
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = resolve_env(client, pod, &ns, var).await? {
            env.insert(var.name.clone(), value);
        }
    }
    env.insert("CDI_ROOT".into(), root.display().to_string());
    if let Some(port) = ports.get(&WORKER_PORT) {
        env.insert("CDI_METRICS_ADDR".into(), format!("127.0.0.1:{port}"));
    }
    for (container_port, host_port) in ports {
        env.insert(
            format!("CDI_PORT_{container_port}"),
            format!("127.0.0.1:{host_port}"),
        );
    }
    let mut args: Vec<String> = container
        .command
        .iter()
        .flatten()
        .skip(1)
        .cloned()
        .collect();
    args.extend(container.args.iter().flatten().cloned());
    Ok(Prepared {
        program,
        args,
        env,
        log: pod_dir.join(format!("{}.log", container.name)),
        root,
        termination_log,
    })
}

async fn resolve_env(
    client: &Client,
    pod: &Pod,
    ns: &str,
    var: &EnvVar,
) -> Result<Option<String>, String> {
    let Some(from) = &var.value_from else {
        return Ok(Some(var.value.clone().unwrap_or_default()));
    };
    if let Some(r) = &from.secret_key_ref {
        let data = secret_data(client, ns, &r.name, r.optional.unwrap_or(false)).await?;
        return key_value(data, &r.key, &r.name, r.optional.unwrap_or(false));
    }
    if let Some(r) = &from.config_map_key_ref {
        let data = config_map_data(client, ns, &r.name, r.optional.unwrap_or(false)).await?;
        return key_value(data, &r.key, &r.name, r.optional.unwrap_or(false));
    }
    if let Some(f) = &from.field_ref {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let path = f.field_path.as_str();
        let value = match path {
            "metadata.name" => meta.name.clone(),
            "metadata.namespace" => meta.namespace.clone(),
            "metadata.uid" => meta.uid.clone(),
            "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
            "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
            "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
            _ => {
                let lookup = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
                    path.strip_prefix(prefix)
                        .and_then(|k| k.strip_suffix("']"))
                        .and_then(|k| map.as_ref()?.get(k).cloned())
                };
                lookup("metadata.labels['", &meta.labels)
                    .or_else(|| lookup("metadata.annotations['", &meta.annotations))
            }
        };
        return Ok(Some(value.unwrap_or_default()));
    }
    Err(format!(
        "env {}: the kubelet stand-in cannot resolve this valueFrom",
        var.name
    ))
}

fn key_value(
    data: BTreeMap<String, Vec<u8>>,
    key: &str,
    name: &str,
    optional: bool,
) -> Result<Option<String>, String> {
    match data.get(key) {
        Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
        None if optional => Ok(None),
        None => Err(format!("key {key:?} not found in {name:?}")),
    }
}

async fn secret_data(
    client: &Client,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    match Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
    {
        Ok(Some(s)) => {
            let mut out: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            out.extend(
                s.string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            Ok(out)
        }
        Ok(None) if optional => Ok(BTreeMap::new()),
        Ok(None) => Err(format!("secret {ns}/{name} not found")),
        Err(e) => Err(format!("get secret {ns}/{name}: {e}")),
    }
}

async fn config_map_data(
    client: &Client,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    match Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
    {
        Ok(Some(c)) => {
            let mut out: BTreeMap<String, Vec<u8>> = c
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            out.extend(
                c.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            Ok(out)
        }
        Ok(None) if optional => Ok(BTreeMap::new()),
        Ok(None) => Err(format!("config map {ns}/{name} not found")),
        Err(e) => Err(format!("get config map {ns}/{name}: {e}")),
    }
}

/// The local path that backs a pod volume, creating files for secrets and config maps.
async fn volume_source(
    client: &Client,
    pod: &Pod,
    ns: &str,
    vol: &Volume,
    volume_dir: &Path,
) -> Result<PathBuf, String> {
    let dir = volume_dir.join(&vol.name);
    if let Some(claim) = &vol.persistent_volume_claim {
        let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
            .get(&claim.claim_name)
            .await
            .map_err(|e| format!("get claim {ns}/{}: {e}", claim.claim_name))?;
        let pv_name = pvc
            .spec
            .and_then(|s| s.volume_name)
            .ok_or_else(|| format!("claim {ns}/{} is not bound", claim.claim_name))?;
        let pv = Api::<PersistentVolume>::all(client.clone())
            .get(&pv_name)
            .await
            .map_err(|e| format!("get volume {pv_name}: {e}"))?;
        let spec = pv.spec.unwrap_or_default();
        let csi_path = spec
            .csi
            .and_then(|c| c.volume_attributes?.remove(super::csi::PATH_ATTRIBUTE));
        return spec
            .host_path
            .map(|h| h.path)
            .or(csi_path)
            .map(PathBuf::from)
            .ok_or_else(|| {
                format!(
                    "volume {pv_name} is neither a hostPath volume nor one of the stand-in's CSI \
                     volumes; the stand-in cannot mount it"
                )
            });
    }
    let pick = |data: BTreeMap<String, Vec<u8>>,
                items: &Option<Vec<k8s_openapi::api::core::v1::KeyToPath>>| {
        match items {
            Some(items) => items
                .iter()
                .filter_map(|i| data.get(&i.key).map(|v| (i.path.clone(), v.clone())))
                .collect::<BTreeMap<_, _>>(),
            None => data,
        }
    };
    if let Some(s) = &vol.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = secret_data(client, ns, &name, s.optional.unwrap_or(false)).await?;
        write_files(&dir, &pick(data, &s.items)).map_err(|e| e.to_string())?;
        return Ok(dir);
    }
    if let Some(c) = &vol.config_map {
        let data = config_map_data(client, ns, &c.name, c.optional.unwrap_or(false)).await?;
        write_files(&dir, &pick(data, &c.items)).map_err(|e| e.to_string())?;
        return Ok(dir);
    }
    if let Some(p) = &vol.projected {
        let mut files = BTreeMap::new();
        for source in p.sources.iter().flatten() {
            if let Some(s) = &source.secret {
                let data = secret_data(client, ns, &s.name, s.optional.unwrap_or(false)).await?;
                files.extend(pick(data, &s.items));
            }
            if let Some(c) = &source.config_map {
                let data =
                    config_map_data(client, ns, &c.name, c.optional.unwrap_or(false)).await?;
                files.extend(pick(data, &c.items));
            }
            if let Some(d) = &source.downward_api {
                files.extend(downward_files(pod, d.items.iter().flatten()));
            }
            if let Some(t) = &source.service_account_token {
                let account = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or("default".into());
                let token = service_account_token(client, ns, &account, t).await?;
                files.insert(t.path.clone(), token.into_bytes());
            }
        }
        write_files(&dir, &files).map_err(|e| e.to_string())?;
        return Ok(dir);
    }
    if let Some(d) = &vol.downward_api {
        write_files(&dir, &downward_files(pod, d.items.iter().flatten()))
            .map_err(|e| e.to_string())?;
        return Ok(dir);
    }
    if vol.empty_dir.is_some() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        return Ok(dir);
    }
    Err(format!(
        "volume {:?}: the kubelet stand-in supports persistentVolumeClaim, secret, configMap, projected, downwardAPI and emptyDir",
        vol.name
    ))
}

/// The files of a downward API volume: field references (metadata only; resource fields are
/// not supported and left out).
fn downward_files<'a>(
    pod: &Pod,
    items: impl Iterator<Item = &'a k8s_openapi::api::core::v1::DownwardAPIVolumeFile>,
) -> BTreeMap<String, Vec<u8>> {
    let meta = &pod.metadata;
    let render = |map: &Option<BTreeMap<String, String>>| {
        map.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}\n"))
            .collect::<String>()
    };
    items
        .filter_map(|item| {
            let value = match item.field_ref.as_ref()?.field_path.as_str() {
                "metadata.name" => meta.name.clone().unwrap_or_default(),
                "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
                "metadata.uid" => meta.uid.clone().unwrap_or_default(),
                "metadata.labels" => render(&meta.labels),
                "metadata.annotations" => render(&meta.annotations),
                _ => return None,
            };
            Some((item.path.clone(), value.into_bytes()))
        })
        .collect()
}

/// A bound service-account token from the TokenRequest API, as the kubelet mounts it.
async fn service_account_token(
    client: &Client,
    ns: &str,
    account: &str,
    projection: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
) -> Result<String, String> {
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": projection.audience.iter().collect::<Vec<_>>(),
            "expirationSeconds": projection.expiration_seconds.unwrap_or(3600).max(600),
        }
    });
    let req = http::Request::post(format!(
        "/api/v1/namespaces/{ns}/serviceaccounts/{account}/token"
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&body).unwrap_or_default())
    .map_err(|e| format!("token request: {e}"))?;
    let answer: serde_json::Value = client
        .request(req)
        .await
        .map_err(|e| format!("token for service account {ns}/{account}: {e}"))?;
    answer["status"]["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("token for service account {ns}/{account}: no token in the answer"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn mount_paths_with_a_trailing_slash_link_as_the_directory() {
        let root = std::path::Path::new("/r");
        assert_eq!(super::under(root, "/etc/tls/"), root.join("etc/tls"));
    }

    use super::image_name;

    #[test]
    fn image_names_drop_registry_tag_and_digest() {
        assert_eq!(
            image_name("quay.io/kubevirt/cdi-importer:v1.64.0"),
            "cdi-importer"
        );
        assert_eq!(image_name("cdi-importer"), "cdi-importer");
        assert_eq!(
            image_name("localhost:5000/cdi-importer@sha256:abc"),
            "cdi-importer"
        );
        assert_eq!(
            image_name("registry:5000/x/cdi-uploadserver:latest"),
            "cdi-uploadserver"
        );
    }
}
