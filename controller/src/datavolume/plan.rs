//! DataVolume → PersistentVolumeClaim, as upstream renders it for the legacy (annotation) flow:
//! the source goes into `cdi.kubevirt.io/storage.import.*` or `storage.upload.target`
//! annotations the worker controller reads; `storage` specs are completed from the
//! StorageProfile and grown by the filesystem overhead; `pvc` specs are used as written.

use std::collections::BTreeMap;
use std::sync::Arc;

use cdi_crds::annotations::clone::UPLOAD_TARGET;
use cdi_crds::annotations::{content, import, labels, passthrough, pod, populator, switches};
use cdi_crds::{ContentType, DataVolume, StorageProfile, VolumeMode, quantity};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::cdiconfig::EffectiveConfig;
use crate::worker::WorkerKind;

/// Smallest claim CDI renders.
const MIN_CLAIM_BYTES: u64 = 1 << 20;
/// The kubectl annotation that is never copied from the DataVolume to its claim.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Why a claim cannot be rendered yet: the DataVolume stays Pending with a Warning event
/// carrying `reason` and `message`, and is retried when storage objects change; or, when
/// `terminal`, it fails (waiting cannot help: a clone the requester may not make).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    /// Upstream's event reason (`ErrClaimNotValid`, `CloneWithoutSource`, ...).
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
    /// The DataVolume waits for a default StorageClass (counted in `datavolume_pending`).
    pub no_default_class: bool,
    /// The DataVolume fails instead of waiting.
    pub terminal: bool,
}

impl PlanError {
    pub fn invalid(message: impl Into<String>) -> PlanError {
        PlanError::waiting("ErrClaimNotValid", message)
    }

    /// The DataVolume waits, for `reason`.
    pub fn waiting(reason: &'static str, message: impl Into<String>) -> PlanError {
        PlanError {
            reason,
            message: message.into(),
            no_default_class: false,
            terminal: false,
        }
    }

    /// The DataVolume fails, for `reason`.
    pub fn failed(reason: &'static str, message: impl Into<String>) -> PlanError {
        PlanError {
            terminal: true,
            ..PlanError::waiting(reason, message)
        }
    }
}

/// The size of a clone's source, for a target that gives none (upstream takes the source's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceSize {
    /// The source claim's request (or a snapshot's restore size), in bytes.
    pub bytes: u64,
    /// The source is a Block volume: its bytes are the disk, with no filesystem overhead in them.
    pub block: bool,
}

/// The storage objects a rendering reads (from the controller's caches).
#[derive(Clone, Debug, Default)]
pub struct StorageView {
    pub classes: Vec<Arc<StorageClass>>,
    pub profiles: Vec<Arc<StorageProfile>>,
}

impl StorageView {
    fn class(&self, name: &str) -> Option<&StorageClass> {
        self.classes
            .iter()
            .map(|c| c.as_ref())
            .find(|c| c.metadata.name.as_deref() == Some(name))
    }

    fn profile(&self, name: &str) -> Option<&StorageProfile> {
        self.profiles
            .iter()
            .map(|p| p.as_ref())
            .find(|p| p.metadata.name.as_deref() == Some(name))
    }

    /// The default class for virtual machine disks, else the cluster default (newest wins when
    /// several are marked, as Kubernetes does).
    pub fn default_class(&self) -> Option<&StorageClass> {
        let marked = |annotation: &str| {
            self.classes
                .iter()
                .map(|c| c.as_ref())
                .filter(|c| {
                    c.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(annotation))
                        .is_some_and(|v| v == "true")
                })
                .max_by_key(|c| c.metadata.creation_timestamp.clone().map(|t| t.0))
        };
        marked(cdi_crds::annotations::storage_class::IS_DEFAULT_VIRT_CLASS)
            .or_else(|| marked(cdi_crds::annotations::storage_class::IS_DEFAULT_CLASS))
    }

    /// The provisioner of class `name`.
    pub fn class_provisioner(&self, name: &str) -> Option<String> {
        self.class(name).map(|c| c.provisioner.clone())
    }

    /// A class whose provisioner is `provisioner` (the default among them if several).
    pub fn class_of_provisioner(&self, provisioner: &str) -> Option<String> {
        let mut classes: Vec<&StorageClass> = self
            .classes
            .iter()
            .map(|c| c.as_ref())
            .filter(|c| c.provisioner == provisioner)
            .collect();
        classes.sort_by_key(|c| {
            let default = c
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(cdi_crds::annotations::storage_class::IS_DEFAULT_CLASS))
                .is_some_and(|v| v == "true");
            (!default, c.metadata.name.clone())
        });
        classes.first().and_then(|c| c.metadata.name.clone())
    }

    /// Whether claims of class `name` bind only once a pod uses them.
    pub fn is_wait_for_first_consumer(&self, name: Option<&str>) -> bool {
        name.and_then(|n| self.class(n))
            .and_then(|c| c.volume_binding_mode.as_deref())
            == Some("WaitForFirstConsumer")
    }
}

