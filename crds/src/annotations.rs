//! Annotation and label names CDI reads and writes, spelled exactly as upstream does.
//!
//! Most live on the PersistentVolumeClaim (or on PVC', the populator's temporary claim): the
//! controller writes the source there for the worker pod's environment, and copies the pod's
//! state back. Every name is written out in full, not built from [`GROUP_PREFIX`], so its value
//! shows in the docs and in a grep.

/// The prefix of CDI's own annotations and labels.
pub const GROUP_PREFIX: &str = "cdi.kubevirt.io/";

/// Where a claim's data comes from, as the importer's `IMPORTER_SOURCE` values.
pub mod import {
    /// Source kind: `http`, `s3`, `gcs`, `registry`, `imageio`, `vddk` or `none` (blank); absent
    /// means `http`.
    pub const SOURCE: &str = "cdi.kubevirt.io/storage.import.source";
    /// The source URL.
    pub const ENDPOINT: &str = "cdi.kubevirt.io/storage.import.endpoint";
    /// Name of the Secret with the source's credentials.
    pub const SECRET_NAME: &str = "cdi.kubevirt.io/storage.import.secretName";
    /// Name of the ConfigMap with extra CA certificates.
    pub const CERT_CONFIG_MAP: &str = "cdi.kubevirt.io/storage.import.certConfigMap";
    /// `"true"` to skip TLS verification.
    pub const INSECURE_SKIP_VERIFY: &str = "cdi.kubevirt.io/storage.import.insecureSkipVerify";
    /// Prefix of the extra-header annotations (`...extraHeaders`, `...extraHeaders.1`, ...).
    pub const EXTRA_HEADERS_PREFIX: &str = "cdi.kubevirt.io/storage.import.extraHeaders";
    /// Prefix of the annotations naming Secrets that hold extra headers.
    pub const SECRET_EXTRA_HEADERS_PREFIX: &str =
        "cdi.kubevirt.io/storage.import.secretExtraHeaders";
    /// Expected checksum of the source, `algo:hex`.
    pub const CHECKSUM: &str = "cdi.kubevirt.io/storage.import.checksum";
    /// Registry pull method, `pod` or `node`.
    pub const REGISTRY_IMPORT_METHOD: &str = "cdi.kubevirt.io/storage.import.registryImportMethod";
    /// Registry ImageStream name.
    pub const REGISTRY_IMAGE_STREAM: &str = "cdi.kubevirt.io/storage.import.registryImageStream";
    /// Architecture to pick from a multi-platform image.
    pub const REGISTRY_IMAGE_ARCHITECTURE: &str =
        "cdi.kubevirt.io/storage.import.registryImageArchitecture";
    /// imageio disk ID.
    pub const DISK_ID: &str = "cdi.kubevirt.io/storage.import.diskId";
    /// VDDK virtual machine UUID.
    pub const UUID: &str = "cdi.kubevirt.io/storage.import.uuid";
    /// VDDK backing file.
    pub const BACKING_FILE: &str = "cdi.kubevirt.io/storage.import.backingFile";
    /// VDDK host certificate thumbprint.
    pub const VDDK_THUMBPRINT: &str = "cdi.kubevirt.io/storage.import.vddk.thumbprint";
    /// Name of the importer pod.
    pub const IMPORT_POD_NAME: &str = "cdi.kubevirt.io/storage.import.importPodName";
    /// `"true"` once the importer asked for scratch space.
    pub const REQUIRES_SCRATCH: &str = "cdi.kubevirt.io/storage.import.requiresScratch";
    /// `"true"` once the importer found it needs direct I/O.
    pub const REQUIRES_DIRECT_IO: &str = "cdi.kubevirt.io/storage.import.requiresDirectIo";
    /// `"true"` after a failure that must not be retried (checksum mismatch): the pod is not
    /// recreated and the DataVolume fails.
    pub const FATAL_ERROR: &str = "cdi.kubevirt.io/storage.import.fatalError";
    /// DataImportCron: the digest to import next.
    pub const SOURCE_DESIRED_DIGEST: &str = "cdi.kubevirt.io/storage.import.sourceDesiredDigest";
    /// DataImportCron: when the poller last ran.
    pub const LAST_CRON_TIME: &str = "cdi.kubevirt.io/storage.import.lastCronTime";
    /// DataImportCron: when to poll next.
    pub const NEXT_CRON_TIME: &str = "cdi.kubevirt.io/storage.import.nextCronTime";
    /// DataImportCron garbage collection: when an import was last used.
    pub const LAST_USE_TIME: &str = "cdi.kubevirt.io/storage.import.lastUseTime";
    /// DataImportCron snapshots: the volume mode of the snapshotted claim.
    pub const SOURCE_VOLUME_MODE: &str = "cdi.kubevirt.io/storage.import.sourceVolumeMode";
    /// DataImportCron snapshots: the size to restore to.
    pub const ADVISED_RESTORE_SIZE: &str = "cdi.kubevirt.io/storage.import.advisedRestoreSize";
}

