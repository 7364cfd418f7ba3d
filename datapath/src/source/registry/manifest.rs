//! From a reference to the disk: the manifest (an index resolved to one platform), the image
//! config (a bootc image is refused), and which blobs hold the disk: one KubeVirt disk-artifact
//! layer, or the filesystem layers to search for the file under `disk/`.

use std::collections::BTreeMap;

use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::{RegistryClient, registry_error};
use crate::error::{Error, ErrorKind};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const ACCEPTED: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// Media types of image configs, which carry labels.
const CONFIGS: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// Layers that are tar archives of a filesystem (compressed or not).
const FILESYSTEM_LAYERS: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];
/// KubeVirt's disk artifacts: the layer is the disk image itself (raw, qcow2, compressed).
const DISK_ARTIFACT_PREFIX: &str = "application/vnd.kubevirt.disk";
/// The layer annotation that names a disk of a VM artifact.
const DISK_NAME: &str = "io.kubevirt.disk.name";
/// Largest image config read (it is JSON; real ones are a few KiB).
const MAX_CONFIG: i64 = 4 << 20;

/// A blob as a manifest describes it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    digest: String,
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
    variant: Option<String>,
}

impl Platform {
    fn name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// Where the disk is in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskPlan {
    /// A KubeVirt disk artifact: this blob is the disk.
    Artifact(Descriptor),
    /// A container disk: the one regular file under `disk/` in these layers, in order.
    Filesystem(Vec<Descriptor>),
}

/// A resolved image: the manifest's digest and where its disk is.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The reference pinned to the image manifest's digest.
    pub reference: Reference,
    pub plan: DiskPlan,
}

/// Resolves `reference` (choosing `architecture` from an index) and plans the disk.
pub async fn resolve(
    client: &RegistryClient,
    reference: &Reference,
    auth: &RegistryAuth,
    architecture: &str,
) -> Result<Resolved, Error> {
    let image = cdi_imageref::describe(reference);
    let (raw, digest) = client
        .oci
        .pull_manifest_raw(reference, auth, ACCEPTED)
        .await
        .map_err(|e| registry_error(&image, "fetching the manifest", &e))?;
    let mut manifest = parse(&image, &raw)?;
    let mut pinned = pin(reference, &digest);
    if let Some(entries) = &manifest.manifests {
        let chosen = choose(&image, entries, architecture)?;
        pinned = pin(reference, &chosen);
        let (raw, _) = client
            .oci
            .pull_manifest_raw(&pinned, auth, ACCEPTED)
            .await
            .map_err(|e| registry_error(&image, "fetching the platform's manifest", &e))?;
        manifest = parse(&image, &raw)?;
        if manifest.manifests.is_some() {
            return Err(refused(
                &image,
                "an index points at another index",
                ErrorKind::Unsupported,
            ));
        }
    }
    let layers = manifest.layers.clone().unwrap_or_default();
    if let Some(config) = &manifest.config {
        check_config(client, &pinned, &image, config).await?;
    }
    Ok(Resolved {
        reference: pinned,
        plan: plan(&image, layers)?,
    })
}

fn parse(image: &str, raw: &[u8]) -> Result<RawManifest, Error> {
    let m: RawManifest = serde_json::from_slice(raw).map_err(|e| {
        refused(
            image,
            &format!("its manifest is not valid JSON: {e}"),
            ErrorKind::InvalidImage,
        )
    })?;
    if m.manifests.is_none() && m.layers.is_none() {
        let kind = m.media_type.as_deref().unwrap_or("no media type");
        return Err(refused(
            image,
            &format!("its manifest ({kind}) has neither layers nor platform manifests"),
            ErrorKind::InvalidImage,
        ));
    }
    Ok(m)
}

fn pin(reference: &Reference, digest: &str) -> Reference {
    reference.clone_with_digest(digest.to_owned())
}

/// The digest of the index entry for `linux/architecture`.
fn choose(image: &str, entries: &[IndexEntry], architecture: &str) -> Result<String, Error> {
    let matching = |e: &&IndexEntry| {
        e.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == architecture)
    };
    if let Some(entry) = entries.iter().find(matching) {
        return Ok(entry.digest.clone());
    }
    let found: Vec<String> = entries
        .iter()
        .map(|e| {
            e.platform
                .as_ref()
                .map_or("no platform".into(), Platform::name)
        })
        .collect();
    Err(refused(
        image,
        &format!(
            "its index has no image for linux/{architecture} (it has: {}); set the DataVolume's platform.architecture to one of them",
            found.join(", ")
        ),
        ErrorKind::NotFound,
    ))
}