/// The worker kind of `dv` (a clone's, whatever its strategy, reads as a clone target), or why
/// this controller cannot fill it.
pub fn transfer_of(dv: &DataVolume) -> Result<WorkerKind, PlanError> {
    let Some(source) = &dv.spec.source else {
        return match &dv.spec.source_ref {
            Some(r) if r.kind == cdi_crds::DataVolumeSourceRef::DATA_SOURCE_KIND => {
                Ok(WorkerKind::CloneTarget)
            }
            Some(r) => Err(PlanError::invalid(format!(
                "sourceRef.kind {:?} is not DataSource, the only kind a DataVolume can refer to",
                r.kind
            ))),
            None => Err(PlanError::invalid(
                "the DataVolume has neither spec.source nor spec.sourceRef: say where the data \
                 comes from",
            )),
        };
    };
    if source.upload.is_some() {
        Ok(WorkerKind::UploadServer)
    } else if source.pvc.is_some() || source.snapshot.is_some() {
        Ok(WorkerKind::CloneTarget)
    } else {
        Ok(WorkerKind::Importer)
    }
}

/// Labels CDI puts on everything it creates.
pub fn cdi_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(labels::APP.into(), labels::APP_VALUE.into())])
}

/// The claim for `dv`, or why it cannot be rendered yet.
pub fn render_claim(
    dv: &DataVolume,
    config: &EffectiveConfig,
    storage: &StorageView,
) -> Result<PersistentVolumeClaim, PlanError> {
    render(dv, config, storage, None)
}

/// The target claim of a clone from a source of `source` size: as [`render_claim`], but a
/// target without a size takes the source's. The clone's own annotations and `dataSource` are
/// the clone flow's to add.
pub fn render_clone_claim(
    dv: &DataVolume,
    config: &EffectiveConfig,
    storage: &StorageView,
    source: SourceSize,
) -> Result<PersistentVolumeClaim, PlanError> {
    render(dv, config, storage, Some(source))
}