/// The data's content type and preallocation.
pub mod content {
    /// `kubevirt` or `archive`.
    pub const CONTENT_TYPE: &str = "cdi.kubevirt.io/storage.contentType";
    /// Preallocation the DataVolume asked for (`"true"`/`"false"`).
    pub const PREALLOCATION_REQUESTED: &str = "cdi.kubevirt.io/storage.preallocation.requested";
    /// Preallocation the worker applied, from its termination message.
    pub const PREALLOCATION_APPLIED: &str = "cdi.kubevirt.io/storage.preallocation";
}

/// Worker pod state, copied from the pod onto the claim.
pub mod pod {
    /// The pod's phase; `Succeeded` marks completion.
    pub const PHASE: &str = "cdi.kubevirt.io/storage.pod.phase";
    /// `"true"` while the pod is ready.
    pub const READY: &str = "cdi.kubevirt.io/storage.pod.ready";
    /// The container's restart count; the DataVolume's `status.restartCount`.
    pub const RESTARTS: &str = "cdi.kubevirt.io/storage.pod.restarts";
    /// `"false"` when the pod cannot be scheduled.
    pub const SCHEDULABLE: &str = "cdi.kubevirt.io/storage.pod.schedulable";
    /// `"true"` to keep worker pods (and PVC') after completion, for debugging.
    pub const RETAIN_AFTER_COMPLETION: &str = "cdi.kubevirt.io/storage.pod.retainAfterCompletion";
    /// PriorityClass for worker pods.
    pub const PRIORITY_CLASS_NAME: &str = "cdi.kubevirt.io/storage.pod.priorityclassname";
    /// ServiceAccount for worker pods.
    pub const SERVICE_ACCOUNT_NAME: &str = "cdi.kubevirt.io/storage.pod.serviceAccountName";
    /// VDDK library version reported by the importer.
    pub const VDDK_VERSION: &str = "cdi.kubevirt.io/storage.pod.vddk.version";
    /// VDDK host the importer connected to.
    pub const VDDK_HOST: &str = "cdi.kubevirt.io/storage.pod.vddk.host";
    /// Image carrying the VDDK library.
    pub const VDDK_INIT_IMAGE_URL: &str = "cdi.kubevirt.io/storage.pod.vddk.initimageurl";
    /// ConfigMap with extra VDDK arguments.
    pub const VDDK_EXTRA_ARGS: &str = "cdi.kubevirt.io/storage.pod.vddk.extraargs";
    /// Marks pods the import controller created (`"yes"`).
    pub const CREATED_BY_CONTROLLER: &str = "cdi.kubevirt.io/storage.createdByController";
    /// Marks pods the upload controller created (`"yes"`).
    pub const CREATED_BY_UPLOAD_CONTROLLER: &str =
        "cdi.kubevirt.io/storage.createdByUploadController";
    /// Name of the upload pod.
    pub const UPLOAD_POD_NAME: &str = "cdi.kubevirt.io/storage.uploadPodName";
    /// Name of the clone source pod.
    pub const SOURCE_CLONE_POD_NAME: &str = "cdi.kubevirt.io/storage.sourceClonePodName";
}

