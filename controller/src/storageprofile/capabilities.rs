//! What CDI knows about common provisioners: the access and volume modes their claims support
//! (best first), the clone strategy and DataImportCron source format that suit them, the
//! smallest claim they accept, and DataImportCron hints.
//!
//! A StorageClass is looked up by a *key*: its provisioner, refined by its parameters where one
//! driver serves very different storage (Trident NAS versus SAN, Longhorn migratable volumes,
//! EBS volume types, ...). The facts are upstream's (`pkg/storagecapabilities`); entries upstream
//! does not have are marked as ours.

use cdi_crds::storageprofile::ClaimPropertySet;
use cdi_crds::{CloneStrategy, DataImportCronSourceFormat, VolumeMode};
use k8s_openapi::api::storage::v1::StorageClass;

/// An access mode a claim can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadWriteOnce,
    ReadOnlyMany,
    ReadWriteMany,
}

impl Access {
    /// The Kubernetes name of the access mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadWriteOnce => "ReadWriteOnce",
            Access::ReadOnlyMany => "ReadOnlyMany",
            Access::ReadWriteMany => "ReadWriteMany",
        }
    }
}

/// A volume mode a claim can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Block,
    Filesystem,
}

/// One access mode with one volume mode that the storage supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub access: Access,
    pub mode: Mode,
}

impl Capability {
    /// The claim property set for this capability (one access mode, as upstream writes them).
    pub fn claim_property_set(self) -> ClaimPropertySet {
        ClaimPropertySet {
            access_modes: vec![self.access.as_str().to_owned()],
            volume_mode: match self.mode {
                Mode::Block => VolumeMode::Block,
                Mode::Filesystem => VolumeMode::Filesystem,
            },
        }
    }
}

/// A clone strategy the table can advise (the CRD type is not `Copy`, so the table has its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdvisedClone {
    /// Host-assisted copy.
    Copy,
    Snapshot,
    CsiClone,
}

impl From<AdvisedClone> for CloneStrategy {
    fn from(a: AdvisedClone) -> CloneStrategy {
        match a {
            AdvisedClone::Copy => CloneStrategy::Copy,
            AdvisedClone::Snapshot => CloneStrategy::Snapshot,
            AdvisedClone::CsiClone => CloneStrategy::CsiClone,
        }
    }
}

/// Everything the table knows about one provisioner key.
#[derive(Clone, Copy, Debug)]
pub struct Provisioner {
    /// The provisioner, or provisioner/variant for keys refined by parameters.
    pub key: &'static str,
    /// Supported combinations, best first. Empty when only other facts are known (the class is
    /// then not recognized, as upstream).
    pub capabilities: &'static [Capability],
    /// The clone strategy that suits the storage.
    pub clone_strategy: Option<AdvisedClone>,
    /// DataImportCrons should keep their sources as VolumeSnapshots rather than PVCs.
    pub snapshot_sources: bool,
    /// The smallest claim the storage accepts (a quantity).
    pub minimum_pvc_size: Option<&'static str>,
    /// DataImportCron claims should be ReadWriteOnce even when RWX is offered.
    pub read_write_once_for_data_import_cron: bool,
    /// A VolumeSnapshotClass parameter (key, value) that marks classes suited to DataImportCron
    /// snapshots of this storage.
    pub data_import_cron_snapshot_parameter: Option<(&'static str, &'static str)>,
}

impl Provisioner {
    const fn new(key: &'static str, capabilities: &'static [Capability]) -> Provisioner {
        Provisioner {
            key,
            capabilities,
            clone_strategy: None,
            snapshot_sources: false,
            minimum_pvc_size: None,
            read_write_once_for_data_import_cron: false,
            data_import_cron_snapshot_parameter: None,
        }
    }

    const fn clones_with(mut self, strategy: AdvisedClone) -> Provisioner {
        self.clone_strategy = Some(strategy);
        self
    }

    const fn snapshot_sources(mut self) -> Provisioner {
        self.snapshot_sources = true;
        self
    }

    const fn min_size(mut self, size: &'static str) -> Provisioner {
        self.minimum_pvc_size = Some(size);
        self
    }