fn render(
    dv: &DataVolume,
    config: &EffectiveConfig,
    storage: &StorageView,
    clone_source: Option<SourceSize>,
) -> Result<PersistentVolumeClaim, PlanError> {
    let name = dv.metadata.name.clone().unwrap_or_default();
    let transfer = transfer_of(dv)?;
    let content_type = dv
        .spec
        .content_type
        .clone()
        .unwrap_or(ContentType::Kubevirt);
    let spec = match (&dv.spec.pvc, &dv.spec.storage) {
        (Some(pvc), _) => {
            let mut spec = pvc.clone();
            if let Some(source) = clone_source
                && requested_bytes(&spec).is_none()
            {
                spec.resources
                    .get_or_insert_with(Default::default)
                    .requests
                    .get_or_insert_with(BTreeMap::new)
                    .insert("storage".into(), Quantity(source.bytes.to_string()));
            }
            spec
        }
        (None, Some(_)) => storage_claim_spec(dv, &content_type, config, storage, clone_source)?,
        (None, None) => {
            return Err(PlanError::invalid(
                "the DataVolume has neither spec.storage nor spec.pvc",
            ));
        }
    };
    let block = spec.volume_mode.as_deref() == Some("Block");
    if block && content_type == ContentType::Archive {
        return Err(PlanError::invalid(
            "contentType archive needs a Filesystem volume, but the claim is Block: remove \
             volumeMode Block or the archive content type",
        ));
    }

    let mut annotations: BTreeMap<String, String> = dv
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != LAST_APPLIED)
        .collect();
    annotations.extend(source_annotations(dv, transfer));
    annotations.insert(
        content::CONTENT_TYPE.into(),
        content_type.as_str().to_owned(),
    );
    annotations.insert(
        content::PREALLOCATION_REQUESTED.into(),
        dv.spec
            .preallocation
            .unwrap_or(config.preallocation)
            .to_string(),
    );
    annotations.insert(populator::USE_POPULATOR.into(), "false".into());
    if let Some(uid) = &dv.metadata.uid {
        annotations.insert(switches::CREATED_FOR_DATA_VOLUME.into(), uid.clone());
    }
    if let Some(p) = &dv.spec.priority_class_name {
        annotations.insert(pod::PRIORITY_CLASS_NAME.into(), p.clone());
    }
    if let Some(sa) = &dv.spec.service_account_name {
        annotations.insert(pod::SERVICE_ACCOUNT_NAME.into(), sa.clone());
    }

    let mut claim_labels = dv.metadata.labels.clone().unwrap_or_default();
    claim_labels.extend(cdi_labels());
    claim_labels.insert("app.kubernetes.io/component".into(), "storage".into());
    claim_labels.insert(
        "app.kubernetes.io/managed-by".into(),
        crate::FIELD_MANAGER.into(),
    );
    if !block {
        claim_labels.insert(
            labels::KUBE_PERSISTENT_VOLUME_FILLING_UP.into(),
            "disabled".into(),
        );
    }

    Ok(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: dv.metadata.namespace.clone(),
            labels: Some(claim_labels),
            annotations: Some(annotations),
            owner_references: dv.controller_owner_ref(&()).map(|mut o| {
                o.block_owner_deletion = Some(true);
                vec![o]
            }),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// The source annotations the worker controller reads.
fn source_annotations(dv: &DataVolume, transfer: WorkerKind) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let Some(source) = &dv.spec.source else {
        return a;
    };
    let mut set = |k: &str, v: &str| {
        a.insert(k.to_owned(), v.to_owned());
    };
    if transfer == WorkerKind::UploadServer {
        set(UPLOAD_TARGET, "");
        return a;
    }
    if let Some(http) = &source.http {
        set(import::SOURCE, "http");
        set(import::ENDPOINT, &http.url);
        if let Some(s) = &http.secret_ref {
            set(import::SECRET_NAME, s);
        }
        if let Some(c) = &http.cert_config_map {
            set(import::CERT_CONFIG_MAP, c);
        }
        if let Some(v) = http.insecure_skip_verify {
            set(import::INSECURE_SKIP_VERIFY, &v.to_string());
        }
        if let Some(c) = &http.checksum {
            set(import::CHECKSUM, c);
        }
        for (i, h) in http.extra_headers.iter().flatten().enumerate() {
            set(&format!("{}.{i}", import::EXTRA_HEADERS_PREFIX), h);
        }
        for (i, s) in http.secret_extra_headers.iter().flatten().enumerate() {
            set(&format!("{}.{i}", import::SECRET_EXTRA_HEADERS_PREFIX), s);
        }
    } else if let Some(s3) = &source.s3 {
        set(import::SOURCE, "s3");
        set(import::ENDPOINT, &s3.url);
        if let Some(s) = &s3.secret_ref {
            set(import::SECRET_NAME, s);
        }
        if let Some(c) = &s3.cert_config_map {
            set(import::CERT_CONFIG_MAP, c);
        }
    } else if let Some(gcs) = &source.gcs {
        set(import::SOURCE, "gcs");
        set(import::ENDPOINT, &gcs.url);
        if let Some(s) = &gcs.secret_ref {
            set(import::SECRET_NAME, s);
        }
    } else if let Some(r) = &source.registry {
        set(import::SOURCE, "registry");
        if let Some(url) = &r.url {
            set(import::ENDPOINT, url);
        }
        if let Some(stream) = &r.image_stream {
            set(import::ENDPOINT, stream);
            set(import::REGISTRY_IMAGE_STREAM, "true");
        }
        if let Some(m) = &r.pull_method {
            set(import::REGISTRY_IMPORT_METHOD, m.as_str());
        }
        if let Some(s) = &r.secret_ref {
            set(import::SECRET_NAME, s);
        }
        if let Some(c) = &r.cert_config_map {
            set(import::CERT_CONFIG_MAP, c);
        }
        if let Some(arch) = r.platform.as_ref().and_then(|p| p.architecture.as_ref()) {
            set(import::REGISTRY_IMAGE_ARCHITECTURE, arch);
        }
    } else if let Some(io) = &source.imageio {
        set(import::SOURCE, "imageio");
        set(import::ENDPOINT, &io.url);
        set(import::DISK_ID, &io.disk_id);
        if let Some(s) = &io.secret_ref {
            set(import::SECRET_NAME, s);
        }
        if let Some(c) = &io.cert_config_map {
            set(import::CERT_CONFIG_MAP, c);
        }
        if let Some(v) = io.insecure_skip_verify {
            set(import::INSECURE_SKIP_VERIFY, &v.to_string());
        }
    } else if let Some(v) = &source.vddk {
        set(import::SOURCE, "vddk");
        for (key, value) in [
            (import::ENDPOINT, &v.url),
            (import::UUID, &v.uuid),
            (import::BACKING_FILE, &v.backing_file),
            (import::VDDK_THUMBPRINT, &v.thumbprint),
            (import::SECRET_NAME, &v.secret_ref),
            (import::CERT_CONFIG_MAP, &v.cert_config_map),
        ] {
            if let Some(value) = value {
                set(key, value);
            }
        }
    } else if source.blank.is_some() {
        set(import::SOURCE, "none");
    }
    a
}