/// DataVolume conditions as recorded on the claim (value `"true"`/`"false"`, plus a reason and a
/// message annotation each).
pub mod condition {
    /// Running condition.
    pub const RUNNING: &str = "cdi.kubevirt.io/storage.condition.running";
    /// Running condition message.
    pub const RUNNING_MESSAGE: &str = "cdi.kubevirt.io/storage.condition.running.message";
    /// Running condition reason.
    pub const RUNNING_REASON: &str = "cdi.kubevirt.io/storage.condition.running.reason";
    /// Bound condition.
    pub const BOUND: &str = "cdi.kubevirt.io/storage.condition.bound";
    /// Bound condition message.
    pub const BOUND_MESSAGE: &str = "cdi.kubevirt.io/storage.condition.bound.message";
    /// Bound condition reason.
    pub const BOUND_REASON: &str = "cdi.kubevirt.io/storage.condition.bound.reason";
    /// Clone source pod's Running condition.
    pub const SOURCE_RUNNING: &str = "cdi.kubevirt.io/storage.condition.source.running";
    /// Clone source pod's Running message.
    pub const SOURCE_RUNNING_MESSAGE: &str =
        "cdi.kubevirt.io/storage.condition.source.running.message";
    /// Clone source pod's Running reason.
    pub const SOURCE_RUNNING_REASON: &str =
        "cdi.kubevirt.io/storage.condition.source.running.reason";
}

/// Populator (PVC') bookkeeping.
pub mod populator {
    /// Progress of the populator, as the DataVolume's `progress`.
    pub const PROGRESS: &str = "cdi.kubevirt.io/storage.populator.progress";
    /// Name of PVC', the temporary claim the populator fills.
    pub const PVC_PRIME_NAME: &str = "cdi.kubevirt.io/storage.populator.pvcPrime";
    /// Kind of the populator source.
    pub const KIND: &str = "cdi.kubevirt.io/storage.populator.kind";
    /// On a DataVolume: `"false"` opts out of populators; the controller records its choice.
    pub const USE_POPULATOR: &str = "cdi.kubevirt.io/storage.usePopulator";
}

/// Behaviour switches set by users or by the controller.
pub mod switches {
    /// `"true"`: bind at once, ignoring WaitForFirstConsumer.
    pub const IMMEDIATE_BINDING: &str = "cdi.kubevirt.io/storage.bind.immediate.requested";
    /// `"true"`: a pre-provisioned PV may already hold the data; bind it and skip population.
    pub const CHECK_STATIC_VOLUME: &str = "cdi.kubevirt.io/storage.checkStaticVolume";
    /// `"true"` on a claim that is already populated; nothing is imported.
    pub const PRE_POPULATED: &str = "cdi.kubevirt.io/storage.prePopulated";
    /// Name of the DataVolume the claim was populated for.
    pub const POPULATED_FOR: &str = "cdi.kubevirt.io/storage.populatedFor";
    /// `"true"`: a DataVolume may adopt an existing claim of the same name.
    pub const ALLOW_CLAIM_ADOPTION: &str = "cdi.kubevirt.io/allowClaimAdoption";
    /// `"true"`: skip the clone size check.
    pub const PERMISSIVE_CLONE: &str = "cdi.kubevirt.io/permissiveClone";
    /// UID of the DataVolume a claim was created for.
    pub const CREATED_FOR_DATA_VOLUME: &str = "cdi.kubevirt.io/createdForDataVolume";
}