    /// GKE: DataImportCron claims ReadWriteOnce, and snapshot classes of `snapshot-type: images`.
    const fn gke_image_snapshots(mut self) -> Provisioner {
        self.read_write_once_for_data_import_cron = true;
        self.data_import_cron_snapshot_parameter = Some(("snapshot-type", "images"));
        self
    }

    /// Whether the table has claim defaults for this key.
    pub fn is_recognized(&self) -> bool {
        !self.capabilities.is_empty()
    }

    /// The claim property sets of [`Self::capabilities`], in order.
    pub fn claim_property_sets(&self) -> Vec<ClaimPropertySet> {
        self.capabilities
            .iter()
            .map(|c| c.claim_property_set())
            .collect()
    }

    /// The advised DataImportCron source format, if the table has one.
    pub fn source_format(&self) -> Option<DataImportCronSourceFormat> {
        self.snapshot_sources
            .then_some(DataImportCronSourceFormat::Snapshot)
    }
}

/// The provisioner of statically provisioned local volumes.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Provisioners known not to serve CDI's volumes (object buckets, Stork snapshots) and local
/// volumes; their profiles do not count as incomplete in the info metric (as upstream).
pub const UNSUPPORTED_PROVISIONERS: &[&str] = &[
    "openshift-storage.ceph.rook.io/bucket",
    "rook-ceph.ceph.rook.io/bucket",
    "openshift-storage.noobaa.io/obc",
    "stork-snapshot",
    NO_PROVISIONER,
];

const fn cap(access: Access, mode: Mode) -> Capability {
    Capability { access, mode }
}

const RWO_FILE: Capability = cap(Access::ReadWriteOnce, Mode::Filesystem);
const RWO_BLOCK: Capability = cap(Access::ReadWriteOnce, Mode::Block);
const RWX_FILE: Capability = cap(Access::ReadWriteMany, Mode::Filesystem);
const RWX_BLOCK: Capability = cap(Access::ReadWriteMany, Mode::Block);
const ROX_FILE: Capability = cap(Access::ReadOnlyMany, Mode::Filesystem);
const ROX_BLOCK: Capability = cap(Access::ReadOnlyMany, Mode::Block);

/// Local or single-node storage.
const ONLY_RWO_FILE: &[Capability] = &[RWO_FILE];
const ONLY_RWO_BLOCK: &[Capability] = &[RWO_BLOCK];
const ONLY_RWX_FILE: &[Capability] = &[RWX_FILE];
/// Shared filesystems (NFS and the like).
const RWX_RWO_FILE: &[Capability] = &[RWX_FILE, RWO_FILE];
/// Block storage with multi-attach (live migration) plus filesystems on it.
const SHARED_BLOCK: &[Capability] = &[RWX_BLOCK, RWO_BLOCK, RWO_FILE];
/// Block storage without multi-attach.
const RWO_BLOCK_AND_FILE: &[Capability] = &[RWO_BLOCK, RWO_FILE];
/// Arrays offering every mode but RWX filesystems.
const ALL_BUT_RWX_FILE: &[Capability] = &[RWX_BLOCK, RWO_BLOCK, RWO_FILE, ROX_BLOCK, ROX_FILE];
/// NFS exports of arrays.
const ALL_FILE: &[Capability] = &[RWX_FILE, RWO_FILE, ROX_FILE];
/// Dell PowerMax and PowerStore block.
const DELL_BLOCK: &[Capability] = &[RWX_BLOCK, RWO_BLOCK, RWO_FILE, ROX_BLOCK];
/// Portworx volumes without NFS options.
const PORTWORX: &[Capability] = &[RWX_BLOCK, RWX_FILE, RWO_BLOCK, RWO_FILE];

use AdvisedClone::{Copy as HostAssisted, CsiClone, Snapshot};

const fn p(key: &'static str, capabilities: &'static [Capability]) -> Provisioner {
    Provisioner::new(key, capabilities)
}