/// Completes a `storage` spec: class, access and volume modes from the StorageProfile, and the
/// size grown by the filesystem overhead.
fn storage_claim_spec(
    dv: &DataVolume,
    content_type: &ContentType,
    config: &EffectiveConfig,
    view: &StorageView,
    clone_source: Option<SourceSize>,
) -> Result<PersistentVolumeClaimSpec, PlanError> {
    let storage = dv.spec.storage.clone().unwrap_or_default();
    let class_name = match &storage.storage_class_name {
        Some(c) if !c.is_empty() => c.clone(),
        _ => view
            .default_class()
            .and_then(|c| c.metadata.name.clone())
            .ok_or_else(|| PlanError {
                reason: "ErrClaimNotValid",
                message: "no StorageClass given and no default StorageClass exists: set \
                          spec.storage.storageClassName, or mark a class with the annotation \
                          storageclass.kubernetes.io/is-default-class: \"true\""
                    .into(),
                no_default_class: true,
                terminal: false,
            })?,
    };
    let profile = view.profile(&class_name).ok_or_else(|| {
        PlanError::invalid(format!(
            "cannot get StorageProfile: StorageProfile.cdi.kubevirt.io \"{class_name}\" not \
             found (it is created for each StorageClass; check that StorageClass \
             {class_name} exists)"
        ))
    })?;
    let sets = profile
        .status
        .as_ref()
        .and_then(|s| s.claim_property_sets.clone())
        .unwrap_or_default();

    let wanted_mode = match &storage.volume_mode {
        Some(VolumeMode::FromStorageProfile) | None => None,
        Some(m) => Some(m.clone()),
    };
    let wanted_mode = if *content_type == ContentType::Archive {
        match wanted_mode {
            Some(VolumeMode::Block) => {
                return Err(PlanError::invalid(
                    "contentType archive needs a Filesystem volume, but storage.volumeMode is \
                     Block",
                ));
            }
            _ => Some(VolumeMode::Filesystem),
        }
    } else {
        wanted_mode
    };
    let access_modes = storage.access_modes.clone().filter(|m| !m.is_empty());
    let (access_modes, volume_mode) = match (access_modes, wanted_mode) {
        (Some(modes), Some(mode)) => (modes, mode),
        (modes, mode) => {
            // Take what is missing from the first property set that fits what is given.
            let set = sets
                .iter()
                .find(|s| mode.as_ref().is_none_or(|m| *m == s.volume_mode))
                .or(sets.first())
                .ok_or_else(|| {
                    PlanError::invalid(format!(
                        "no accessMode specified in StorageProfile {class_name}: set \
                         spec.storage.accessModes and volumeMode on the DataVolume, or \
                         spec.claimPropertySets on the StorageProfile"
                    ))
                })?;
            (
                modes.unwrap_or_else(|| set.access_modes.clone()),
                mode.unwrap_or_else(|| set.volume_mode.clone()),
            )
        }
    };

    let requested = storage
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    let requested = match (requested, clone_source) {
        (Some(q), _) => q,
        (None, Some(source)) => {
            // The source's size, as it is: a Filesystem source's request already holds its
            // overhead, and a Block source's bytes need it only on a Filesystem target.
            let bytes = if source.block && volume_mode != VolumeMode::Block {
                quantity::required_space(
                    config.filesystem_overhead(Some(&class_name)),
                    source.bytes,
                )
            } else {
                source.bytes
            };
            let mut resources: VolumeResourceRequirements =
                storage.resources.clone().unwrap_or_default();
            resources
                .requests
                .get_or_insert_with(BTreeMap::new)
                .insert("storage".into(), Quantity(bytes.to_string()));
            return Ok(claim_spec(
                &storage,
                access_modes,
                volume_mode,
                class_name,
                resources,
            ));
        }
        (None, None) => {
            return Err(PlanError::invalid(
                "spec.storage.resources.requests.storage is missing: give the size of the disk",
            ));
        }
    };
    let bytes = quantity::parse_bytes(&requested.0).ok_or_else(|| {
        PlanError::invalid(format!(
            "spec.storage.resources.requests.storage {:?} is not a quantity (for example 10Gi)",
            requested.0
        ))
    })?;
    if bytes < MIN_CLAIM_BYTES {
        return Err(PlanError::invalid(format!(
            "the requested size {} is below 1Mi, the smallest disk CDI creates",
            requested.0
        )));
    }
    let mut size = if volume_mode == VolumeMode::Block {
        requested.clone()
    } else {
        let inflated =
            quantity::required_space(config.filesystem_overhead(Some(&class_name)), bytes);
        Quantity(inflated.to_string())
    };
    if let Some(min) = profile
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(cdi_crds::annotations::storage_class::MINIMUM_SUPPORTED_PVC_SIZE))
        .filter(|min| {
            quantity::parse_bytes(min).is_some_and(|m| Some(m) > quantity::parse_bytes(&size.0))
        })
    {
        size = Quantity(min.clone());
    }
    let mut resources: VolumeResourceRequirements = storage.resources.clone().unwrap_or_default();
    resources
        .requests
        .get_or_insert_with(BTreeMap::new)
        .insert("storage".into(), size);

    Ok(claim_spec(
        &storage,
        access_modes,
        volume_mode,
        class_name,
        resources,
    ))
}