/// Multi-stage (warm) import checkpoints, on the claim.
pub mod checkpoint {
    /// Previous checkpoint.
    pub const PREVIOUS: &str = "cdi.kubevirt.io/storage.checkpoint.previous";
    /// Current checkpoint.
    pub const CURRENT: &str = "cdi.kubevirt.io/storage.checkpoint.current";
    /// `"true"` on the final checkpoint.
    pub const FINAL: &str = "cdi.kubevirt.io/storage.checkpoint.final";
    /// Prefix of the per-checkpoint "copied" annotations.
    pub const COPIED_PREFIX: &str = "cdi.kubevirt.io/storage.checkpoint.copied";
    /// ID of the pod working on the current checkpoint.
    pub const POD_ID: &str = "cdi.kubevirt.io/storage.checkpoint.pod.id";
    /// `"true"` when the whole multi-stage import is done.
    pub const DONE: &str = "cdi.kubevirt.io/storage.checkpoint.done";
}

/// Cloning and uploading.
pub mod clone {
    /// Short-lived token authorising a cross-namespace clone (a JWT; never log it).
    pub const TOKEN: &str = "cdi.kubevirt.io/storage.clone.token";
    /// Long-lived variant of [`TOKEN`] (a JWT; never log it).
    pub const EXTENDED_TOKEN: &str = "cdi.kubevirt.io/storage.extended.clone.token";
    /// On the target: `namespace/name` of the clone source.
    pub const CLONE_REQUEST: &str = "k8s.io/CloneRequest";
    /// On a cloner pod and its Secret: `namespace/name` of the target claim (ours; owner
    /// references cannot cross namespaces).
    pub const CLONE_TARGET: &str = "cdi.kubevirt.io/storage.clone.target";
    /// On the target: marks a completed clone.
    pub const CLONE_OF: &str = "k8s.io/CloneOf";
    /// The clone strategy used.
    pub const CLONE_TYPE: &str = "cdi.kubevirt.io/cloneType";
    /// The clone's phase.
    pub const CLONE_PHASE: &str = "cdi.kubevirt.io/clonePhase";
    /// The clone's last error.
    pub const CLONE_ERROR: &str = "cdi.kubevirt.io/cloneError";
    /// Why a smarter strategy was not used.
    pub const CLONE_FALLBACK_REASON: &str = "cdi.kubevirt.io/cloneFallbackReason";
    /// Namespace of the DataSource a clone came from.
    pub const DATA_SOURCE_NAMESPACE: &str = "cdi.kubevirt.io/dataSourceNamespace";
    /// Client certificate name the upload server accepts.
    pub const UPLOAD_CLIENT_NAME: &str = "cdi.kubevirt.io/uploadClientName";
    /// On a claim: it is the target of an upload.
    pub const UPLOAD_TARGET: &str = "cdi.kubevirt.io/storage.upload.target";
}

/// StorageClass and StorageProfile annotations.
pub mod storage_class {
    /// Marks the cluster's default StorageClass (Kubernetes).
    pub const IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
    /// Marks the default StorageClass for virtual machine disks; preferred over the default.
    pub const IS_DEFAULT_VIRT_CLASS: &str = "storageclass.kubevirt.io/is-default-virt-class";
    /// Marks the default VolumeSnapshotClass.
    pub const IS_DEFAULT_SNAPSHOT_CLASS: &str = "snapshot.storage.kubernetes.io/is-default-class";
    /// On a StorageClass: `copy`, `snapshot` or `csi-clone`.
    pub const CLONE_STRATEGY: &str = "cdi.kubevirt.io/clone-strategy";
    /// On a StorageProfile: the smallest claim the storage supports.
    pub const MINIMUM_SUPPORTED_PVC_SIZE: &str = "cdi.kubevirt.io/minimumSupportedPvcSize";
    /// On a StorageProfile: use ReadWriteOnce for DataImportCron imports.
    pub const USE_READ_WRITE_ONCE_FOR_DATA_IMPORT_CRON: &str =
        "cdi.kubevirt.io/useReadWriteOnceForDataImportCron";
    /// On a StorageProfile: VolumeSnapshotClass for DataImportCron snapshots.
    pub const SNAPSHOT_CLASS_FOR_DATA_IMPORT_CRON: &str =
        "cdi.kubevirt.io/snapshotClassForDataImportCron";
    /// Set by the scheduler on WaitForFirstConsumer claims (Kubernetes).
    pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
}