/// Refuses a bootc image (an ostree-based OS, not a disk), as upstream does.
async fn check_config(
    client: &RegistryClient,
    reference: &Reference,
    image: &str,
    config: &Descriptor,
) -> Result<(), Error> {
    if !CONFIGS.contains(&config.media_type.as_str()) || config.size > MAX_CONFIG {
        return Ok(());
    }
    let descriptor = oci_client::manifest::OciDescriptor {
        media_type: config.media_type.clone(),
        digest: config.digest.clone(),
        size: config.size,
        ..Default::default()
    };
    let mut bytes = Vec::new();
    client
        .oci
        .pull_blob(reference, &descriptor, &mut bytes)
        .await
        .map_err(|e| registry_error(image, "fetching the image config", &e))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        refused(
            image,
            &format!("its config is not valid JSON: {e}"),
            ErrorKind::InvalidImage,
        )
    })?;
    let labels = value.pointer("/config/Labels");
    let label = |name: &str| labels.and_then(|l| l.get(name)).and_then(|v| v.as_str());
    if label("containers.bootc") == Some("1") || label("ostree.bootable") == Some("1") {
        return Err(refused(
            image,
            "bootc image detected: it holds an ostree-based bootable OS (containers.bootc=1 or ostree.bootable=1), not a disk image; build a containerDisk with the disk under /disk instead",
            ErrorKind::Unsupported,
        ));
    }
    Ok(())
}

/// Which blobs hold the disk.
pub fn plan(image: &str, layers: Vec<Descriptor>) -> Result<DiskPlan, Error> {
    if layers.is_empty() {
        return Err(refused(image, "it has no layers", ErrorKind::InvalidImage));
    }
    let disks: Vec<&Descriptor> = layers
        .iter()
        .filter(|l| l.media_type.starts_with(DISK_ARTIFACT_PREFIX))
        .collect();
    match disks.as_slice() {
        [one] => return Ok(DiskPlan::Artifact((*one).clone())),
        [] => {}
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|l| {
                    format!(
                        "{} ({})",
                        l.annotations
                            .get(DISK_NAME)
                            .map_or("unnamed", String::as_str),
                        l.media_type
                    )
                })
                .collect();
            return Err(refused(
                image,
                &format!(
                    "it holds {} disks ({}); a DataVolume takes one: push each disk as its own artifact",
                    several.len(),
                    names.join(", ")
                ),
                ErrorKind::Unsupported,
            ));
        }
    }
    if let Some(odd) = layers
        .iter()
        .find(|l| !FILESYSTEM_LAYERS.contains(&l.media_type.as_str()))
    {
        return Err(refused(
            image,
            &format!(
                "layer {} has media type {}, which is neither a filesystem layer nor a KubeVirt disk",
                odd.digest, odd.media_type
            ),
            ErrorKind::Unsupported,
        ));
    }
    Ok(DiskPlan::Filesystem(layers))
}

fn refused(image: &str, why: &str, kind: ErrorKind) -> Error {
    Error::Registry {
        image: image.to_owned(),
        message: why.to_owned(),
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(media_type: &str, n: u8, name: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            size: 100,
            annotations: name
                .map(|n| BTreeMap::from([(DISK_NAME.to_owned(), n.to_owned())]))
                .unwrap_or_default(),
        }
    }

    #[test]
    fn a_disk_artifact_layer_is_the_disk_and_filesystem_layers_are_searched() {
        let artifact = layer("application/vnd.kubevirt.disk.qcow2", 1, Some("rootdisk"));
        let config = layer(
            "application/vnd.kubevirt.virtualmachine.config.v1+json",
            2,
            None,
        );
        assert_eq!(
            plan("i", vec![config.clone(), artifact.clone()]).expect("artifact"),
            DiskPlan::Artifact(artifact.clone())
        );
        let fs = vec![
            layer("application/vnd.oci.image.layer.v1.tar+gzip", 3, None),
            layer("application/vnd.oci.image.layer.v1.tar+zstd", 4, None),
            layer("application/vnd.docker.image.rootfs.diff.tar.gzip", 5, None),
        ];
        assert_eq!(plan("i", fs.clone()).expect("fs"), DiskPlan::Filesystem(fs));
    }

    #[test]
    fn several_disks_unknown_layers_and_no_layers_are_refused_with_what_was_found() {
        let two = vec![
            layer("application/vnd.kubevirt.disk.qcow2", 1, Some("rootdisk")),
            layer("application/vnd.kubevirt.disk.raw+gzip", 2, Some("data")),
        ];
        let e = plan("i", two).expect_err("two disks").to_string();
        assert!(
            e.contains("2 disks (rootdisk (application/vnd.kubevirt.disk.qcow2), data"),
            "{e}"
        );
        let e = plan(
            "i",
            vec![layer(
                "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                1,
                None,
            )],
        )
        .expect_err("helm")
        .to_string();
        assert!(
            e.contains("neither a filesystem layer nor a KubeVirt disk"),
            "{e}"
        );
        assert!(plan("i", Vec::new()).is_err());
    }

    #[test]
    fn an_index_resolves_to_linux_of_the_architecture_or_lists_what_it_has() {
        let entries: Vec<IndexEntry> = serde_json::from_str(
            r#"[{"digest":"sha256:aa","platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
                {"digest":"sha256:bb","platform":{"architecture":"amd64","os":"linux"}},
                {"digest":"sha256:cc","platform":{"architecture":"amd64","os":"windows"}}]"#,
        )
        .expect("json");
        assert_eq!(choose("i", &entries, "amd64").expect("amd64"), "sha256:bb");
        assert_eq!(choose("i", &entries, "arm64").expect("arm64"), "sha256:aa");
        let e = choose("i", &entries, "s390x")
            .expect_err("none")
            .to_string();
        assert!(
            e.contains("linux/arm64/v8, linux/amd64, windows/amd64"),
            "{e}"
        );
    }
}