fn claim_spec(
    storage: &cdi_crds::StorageSpec,
    access_modes: Vec<String>,
    volume_mode: VolumeMode,
    class_name: String,
    resources: VolumeResourceRequirements,
) -> PersistentVolumeClaimSpec {
    PersistentVolumeClaimSpec {
        access_modes: Some(access_modes),
        resources: Some(resources),
        selector: storage.selector.clone(),
        storage_class_name: Some(class_name),
        volume_mode: Some(volume_mode.as_str().to_owned()),
        volume_name: storage.volume_name.clone(),
        data_source: storage.data_source.clone(),
        data_source_ref: storage.data_source_ref.clone(),
        ..Default::default()
    }
}

/// The bytes a claim spec requests, if it says.
pub fn requested_bytes(spec: &PersistentVolumeClaimSpec) -> Option<u64> {
    spec.resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .and_then(|q| quantity::parse_bytes(&q.0))
}

/// Whether `claim` belongs to `dv`: it names the DataVolume as its controller or was created
/// for its UID.
pub fn claim_belongs_to(claim: &PersistentVolumeClaim, dv: &DataVolume) -> bool {
    let uid = dv.metadata.uid.as_deref();
    let owned = claim
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o: &OwnerReference| o.controller == Some(true) && Some(o.uid.as_str()) == uid);
    let created_for = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(switches::CREATED_FOR_DATA_VOLUME))
        .map(String::as_str);
    owned || (uid.is_some() && created_for == uid)
}