/// The table, by key.
pub static PROVISIONERS: &[Provisioner] = &[
    // Local volumes. Upstream derives the modes from the class's existing PersistentVolumes;
    // local PVs are nearly always RWO filesystems, and spec.claimPropertySets overrides this.
    p(NO_PROVISIONER, ONLY_RWO_FILE),
    // Ours: Rancher's local-path provisioner (k3s, kind) makes hostPath directories.
    p("rancher.io/local-path", ONLY_RWO_FILE),
    // KubeVirt hostpath-provisioner (CSI, its RWX overlay variant, legacy) and minikube's.
    p("kubevirt.io.hostpath-provisioner", ONLY_RWO_FILE),
    p("kubevirt.io.hostpath-provisioner/overlay", ONLY_RWX_FILE),
    p("kubevirt.io/hostpath-provisioner", ONLY_RWO_FILE),
    p("k8s.io/minikube-hostpath", ONLY_RWO_FILE),
    // NFS.
    p("nfs.csi.k8s.io", ONLY_RWX_FILE),
    p("k8s-sigs.io/nfs-subdir-external-provisioner", ONLY_RWX_FILE),
    // Ceph RBD.
    p("kubernetes.io/rbd", SHARED_BLOCK),
    p("rbd.csi.ceph.com", SHARED_BLOCK).clones_with(CsiClone),
    p("rook-ceph.rbd.csi.ceph.com", SHARED_BLOCK)
        .clones_with(CsiClone)
        .snapshot_sources(),
    p("openshift-storage.rbd.csi.ceph.com", SHARED_BLOCK)
        .clones_with(CsiClone)
        .snapshot_sources(),
    // CephFS.
    p("cephfs.csi.ceph.com", RWX_RWO_FILE).clones_with(CsiClone),
    p("rook-ceph.cephfs.csi.ceph.com", RWX_RWO_FILE).clones_with(CsiClone),
    p("openshift-storage.cephfs.csi.ceph.com", RWX_RWO_FILE).clones_with(CsiClone),
    // LINSTOR.
    p("linstor.csi.linbit.com", ALL_BUT_RWX_FILE),
    // Dell Unity XT, PowerFlex, PowerScale, PowerMax, PowerStore.
    p("csi-unity.dellemc.com", ALL_BUT_RWX_FILE),
    p("csi-unity.dellemc.com/nfs", ALL_FILE),
    p("csi-vxflexos.dellemc.com", ALL_BUT_RWX_FILE).clones_with(CsiClone),
    p("csi-vxflexos.dellemc.com/nfs", ALL_FILE),
    p("csi-isilon.dellemc.com", ALL_FILE).clones_with(CsiClone),
    p("csi-powermax.dellemc.com", DELL_BLOCK).clones_with(CsiClone),
    p("csi-powermax.dellemc.com/nfs", ALL_FILE),
    p("csi-powerstore.dellemc.com", DELL_BLOCK).clones_with(HostAssisted),
    p("csi-powerstore.dellemc.com/nfs", ALL_FILE),
    // StorageOS.
    p("kubernetes.io/storageos", ONLY_RWO_FILE),
    p("storageos", ONLY_RWO_FILE),
    // AWS EBS, by volume type.
    p("kubernetes.io/aws-ebs", ONLY_RWO_BLOCK),
    p("ebs.csi.aws.com", ONLY_RWO_BLOCK),
    p("ebs.csi.aws.com/io1", ONLY_RWO_BLOCK).min_size("4Gi"),
    p("ebs.csi.aws.com/io2", SHARED_BLOCK).min_size("4Gi"),
    p("ebs.csi.aws.com/gp", ONLY_RWO_BLOCK).min_size("1Gi"),
    // AWS EFS.
    p("efs.csi.aws.com", RWX_RWO_FILE),
    // Azure disk and file.
    p("kubernetes.io/azure-disk", ONLY_RWO_BLOCK),
    p("disk.csi.azure.com", ONLY_RWO_BLOCK),
    p("kubernetes.io/azure-file", ONLY_RWX_FILE),
    p("file.csi.azure.com", ONLY_RWX_FILE),
    // GCE persistent disk and Hyperdisk.
    p("kubernetes.io/gce-pd", RWO_BLOCK_AND_FILE),
    p("pd.csi.storage.gke.io", RWO_BLOCK_AND_FILE)
        .clones_with(Snapshot)
        .snapshot_sources()
        .gke_image_snapshots(),
    p("pd.csi.storage.gke.io/hyperdisk", SHARED_BLOCK)
        .clones_with(Snapshot)
        .snapshot_sources()
        .min_size("4Gi")
        .gke_image_snapshots(),
    // Hitachi, and HPE XP (Hitachi's OEM, known only for its minimum size).
    p("hspc.csi.hitachi.com", SHARED_BLOCK)
        .clones_with(CsiClone)
        .min_size("1Gi"),
    p("xspc.csi.hpe.com", &[]).min_size("1Gi"),
    // HPE.
    p("csi.hpe.com", SHARED_BLOCK).clones_with(CsiClone),
    // IBM Spectrum Scale, FlashSystem, VPC block and file (by profile).
    p("spectrumscale.csi.ibm.com", RWX_RWO_FILE).clones_with(CsiClone),
    p("block.csi.ibm.com", SHARED_BLOCK).clones_with(CsiClone),
    p("vpc.block.csi.ibm.io", RWO_BLOCK_AND_FILE).clones_with(HostAssisted),
    p("vpc.file.csi.ibm.io", RWX_RWO_FILE)
        .clones_with(Snapshot)
        .snapshot_sources(),
    p("vpc.file.csi.ibm.io/dp2", RWX_RWO_FILE)
        .clones_with(Snapshot)
        .snapshot_sources()
        .min_size("10Gi"),
    p("vpc.file.csi.ibm.io/dp2-rwo", ONLY_RWO_FILE)
        .clones_with(Snapshot)
        .snapshot_sources()
        .min_size("10Gi"),
    p("vpc.file.csi.ibm.io/rfs", RWX_RWO_FILE)
        .clones_with(Snapshot)
        .snapshot_sources()
        .min_size("1Gi"),
    p("vpc.file.csi.ibm.io/rfs-rwo", ONLY_RWO_FILE)
        .clones_with(Snapshot)
        .snapshot_sources()
        .min_size("1Gi"),
    // Portworx, in-tree and CSI.
    p("kubernetes.io/portworx-volume/nfs", RWX_RWO_FILE),
    p("kubernetes.io/portworx-volume", PORTWORX),
    p("pxd.portworx.com/nfs", RWX_RWO_FILE).clones_with(CsiClone),
    p("pxd.portworx.com", PORTWORX).clones_with(CsiClone),
    p("pxd.portworx.com/pure_block", SHARED_BLOCK).clones_with(CsiClone),
    p("pxd.portworx.com/pure_fa_file", RWX_RWO_FILE).clones_with(CsiClone),
    // NetApp Trident, by backend type.
    p("csi.trident.netapp.io/ontap-nas", RWX_RWO_FILE)
        .clones_with(Snapshot)
        .snapshot_sources(),
    p("csi.trident.netapp.io/ontap-san", &[RWX_BLOCK])
        .clones_with(Snapshot)
        .snapshot_sources(),
    p("csi.trident.netapp.io/gcnv-flex", RWX_RWO_FILE)
        .clones_with(Snapshot)
        .snapshot_sources()
        .min_size("1Gi"),
    // TopoLVM.
    p("topolvm.cybozu.com", RWO_BLOCK_AND_FILE).clones_with(HostAssisted),
    p("topolvm.io", RWO_BLOCK_AND_FILE).clones_with(HostAssisted),
    // Ours: OpenEBS local engines (hostpath, LVM, ZFS) and its replicated engine (Mayastor).
    p("openebs.io/local", ONLY_RWO_FILE),
    p("local.csi.openebs.io", RWO_BLOCK_AND_FILE),
    p("zfs.csi.openebs.io", RWO_BLOCK_AND_FILE),
    p("io.openebs.csi-mayastor", RWO_BLOCK_AND_FILE),
    // OpenStack Cinder and Manila, oVirt.
    p("cinder.csi.openstack.org", RWO_BLOCK_AND_FILE),
    p("manila.csi.openstack.org", ONLY_RWX_FILE),
    p("csi.ovirt.org", RWO_BLOCK_AND_FILE),
    // Infinidat, by protocol.
    p("infinibox-csi-driver/iscsiorfibrechannel", SHARED_BLOCK).clones_with(CsiClone),
    p("infinibox-csi-driver/nvme", SHARED_BLOCK).clones_with(CsiClone),
    p("infinibox-csi-driver/nfs", RWX_RWO_FILE).clones_with(CsiClone),
    // vSphere, block or NFS (file services).
    p("csi.vsphere.vmware.com", RWO_BLOCK_AND_FILE),
    p(
        "csi.vsphere.vmware.com/nfs",
        &[RWX_FILE, RWO_BLOCK, RWO_FILE],
    ),
    // Huawei.
    p("csi.huawei.com", ALL_BUT_RWX_FILE),
    p("csi.huawei.com/nfs", ALL_FILE),
    // KubeSAN.
    p(
        "kubesan.gitlab.io",
        &[RWX_BLOCK, ROX_BLOCK, RWO_BLOCK, RWO_FILE],
    )
    .clones_with(CsiClone),
    // Longhorn: plain, migratable (RWX block), NFS-backed RWX, and with an explicit fsType.
    p("driver.longhorn.io", ONLY_RWO_BLOCK),
    p("driver.longhorn.io/migratable", &[RWX_BLOCK, RWO_BLOCK]),
    p("driver.longhorn.io/nfs", RWX_RWO_FILE),
    p("driver.longhorn.io/fs", ONLY_RWO_FILE),
    // Oracle Cloud block volumes.
    p("blockvolume.csi.oraclecloud.com", SHARED_BLOCK).clones_with(CsiClone),
    // Synology, by protocol.
    p("csi.san.synology.com/iscsi", SHARED_BLOCK)
        .clones_with(CsiClone)
        .min_size("1Gi"),
    p("csi.san.synology.com/nfs", RWX_RWO_FILE)
        .clones_with(CsiClone)
        .min_size("1Gi"),
    p("csi.san.synology.com/smb", RWX_RWO_FILE)
        .clones_with(CsiClone)
        .min_size("1Gi"),
    // MinIO DirectPV.
    p("directpv-min-io", ONLY_RWO_FILE),
];

