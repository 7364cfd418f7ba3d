//! What CDI knows about common provisioners: the access and volume modes their claims support,
//! the clone strategy and DataImportCron source format that suit them, and their smallest
//! claim. A StorageClass is looked up by provisioner, refined by its parameters where one
//! provisioner serves very different storage (NFS versus block, ...).

use cdi_crds::{CloneStrategy, DataImportCronSourceFormat, VolumeMode};
use k8s_openapi::api::storage::v1::StorageClass;

/// One supported combination of access mode and volume mode.
pub type Capability = (&'static str, VolumeMode);

const RWO: &str = "ReadWriteOnce";
const RWX: &str = "ReadWriteMany";
const ROX: &str = "ReadOnlyMany";

/// The provisioner used by statically provisioned local volumes.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

fn fs() -> VolumeMode {
    VolumeMode::Filesystem
}
fn block() -> VolumeMode {
    VolumeMode::Block
}

/// Claim capabilities of the provisioner `key` (see [`provisioner_key`]).
pub fn capabilities(key: &str) -> Option<Vec<Capability>> {
    let rwo_file = || vec![(RWO, fs())];
    let rwx_file = || vec![(RWX, fs())];
    let rwo_block = || vec![(RWO, block())];
    let rwx_rwo_both = || vec![(RWX, block()), (RWO, block()), (RWO, fs())];
    let nfs_like = || vec![(RWX, fs()), (RWO, fs())];
    let all_but_rwx_file = || vec![(RWX, block()), (RWO, block()), (RWO, fs())];
    let all_fs = || vec![(RWX, fs()), (RWO, fs()), (ROX, fs())];
    let caps = match key {
        NO_PROVISIONER => rwo_file(),
        "kubevirt.io.hostpath-provisioner"
        | "kubevirt.io/hostpath-provisioner"
        | "k8s.io/minikube-hostpath"
        | "rancher.io/local-path"
        | "kubernetes.io/storageos"
        | "storageos"
        | "driver.longhorn.io/fs" => rwo_file(),
        "nfs.csi.k8s.io"
        | "k8s-sigs.io/nfs-subdir-external-provisioner"
        | "cephfs.csi.ceph.com"
        | "openshift-storage.cephfs.csi.ceph.com"
        | "kubernetes.io/azure-file"
        | "file.csi.azure.com"
        | "manila.csi.openstack.org" => rwx_file(),
        "kubernetes.io/rbd"
        | "rbd.csi.ceph.com"
        | "rook-ceph.rbd.csi.ceph.com"
        | "openshift-storage.rbd.csi.ceph.com" => {
            vec![(RWX, block()), (RWO, block()), (RWO, fs())]
        }
        "kubernetes.io/aws-ebs"
        | "ebs.csi.aws.com"
        | "ebs.csi.aws.com/io1"
        | "ebs.csi.aws.com/gp"
        | "kubernetes.io/azure-disk"
        | "disk.csi.azure.com"
        | "kubernetes.io/gce-pd"
        | "pd.csi.storage.gke.io"
        | "driver.longhorn.io" => rwo_block(),
        "ebs.csi.aws.com/io2"
        | "pd.csi.storage.gke.io/hyperdisk"
        | "hspc.csi.hitachi.com"
        | "csi.hpe.com"
        | "block.csi.ibm.com"
        | "pxd.portworx.com/pure_block"
        | "infinibox-csi-driver/iscsiorfibrechannel"
        | "infinibox-csi-driver/nvme"
        | "blockvolume.csi.oraclecloud.com" => rwx_rwo_both(),
        "efs.csi.aws.com"
        | "spectrumscale.csi.ibm.com"
        | "kubernetes.io/portworx-volume/nfs"
        | "pxd.portworx.com/nfs"
        | "pxd.portworx.com/pure_fa_file"
        | "csi.trident.netapp.io/ontap-nas"
        | "csi.trident.netapp.io/gcnv-flex"
        | "infinibox-csi-driver/nfs"
        | "driver.longhorn.io/nfs" => nfs_like(),
        "kubernetes.io/portworx-volume" | "pxd.portworx.com" => {
            vec![(RWX, block()), (RWX, fs()), (RWO, block()), (RWO, fs())]
        }
        "csi.trident.netapp.io/ontap-san" => vec![(RWX, block())],
        "linstor.csi.linbit.com"
        | "csi-unity.dellemc.com"
        | "csi.huawei.com"
        | "csi-vxflexos.dellemc.com"
        | "csi-powermax.dellemc.com"
        | "csi-powerstore.dellemc.com" => all_but_rwx_file(),
        "csi-unity.dellemc.com/nfs"
        | "csi-vxflexos.dellemc.com/nfs"
        | "csi-isilon.dellemc.com"
        | "csi-powermax.dellemc.com/nfs"
        | "csi-powerstore.dellemc.com/nfs"
        | "csi.huawei.com/nfs" => all_fs(),
        "topolvm.cybozu.com" | "topolvm.io" => vec![(RWO, block()), (RWO, fs())],
        "cinder.csi.openstack.org" | "csi.ovirt.org" | "csi.vsphere.vmware.com" => {
            vec![(RWO, block()), (RWO, fs())]
        }
        "csi.vsphere.vmware.com/nfs" => vec![(RWX, fs()), (RWO, block()), (RWO, fs())],
        "kubesan.gitlab.io" => vec![(RWX, block()), (ROX, block()), (RWO, block()), (RWO, fs())],
        "driver.longhorn.io/migratable" => vec![(RWX, block()), (RWO, block())],
        _ => return None,
    };
    Some(caps)
}

/// The clone strategy that suits provisioner `key`, if CDI advises one.
pub fn clone_strategy(key: &str) -> Option<CloneStrategy> {
    match key {
        "csi-vxflexos.dellemc.com"
        | "csi-isilon.dellemc.com"
        | "csi-powermax.dellemc.com"
        | "hspc.csi.hitachi.com"
        | "csi.hpe.com"
        | "spectrumscale.csi.ibm.com"
        | "block.csi.ibm.com"
        | "rook-ceph.rbd.csi.ceph.com"
        | "openshift-storage.rbd.csi.ceph.com"
        | "cephfs.csi.ceph.com"
        | "openshift-storage.cephfs.csi.ceph.com"
        | "pxd.portworx.com/nfs"
        | "pxd.portworx.com"
        | "infinibox-csi-driver/iscsiorfibrechannel"
        | "infinibox-csi-driver/nvme"
        | "infinibox-csi-driver/nfs"
        | "kubesan.gitlab.io" => Some(CloneStrategy::CsiClone),
        "csi-powerstore.dellemc.com" | "topolvm.cybozu.com" | "topolvm.io" => {
            Some(CloneStrategy::Copy)
        }
        "csi.trident.netapp.io/ontap-nas"
        | "csi.trident.netapp.io/ontap-san"
        | "csi.trident.netapp.io/gcnv-flex"
        | "pd.csi.storage.gke.io"
        | "pd.csi.storage.gke.io/hyperdisk" => Some(CloneStrategy::Snapshot),
        _ => None,
    }
}

/// The DataImportCron source format that suits provisioner `key`, if CDI advises one.
pub fn source_format(key: &str) -> Option<DataImportCronSourceFormat> {
    match key {
        "rook-ceph.rbd.csi.ceph.com"
        | "openshift-storage.rbd.csi.ceph.com"
        | "csi.trident.netapp.io/ontap-nas"
        | "csi.trident.netapp.io/ontap-san"
        | "csi.trident.netapp.io/gcnv-flex"
        | "pd.csi.storage.gke.io"
        | "pd.csi.storage.gke.io/hyperdisk" => Some(DataImportCronSourceFormat::Snapshot),
        _ => None,
    }
}

/// The smallest claim provisioner `key` accepts, if it has one.
pub fn minimum_claim_size(key: &str) -> Option<&'static str> {
    match key {
        "pd.csi.storage.gke.io/hyperdisk" | "ebs.csi.aws.com/io1" | "ebs.csi.aws.com/io2" => {
            Some("4Gi")
        }
        "ebs.csi.aws.com/gp" | "csi.trident.netapp.io/gcnv-flex" => Some("1Gi"),
        _ => None,
    }
}