/// Pass-through annotations for worker pods, from the claim, with CDI's defaults.
pub fn pod_passthrough_annotations(
    claim_annotations: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    for key in [
        passthrough::MULTUS_NETWORKS,
        passthrough::MULTUS_DEFAULT_NETWORK,
    ] {
        if let Some(v) = claim_annotations.get(key) {
            a.insert(key.to_owned(), v.clone());
        }
    }
    a.insert(
        passthrough::ISTIO_INJECT.into(),
        claim_annotations
            .get(passthrough::ISTIO_INJECT)
            .cloned()
            .unwrap_or_else(|| passthrough::ISTIO_INJECT_DEFAULT.into()),
    );
    a.insert(
        passthrough::LINKERD_INJECT.into(),
        claim_annotations
            .get(passthrough::LINKERD_INJECT)
            .cloned()
            .unwrap_or_else(|| passthrough::LINKERD_INJECT_DEFAULT.into()),
    );
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, NAMESPACE, dv, storage};
    use serde_json::json;

    fn render(dv: &DataVolume) -> Result<PersistentVolumeClaim, PlanError> {
        render_claim(dv, &EffectiveConfig::default(), &storage())
    }

    fn annotation<'a>(claim: &'a PersistentVolumeClaim, key: &str) -> Option<&'a str> {
        claim
            .metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    fn request(claim: &PersistentVolumeClaim) -> String {
        claim
            .spec
            .as_ref()
            .expect("spec")
            .resources
            .as_ref()
            .expect("resources")
            .requests
            .as_ref()
            .expect("requests")["storage"]
            .0
            .clone()
    }

    #[test]
    fn http_storage_dv_renders_upstreams_claim() {
        let claim = render(&dv(
            "dv-http",
            json!({"http": {"url": "http://127.0.0.1:18090/disk.qcow2"}}),
        ))
        .expect("renders");
        assert_eq!(claim.metadata.name.as_deref(), Some("dv-http"));
        assert_eq!(claim.metadata.namespace.as_deref(), Some(NAMESPACE));
        let spec = claim.spec.as_ref().expect("spec");
        assert_eq!(request(&claim), "1138166334", "1Gi grown by 6 %");
        assert_eq!(
            spec.storage_class_name.as_deref(),
            Some("local"),
            "the default class"
        );
        assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));

        for (key, value) in [
            ("cdi.kubevirt.io/createdForDataVolume", fixtures::DV_UID),
            ("cdi.kubevirt.io/storage.contentType", "kubevirt"),
            (
                "cdi.kubevirt.io/storage.import.endpoint",
                "http://127.0.0.1:18090/disk.qcow2",
            ),
            ("cdi.kubevirt.io/storage.import.source", "http"),
            ("cdi.kubevirt.io/storage.preallocation.requested", "false"),
            ("cdi.kubevirt.io/storage.usePopulator", "false"),
        ] {
            assert_eq!(annotation(&claim, key), Some(value), "{key}");
        }
        let labels = claim.metadata.labels.as_ref().expect("labels");
        for (key, value) in [
            ("app", "containerized-data-importer"),
            ("app.kubernetes.io/component", "storage"),
            ("app.kubernetes.io/managed-by", "cdi-controller"),
            ("alerts.k8s.io/KubePersistentVolumeFillingUp", "disabled"),
        ] {
            assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
        }
        let owner = &claim.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!(owner.kind, "DataVolume");
        assert_eq!(owner.uid, fixtures::DV_UID);
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }

    #[test]
    fn pvc_api_is_used_as_written() {
        let mut d = dv("dv-pvc", json!({"http": {"url": "http://x/disk.img"}}));
        d.spec.storage = None;
        d.spec.pvc = Some(
            serde_json::from_value(json!({
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}
            }))
            .expect("pvc spec"),
        );
        let claim = render(&d).expect("renders");
        assert_eq!(request(&claim), "1Gi");
        assert_eq!(claim.spec.as_ref().expect("spec").storage_class_name, None);
    }

    #[test]
    fn block_storage_is_not_inflated_and_has_no_filling_up_label() {
        let mut d = dv("dv-block", json!({"blank": {}}));
        if let Some(s) = d.spec.storage.as_mut() {
            s.volume_mode = Some(VolumeMode::Block);
        }
        let claim = render(&d).expect("renders");
        assert_eq!(request(&claim), "1Gi");
        assert_eq!(
            claim.spec.as_ref().expect("spec").volume_mode.as_deref(),
            Some("Block")
        );
        assert!(
            !claim
                .metadata
                .labels
                .as_ref()
                .expect("labels")
                .contains_key(labels::KUBE_PERSISTENT_VOLUME_FILLING_UP)
        );
        assert_eq!(annotation(&claim, import::SOURCE), Some("none"));
    }

    #[test]
    fn every_http_option_becomes_an_annotation() {
        let claim = render(&dv(
            "d",
            json!({"http": {
                "url": "https://x/disk.img",
                "secretRef": "creds",
                "certConfigMap": "ca",
                "insecureSkipVerify": true,
                "checksum": "sha256:abcd",
                "extraHeaders": ["X-A: 1", "X-B: 2"],
                "secretExtraHeaders": ["hdr-secret"],
            }}),
        ))
        .expect("renders");
        for (key, value) in [
            (import::SECRET_NAME, "creds"),
            (import::CERT_CONFIG_MAP, "ca"),
            (import::INSECURE_SKIP_VERIFY, "true"),
            (import::CHECKSUM, "sha256:abcd"),
            ("cdi.kubevirt.io/storage.import.extraHeaders.0", "X-A: 1"),
            ("cdi.kubevirt.io/storage.import.extraHeaders.1", "X-B: 2"),
            (
                "cdi.kubevirt.io/storage.import.secretExtraHeaders.0",
                "hdr-secret",
            ),
        ] {
            assert_eq!(annotation(&claim, key), Some(value), "{key}");
        }
    }

    #[test]
    fn upload_dv_marks_the_claim_as_upload_target() {
        let claim = render(&dv("dv-upload", json!({"upload": {}}))).expect("renders");
        assert_eq!(annotation(&claim, UPLOAD_TARGET), Some(""));
        assert_eq!(annotation(&claim, import::SOURCE), None);
    }

    #[test]
    fn missing_storage_profile_is_upstreams_claim_not_valid() {
        let mut d = dv("d", json!({"blank": {}}));
        if let Some(s) = d.spec.storage.as_mut() {
            s.storage_class_name = Some("nope".into());
        }
        let err = render(&d).expect_err("no profile");
        assert_eq!(err.reason, "ErrClaimNotValid");
        assert!(
            err.message
                .contains("StorageProfile.cdi.kubevirt.io \"nope\" not found"),
            "{}",
            err.message
        );
    }

    #[test]
    fn profile_without_property_sets_asks_for_access_modes() {
        let mut view = storage();
        view.profiles = vec![Arc::new(StorageProfile::new("local", Default::default()))];
        let err = render_claim(
            &dv("d", json!({"blank": {}})),
            &EffectiveConfig::default(),
            &view,
        )
        .expect_err("no sets");
        assert!(
            err.message
                .contains("no accessMode specified in StorageProfile local"),
            "{}",
            err.message
        );
        // Given both on the DataVolume, the profile is not needed for them.
        let mut d = dv("d", json!({"blank": {}}));
        if let Some(s) = d.spec.storage.as_mut() {
            s.access_modes = Some(vec!["ReadWriteMany".into()]);
            s.volume_mode = Some(VolumeMode::Filesystem);
        }
        let claim = render_claim(&d, &EffectiveConfig::default(), &view).expect("renders");
        assert_eq!(
            claim.spec.expect("spec").access_modes,
            Some(vec!["ReadWriteMany".to_string()])
        );
    }

    #[test]
    fn no_default_class_is_reported_as_such() {
        let view = StorageView {
            classes: vec![Arc::new(fixtures::storage_class(
                "local",
                "Immediate",
                false,
            ))],
            profiles: storage().profiles,
        };
        let err = render_claim(
            &dv("d", json!({"blank": {}})),
            &EffectiveConfig::default(),
            &view,
        )
        .expect_err("no default");
        assert!(err.no_default_class);
    }

    #[test]
    fn archive_on_block_is_refused_and_archive_forces_filesystem() {
        let mut d = dv("d", json!({"http": {"url": "http://x/a.tar"}}));
        d.spec.content_type = Some(ContentType::Archive);
        let mut view = storage();
        view.profiles = vec![Arc::new(fixtures::profile("local", VolumeMode::Block))];
        let claim = render_claim(&d, &EffectiveConfig::default(), &view).expect("renders");
        assert_eq!(
            claim.spec.as_ref().expect("spec").volume_mode.as_deref(),
            Some("Filesystem")
        );
        if let Some(s) = d.spec.storage.as_mut() {
            s.volume_mode = Some(VolumeMode::Block);
        }
        assert!(render_claim(&d, &EffectiveConfig::default(), &view).is_err());
    }

    #[test]
    fn clone_sources_are_clone_targets() {
        for source in [
            json!({"pvc": {"namespace": "a", "name": "b"}}),
            json!({"snapshot": {"namespace": "a", "name": "b"}}),
        ] {
            assert_eq!(transfer_of(&dv("d", source)), Ok(WorkerKind::CloneTarget));
        }
        let mut d = dv("d", json!({"blank": {}}));
        d.spec.source = None;
        d.spec.source_ref = Some(cdi_crds::DataVolumeSourceRef {
            kind: "DataSource".into(),
            namespace: None,
            name: "fedora".into(),
        });
        assert_eq!(transfer_of(&d), Ok(WorkerKind::CloneTarget));
        d.spec.source_ref.as_mut().expect("ref").kind = "PersistentVolumeClaim".into();
        let err = transfer_of(&d).expect_err("another kind");
        assert!(err.message.contains("not DataSource"), "{}", err.message);
    }

    #[test]
    fn a_clone_without_a_size_takes_the_sources() {
        let view = storage();
        let mut d = dv("d", json!({"pvc": {"namespace": "a", "name": "b"}}));
        if let Some(s) = d.spec.storage.as_mut() {
            s.resources = None;
        }
        let size = |claim: &PersistentVolumeClaim| {
            requested_bytes(claim.spec.as_ref().expect("spec")).expect("a size")
        };
        let fs_source = SourceSize {
            bytes: 1 << 30,
            block: false,
        };
        let claim =
            render_clone_claim(&d, &EffectiveConfig::default(), &view, fs_source).expect("renders");
        assert_eq!(
            size(&claim),
            1 << 30,
            "a Filesystem source's size, as it is"
        );
        let block_source = SourceSize {
            bytes: 1 << 30,
            block: true,
        };
        let claim = render_clone_claim(&d, &EffectiveConfig::default(), &view, block_source)
            .expect("renders");
        assert!(
            size(&claim) > 1 << 30,
            "a Block source's disk grows by the filesystem overhead"
        );
        assert!(
            render_claim(&d, &EffectiveConfig::default(), &view).is_err(),
            "an import still needs a size"
        );
    }

    #[test]
    fn tiny_sizes_are_refused_and_minimum_size_is_applied() {
        let mut d = dv("d", json!({"blank": {}}));
        if let Some(s) = d.spec.storage.as_mut() {
            s.resources = Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity("1Ki".into()))])),
                ..Default::default()
            });
        }
        assert!(render(&d).is_err());

        let mut view = storage();
        let mut p = fixtures::profile("local", VolumeMode::Filesystem);
        p.metadata.annotations = Some(BTreeMap::from([(
            cdi_crds::annotations::storage_class::MINIMUM_SUPPORTED_PVC_SIZE.to_string(),
            "4Gi".to_string(),
        )]));
        view.profiles = vec![Arc::new(p)];
        let claim = render_claim(
            &dv("d", json!({"blank": {}})),
            &EffectiveConfig::default(),
            &view,
        )
        .expect("renders");
        assert_eq!(request(&claim), "4Gi");
    }

    #[test]
    fn preallocation_comes_from_the_dv_else_the_config() {
        let mut d = dv("d", json!({"blank": {}}));
        d.spec.preallocation = Some(true);
        assert_eq!(
            annotation(
                &render(&d).expect("renders"),
                content::PREALLOCATION_REQUESTED
            ),
            Some("true")
        );
    }
}