/// What the table says about a StorageClass.
#[derive(Clone, Copy, Debug)]
pub enum Lookup {
    /// The key is in the table.
    Known(&'static Provisioner),
    /// The provisioner (or its refined key) is not in the table.
    UnknownProvisioner,
    /// The provisioner is one whose parameters pick the storage type, and they name none the
    /// table knows (a Trident backend type, an Infinidat or Synology protocol).
    UnknownParameters,
}

impl Lookup {
    /// The table entry, if any.
    pub fn entry(self) -> Option<&'static Provisioner> {
        match self {
            Lookup::Known(p) => Some(p),
            Lookup::UnknownProvisioner | Lookup::UnknownParameters => None,
        }
    }
}

/// Looks `sc` up in the table.
pub fn lookup(sc: &StorageClass) -> Lookup {
    match provisioner_key(sc) {
        Some(key) => PROVISIONERS
            .iter()
            .find(|p| p.key == key)
            .map_or(Lookup::UnknownProvisioner, Lookup::Known),
        None => Lookup::UnknownParameters,
    }
}

fn param<'a>(sc: &'a StorageClass, key: &str) -> Option<&'a str> {
    sc.parameters
        .as_ref()
        .and_then(|p| p.get(key))
        .map(String::as_str)
}

fn has_nfs_v3_options(sc: &StorageClass) -> bool {
    let options: Vec<&str> = param(sc, "sharedv4_mount_options")
        .unwrap_or_default()
        .split(',')
        .collect();
    options.contains(&"vers=3.0") && options.contains(&"nolock")
}