/// Annotations copied from the DataVolume or claim onto worker pods.
pub mod passthrough {
    /// Multus networks.
    pub const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
    /// Multus default network.
    pub const MULTUS_DEFAULT_NETWORK: &str = "v1.multus-cni.io/default-network";
    /// OVN: open the default ports (upload pods).
    pub const OVN_OPEN_DEFAULT_PORTS: &str = "k8s.ovn.org/open-default-ports";
    /// Istio sidecar injection; CDI defaults it to [`ISTIO_INJECT_DEFAULT`].
    pub const ISTIO_INJECT: &str = "sidecar.istio.io/inject";
    /// Value CDI puts on worker pods unless told otherwise.
    pub const ISTIO_INJECT_DEFAULT: &str = "false";
    /// Linkerd injection; CDI defaults it to [`LINKERD_INJECT_DEFAULT`].
    pub const LINKERD_INJECT: &str = "linkerd.io/inject";
    /// Value CDI puts on worker pods unless told otherwise.
    pub const LINKERD_INJECT_DEFAULT: &str = "disabled";
}

/// Labels.
pub mod labels {
    /// `app`: set to [`APP_VALUE`] on claims and pods CDI creates.
    pub const APP: &str = "app";
    /// The value of [`APP`].
    pub const APP_VALUE: &str = "containerized-data-importer";
    /// `cdi.kubevirt.io`: the component (`importer`, `cdi-upload-server`, `cdi-clone-source`).
    pub const COMPONENT: &str = "cdi.kubevirt.io";
    /// Value of [`COMPONENT`] on importer pods.
    pub const COMPONENT_IMPORTER: &str = "importer";
    /// Value of [`COMPONENT`] on upload server pods.
    pub const COMPONENT_UPLOAD_SERVER: &str = "cdi-upload-server";
    /// Value of [`COMPONENT`] on clone source pods.
    pub const COMPONENT_CLONE_SOURCE: &str = "cdi-clone-source";
    /// `"true"` on pods whose metrics Prometheus should scrape (importer, cloner).
    pub const PROMETHEUS: &str = "prometheus.cdi.kubevirt.io";
    /// On upload pods: the UID of the target claim.
    pub const UPLOAD_TARGET: &str = "cdi.kubevirt.io/uploadTarget";
    /// On DataVolumes a DataImportCron created: the cron's name.
    pub const DATA_IMPORT_CRON: &str = "cdi.kubevirt.io/dataImportCron";
    /// `"true"` on a plain PVC: have the PVC webhook fill it in from the StorageProfile.
    pub const APPLY_STORAGE_PROFILE: &str = "cdi.kubevirt.io/applyStorageProfile";
    /// `"disabled"` on Filesystem claims, silencing the volume-filling-up alert.
    pub const KUBE_PERSISTENT_VOLUME_FILLING_UP: &str =
        "alerts.k8s.io/KubePersistentVolumeFillingUp";
    /// `"true"` on scratch claims, keeping them out of Velero backups.
    pub const EXCLUDE_FROM_VELERO_BACKUP: &str = "velero.io/exclude-from-backup";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdi_names_start_with_the_group_prefix() {
        for name in [
            import::ENDPOINT,
            import::SOURCE,
            content::CONTENT_TYPE,
            pod::PHASE,
            condition::RUNNING_REASON,
            populator::USE_POPULATOR,
            checkpoint::DONE,
            clone::TOKEN,
            labels::DATA_IMPORT_CRON,
        ] {
            assert!(name.starts_with(GROUP_PREFIX), "{name}");
        }
    }
}