fn param<'a>(sc: &'a StorageClass, key: &str) -> &'a str {
    sc.parameters
        .as_ref()
        .and_then(|p| p.get(key))
        .map_or("", String::as_str)
}

fn fs_type(sc: &StorageClass) -> String {
    let t = param(sc, "csi.storage.k8s.io/fstype");
    if t.is_empty() { param(sc, "fsType") } else { t }.to_lowercase()
}

/// The table key of `sc`: its provisioner, refined by parameters for provisioners that serve
/// several kinds of storage.
pub fn provisioner_key(sc: &StorageClass) -> String {
    let p = sc.provisioner.as_str();
    let nfs_v3 = || {
        let opts = param(sc, "sharedv4_mount_options");
        opts.split(',').any(|o| o == "vers=3.0") && opts.split(',').any(|o| o == "nolock")
    };
    match p {
        "kubernetes.io/portworx-volume" if nfs_v3() => format!("{p}/nfs"),
        "pxd.portworx.com" => match param(sc, "backend") {
            "pure_block" => format!("{p}/pure_block"),
            "pure_fa_file" => format!("{p}/pure_fa_file"),
            "" if nfs_v3() => format!("{p}/nfs"),
            _ => p.to_owned(),
        },
        "csi.trident.netapp.io" => {
            let backend = param(sc, "backendType");
            if backend.starts_with("ontap-nas") {
                format!("{p}/ontap-nas")
            } else if backend.starts_with("ontap-san") {
                format!("{p}/ontap-san")
            } else if backend == "google-cloud-netapp-volumes"
                && param(sc, "selector")
                    .split([';', ','])
                    .any(|s| s.trim() == "performance=flex")
            {
                format!("{p}/gcnv-flex")
            } else {
                format!("{p}/unknown")
            }
        }
        "infinibox-csi-driver" => match param(sc, "storage_protocol") {
            "iscsi" | "fc" => format!("{p}/iscsiorfibrechannel"),
            "nvme" => format!("{p}/nvme"),
            "nfs" | "nfs_treeq" => format!("{p}/nfs"),
            _ => format!("{p}/unknown"),
        },
        "csi.vsphere.vmware.com" if fs_type(sc).contains("nfs") => format!("{p}/nfs"),
        "csi-unity.dellemc.com" if param(sc, "protocol").eq_ignore_ascii_case("nfs") => {
            format!("{p}/nfs")
        }
        "csi-powerstore.dellemc.com" | "csi-vxflexos.dellemc.com" | "csi-powermax.dellemc.com"
            if fs_type(sc) == "nfs" =>
        {
            format!("{p}/nfs")
        }
        "ebs.csi.aws.com" => match param(sc, "type") {
            "io1" => format!("{p}/io1"),
            "io2" => format!("{p}/io2"),
            "gp2" | "gp3" => format!("{p}/gp"),
            _ => p.to_owned(),
        },
        "pd.csi.storage.gke.io" if param(sc, "type").starts_with("hyperdisk") => {
            format!("{p}/hyperdisk")
        }
        "driver.longhorn.io" => {
            if param(sc, "migratable") == "true" {
                format!("{p}/migratable")
            } else if param(sc, "nfsOptions").is_empty() {
                p.to_owned()
            } else {
                format!("{p}/nfs")
            }
        }
        _ => p.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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

    #[test]
    fn local_volumes_are_rwo_filesystem() {
        assert_eq!(
            capabilities(NO_PROVISIONER),
            Some(vec![(RWO, VolumeMode::Filesystem)])
        );
    }

    #[test]
    fn ceph_rbd_offers_block_first() {
        let caps = capabilities("rbd.csi.ceph.com").expect("known");
        assert_eq!(caps[0], (RWX, VolumeMode::Block));
        assert_eq!(
            clone_strategy("rook-ceph.rbd.csi.ceph.com"),
            Some(CloneStrategy::CsiClone)
        );
        assert_eq!(
            source_format("rook-ceph.rbd.csi.ceph.com"),
            Some(DataImportCronSourceFormat::Snapshot)
        );
    }

    #[test]
    fn parameters_refine_the_key() {
        assert_eq!(
            provisioner_key(&class(
                "csi.trident.netapp.io",
                &[("backendType", "ontap-nas-economy")]
            )),
            "csi.trident.netapp.io/ontap-nas"
        );
        assert_eq!(
            provisioner_key(&class(
                "pxd.portworx.com",
                &[("sharedv4_mount_options", "vers=3.0,nolock")]
            )),
            "pxd.portworx.com/nfs"
        );
        assert_eq!(
            provisioner_key(&class(
                "csi.vsphere.vmware.com",
                &[("csi.storage.k8s.io/fstype", "nfs4")]
            )),
            "csi.vsphere.vmware.com/nfs"
        );
        assert_eq!(
            provisioner_key(&class("ebs.csi.aws.com", &[("type", "io2")])),
            "ebs.csi.aws.com/io2"
        );
        assert_eq!(minimum_claim_size("ebs.csi.aws.com/io2"), Some("4Gi"));
        assert_eq!(capabilities("csi.trident.netapp.io/unknown"), None);
    }

    #[test]
    fn unknown_provisioners_have_no_defaults() {
        assert_eq!(capabilities("example.com/mystery"), None);
        assert_eq!(clone_strategy("example.com/mystery"), None);
    }
}