fn csi_fs_type(sc: &StorageClass) -> String {
    param(sc, "csi.storage.k8s.io/fstype")
        .unwrap_or_default()
        .to_lowercase()
}

/// The table key of `sc`: its provisioner, refined by the parameters of provisioners that serve
/// several kinds of storage; `None` when those parameters name a kind the table does not know.
pub fn provisioner_key(sc: &StorageClass) -> Option<String> {
    let p = sc.provisioner.as_str();
    let variant = |v: &str| Some(format!("{p}/{v}"));
    let value = |key: &str| param(sc, key).unwrap_or_default();
    match p {
        "kubevirt.io.hostpath-provisioner" if param(sc, "overlayCSI").is_some() => {
            variant("overlay")
        }
        "kubernetes.io/portworx-volume" if has_nfs_v3_options(sc) => variant("nfs"),
        "pxd.portworx.com" => match param(sc, "backend") {
            Some("pure_block") => variant("pure_block"),
            Some("pure_fa_file") => variant("pure_fa_file"),
            Some(_) => Some(p.to_owned()),
            None if has_nfs_v3_options(sc) => variant("nfs"),
            None => Some(p.to_owned()),
        },
        "csi.trident.netapp.io" => {
            let backend = value("backendType");
            let flex = value("selector")
                .split([';', ','])
                .any(|s| s.trim() == "performance=flex");
            if backend.starts_with("ontap-nas") {
                variant("ontap-nas")
            } else if backend.starts_with("ontap-san") {
                variant("ontap-san")
            } else if backend == "google-cloud-netapp-volumes" && flex {
                variant("gcnv-flex")
            } else {
                None
            }
        }
        "infinibox-csi-driver" => match value("storage_protocol") {
            "iscsi" | "fc" => variant("iscsiorfibrechannel"),
            "nvme" => variant("nvme"),
            "nfs" | "nfs_treeq" => variant("nfs"),
            _ => None,
        },
        "csi.vsphere.vmware.com" if csi_fs_type(sc).contains("nfs") => variant("nfs"),
        "csi-unity.dellemc.com" if value("protocol").eq_ignore_ascii_case("nfs") => variant("nfs"),
        "csi-powerstore.dellemc.com" | "csi-vxflexos.dellemc.com" | "csi-powermax.dellemc.com"
            if csi_fs_type(sc) == "nfs" =>
        {
            variant("nfs")
        }
        "csi.huawei.com" if value("protocol") == "nfs" => variant("nfs"),
        "driver.longhorn.io" => {
            if value("migratable") == "true" {
                variant("migratable")
            } else if !value("nfsOptions").is_empty() {
                variant("nfs")
            } else if !value("fsType").is_empty() {
                variant("fs")
            } else {
                Some(p.to_owned())
            }
        }
        "ebs.csi.aws.com" => match value("type") {
            "io1" => variant("io1"),
            "io2" => variant("io2"),
            "gp2" | "gp3" => variant("gp"),
            _ => Some(p.to_owned()),
        },
        "pd.csi.storage.gke.io" => match value("type") {
            "hyperdisk-balanced" | "hyperdisk-balanced-high-availability" => variant("hyperdisk"),
            _ => Some(p.to_owned()),
        },
        "csi.san.synology.com" => match value("protocol") {
            "iscsi" | "" => variant("iscsi"),
            "smb" => variant("smb"),
            "nfs" | "nfs_treeq" => variant("nfs"),
            _ => None,
        },
        "vpc.file.csi.ibm.io" => {
            // `vmState: "true"` asks for the ReadWriteOnce variants (disks of running VMs).
            let rwo = value("vmState") == "true";
            match (value("profile"), rwo) {
                ("rfs", true) => variant("rfs-rwo"),
                ("rfs", false) => variant("rfs"),
                ("dp2", true) => variant("dp2-rwo"),
                ("dp2", false) => variant("dp2"),
                _ => Some(p.to_owned()),
            }
        }
        _ => Some(p.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn class(provisioner: &str, params: &[(&str, &str)]) -> StorageClass {
        StorageClass {
            provisioner: provisioner.into(),
            parameters: Some(
                params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    fn key(provisioner: &str, params: &[(&str, &str)]) -> Option<String> {
        provisioner_key(&class(provisioner, params))
    }

    fn entry(provisioner: &str, params: &[(&str, &str)]) -> &'static Provisioner {
        lookup(&class(provisioner, params))
            .entry()
            .unwrap_or_else(|| panic!("{provisioner} {params:?} is in the table"))
    }

    mod table {
        use super::*;

        #[test]
        fn keys_are_unique() {
            let mut seen = BTreeSet::new();
            for p in PROVISIONERS {
                assert!(seen.insert(p.key), "{} is listed twice", p.key);
            }
        }

        #[test]
        fn every_entry_but_hpe_xp_has_capabilities() {
            let without: Vec<&str> = PROVISIONERS
                .iter()
                .filter(|p| !p.is_recognized())
                .map(|p| p.key)
                .collect();
            assert_eq!(without, ["xspc.csi.hpe.com"]);
        }

        #[test]
        fn minimum_sizes_are_quantities() {
            for p in PROVISIONERS {
                if let Some(size) = p.minimum_pvc_size {
                    assert!(
                        size.ends_with("Gi") && size.trim_end_matches("Gi").parse::<u32>().is_ok(),
                        "{}: {size}",
                        p.key
                    );
                }
            }
        }
    }

    mod lookups {
        use super::*;

        #[test]
        fn local_volumes_are_rwo_filesystem() {
            for provisioner in [NO_PROVISIONER, "rancher.io/local-path"] {
                assert_eq!(entry(provisioner, &[]).capabilities, [RWO_FILE]);
            }
        }

        #[test]
        fn hostpath_provisioner_both_names_are_rwo_filesystem() {
            for provisioner in [
                "kubevirt.io.hostpath-provisioner",
                "kubevirt.io/hostpath-provisioner",
            ] {
                assert_eq!(entry(provisioner, &[]).capabilities, [RWO_FILE]);
            }
            assert_eq!(
                entry("kubevirt.io.hostpath-provisioner", &[("overlayCSI", "")]).capabilities,
                [RWX_FILE]
            );
        }

        #[test]
        fn ceph_rbd_offers_shared_block_first_and_csi_clone() {
            let rbd = entry("rook-ceph.rbd.csi.ceph.com", &[]);
            assert_eq!(rbd.capabilities, [RWX_BLOCK, RWO_BLOCK, RWO_FILE]);
            assert_eq!(rbd.clone_strategy, Some(CsiClone));
            assert_eq!(
                rbd.source_format(),
                Some(DataImportCronSourceFormat::Snapshot)
            );
            assert_eq!(
                entry("rbd.csi.ceph.com", &[]).clone_strategy,
                Some(CsiClone)
            );
        }

        #[test]
        fn unknown_provisioners_are_not_in_the_table() {
            assert!(matches!(
                lookup(&class("example.com/mystery", &[])),
                Lookup::UnknownProvisioner
            ));
        }

        #[test]
        fn unknown_parameters_are_reported_as_such() {
            for (provisioner, params) in [
                (
                    "csi.trident.netapp.io",
                    &[("backendType", "solidfire-san")][..],
                ),
                ("infinibox-csi-driver", &[][..]),
                ("csi.san.synology.com", &[("protocol", "afp")][..]),
            ] {
                assert!(
                    matches!(
                        lookup(&class(provisioner, params)),
                        Lookup::UnknownParameters
                    ),
                    "{provisioner}"
                );
            }
        }

        #[test]
        fn hpe_xp_has_a_minimum_size_but_no_claim_defaults() {
            let xp = entry("xspc.csi.hpe.com", &[]);
            assert!(!xp.is_recognized());
            assert_eq!(xp.minimum_pvc_size, Some("1Gi"));
        }
    }

    mod parameters {
        use super::*;

        #[test]
        fn trident_backend_type_picks_nas_or_san() {
            assert_eq!(
                key(
                    "csi.trident.netapp.io",
                    &[("backendType", "ontap-nas-economy")]
                )
                .as_deref(),
                Some("csi.trident.netapp.io/ontap-nas")
            );
            assert_eq!(
                entry("csi.trident.netapp.io", &[("backendType", "ontap-san")]).capabilities,
                [RWX_BLOCK]
            );
            assert_eq!(
                key(
                    "csi.trident.netapp.io",
                    &[
                        ("backendType", "google-cloud-netapp-volumes"),
                        ("selector", "performance=flex; region=x")
                    ]
                )
                .as_deref(),
                Some("csi.trident.netapp.io/gcnv-flex")
            );
        }

        #[test]
        fn portworx_nfs_v3_mount_options_pick_nfs() {
            let nfs = [("sharedv4_mount_options", "vers=3.0,nolock")];
            assert_eq!(
                key("pxd.portworx.com", &nfs).as_deref(),
                Some("pxd.portworx.com/nfs")
            );
            assert_eq!(
                key("kubernetes.io/portworx-volume", &nfs).as_deref(),
                Some("kubernetes.io/portworx-volume/nfs")
            );
            // An explicit backend wins over mount options.
            assert_eq!(
                key("pxd.portworx.com", &[("backend", "pure_block"), nfs[0]]).as_deref(),
                Some("pxd.portworx.com/pure_block")
            );
        }

        #[test]
        fn csi_fstype_nfs_picks_the_nfs_variant() {
            let nfs = [("csi.storage.k8s.io/fstype", "NFS")];
            for provisioner in [
                "csi-powerstore.dellemc.com",
                "csi-vxflexos.dellemc.com",
                "csi-powermax.dellemc.com",
            ] {
                assert_eq!(entry(provisioner, &nfs).capabilities, ALL_FILE);
            }
            assert_eq!(
                key(
                    "csi.vsphere.vmware.com",
                    &[("csi.storage.k8s.io/fstype", "nfs4")]
                )
                .as_deref(),
                Some("csi.vsphere.vmware.com/nfs")
            );
            assert_eq!(
                key("csi.vsphere.vmware.com", &[("fsType", "nfs4")]).as_deref(),
                Some("csi.vsphere.vmware.com"),
                "only the CSI fstype parameter counts"
            );
        }

        #[test]
        fn ebs_volume_type_sets_minimum_size() {
            assert_eq!(
                entry("ebs.csi.aws.com", &[("type", "io2")]).minimum_pvc_size,
                Some("4Gi")
            );
            assert_eq!(
                entry("ebs.csi.aws.com", &[("type", "gp3")]).minimum_pvc_size,
                Some("1Gi")
            );
            assert_eq!(entry("ebs.csi.aws.com", &[]).minimum_pvc_size, None);
        }

        #[test]
        fn gke_hyperdisk_is_shared_block_with_image_snapshots() {
            let hd = entry("pd.csi.storage.gke.io", &[("type", "hyperdisk-balanced")]);
            assert_eq!(hd.key, "pd.csi.storage.gke.io/hyperdisk");
            assert!(hd.read_write_once_for_data_import_cron);
            assert_eq!(
                hd.data_import_cron_snapshot_parameter,
                Some(("snapshot-type", "images"))
            );
            assert_eq!(
                entry("pd.csi.storage.gke.io", &[("type", "hyperdisk-extreme")]).key,
                "pd.csi.storage.gke.io"
            );
        }

        #[test]
        fn longhorn_parameters_pick_the_variant() {
            assert_eq!(
                key("driver.longhorn.io", &[("migratable", "true")]).as_deref(),
                Some("driver.longhorn.io/migratable")
            );
            assert_eq!(
                key("driver.longhorn.io", &[("nfsOptions", "vers=4.2")]).as_deref(),
                Some("driver.longhorn.io/nfs")
            );
            assert_eq!(
                key("driver.longhorn.io", &[("fsType", "xfs")]).as_deref(),
                Some("driver.longhorn.io/fs")
            );
        }

        #[test]
        fn ibm_vpc_file_profile_and_vm_state_pick_the_variant() {
            assert_eq!(
                entry(
                    "vpc.file.csi.ibm.io",
                    &[("profile", "dp2"), ("vmState", "true")]
                )
                .capabilities,
                [RWO_FILE]
            );
            assert_eq!(
                entry("vpc.file.csi.ibm.io", &[("profile", "rfs")]).minimum_pvc_size,
                Some("1Gi")
            );
        }

        #[test]
        fn synology_without_protocol_is_iscsi() {
            assert_eq!(
                key("csi.san.synology.com", &[]).as_deref(),
                Some("csi.san.synology.com/iscsi")
            );
        }
    }
}
