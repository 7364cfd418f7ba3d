//! A StorageProfile's status and its `kubevirt_cdi_storageprofile_info` labels, from the
//! StorageClass and the profile's spec.

use cdi_crds::annotations::storage_class as sc_ann;
use cdi_crds::storageprofile::{
    ClaimPropertySet, StorageProfileCondition, StorageProfileConditionType, StorageProfileSpec,
    StorageProfileStatus,
};
use cdi_crds::{CloneStrategy, ConditionStatus, DataImportCronSourceFormat};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::capabilities::{self, NO_PROVISIONER};
use crate::metrics::StorageProfileLabels;

/// The status of the profile of `sc` with `spec`; `snapshot_class_exists` says whether a
/// VolumeSnapshotClass serves the class's driver. Condition times are `now`, or kept from
/// `old` when the condition did not change.
pub fn profile_status(
    sc: &StorageClass,
    spec: &StorageProfileSpec,
    snapshot_class_exists: bool,
    old: Option<&StorageProfileStatus>,
    now: Time,
) -> StorageProfileStatus {
    let key = capabilities::provisioner_key(sc);
    let table = capabilities::capabilities(&key);
    let from_spec = spec.claim_property_sets.clone().filter(|s| !s.is_empty());
    let claim_property_sets = from_spec.clone().or_else(|| {
        table.as_ref().map(|caps| {
            // One set per volume mode, in the table's order, with its access modes.
            let mut sets: Vec<ClaimPropertySet> = Vec::new();
            for (access, mode) in caps {
                match sets.iter_mut().find(|s| s.volume_mode == *mode) {
                    Some(s) => s.access_modes.push((*access).to_owned()),
                    None => sets.push(ClaimPropertySet {
                        access_modes: vec![(*access).to_owned()],
                        volume_mode: mode.clone(),
                    }),
                }
            }
            sets
        })
    });

    let annotated = sc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(sc_ann::CLONE_STRATEGY))
        .map(|s| CloneStrategy::from(s.as_str()))
        .filter(CloneStrategy::is_known);
    let clone_strategy = spec
        .clone_strategy
        .clone()
        .or(annotated)
        .or_else(|| capabilities::clone_strategy(&key))
        .unwrap_or(if snapshot_class_exists {
            CloneStrategy::Snapshot
        } else {
            CloneStrategy::Copy
        });
    let clone_strategy = if clone_strategy == CloneStrategy::Snapshot && !snapshot_class_exists {
        CloneStrategy::Copy
    } else {
        clone_strategy
    };
    let format = spec
        .data_import_cron_source_format
        .clone()
        .or_else(|| capabilities::source_format(&key))
        .unwrap_or(DataImportCronSourceFormat::Pvc);

    let recognized = table.is_some() || sc.provisioner == NO_PROVISIONER;
    let (status, reason, message) = if recognized {
        (
            ConditionStatus::True,
            "RecognizedProvisioner",
            format!("provisioner {} is known to CDI", sc.provisioner),
        )
    } else if from_spec.is_some() {
        (
            ConditionStatus::False,
            "UnrecognizedProvisioner",
            format!(
                "provisioner {} is not known to CDI; using spec.claimPropertySets",
                sc.provisioner
            ),
        )
    } else {
        (
            ConditionStatus::False,
            "UnrecognizedProvisioner",
            format!(
                "provisioner {} is not known to CDI: set spec.claimPropertySets (access modes \
                 and volume mode) on this StorageProfile, or give them on each DataVolume",
                sc.provisioner
            ),
        )
    };
    let previous = old.and_then(|o| o.conditions.as_ref()).and_then(|c| {
        c.iter()
            .find(|c| c.type_ == StorageProfileConditionType::Recognized)
    });
    let unchanged = previous.is_some_and(|p| {
        p.status == status
            && p.reason.as_deref() == Some(reason)
            && p.message.as_deref() == Some(message.as_str())
    });
    let condition = StorageProfileCondition {
        type_: StorageProfileConditionType::Recognized,
        status,
        last_transition_time: match previous {
            Some(p) if unchanged => p.last_transition_time.clone(),
            _ => Some(now.clone()),
        },
        last_heartbeat_time: match previous {
            Some(p) if unchanged => p.last_heartbeat_time.clone(),
            _ => Some(now),
        },
        reason: Some(reason.to_owned()),
        message: Some(message),
    };

    StorageProfileStatus {
        storage_class: sc.metadata.name.clone(),
        provisioner: Some(sc.provisioner.clone()),
        clone_strategy: Some(clone_strategy),
        claim_property_sets,
        data_import_cron_source_format: Some(format),
        snapshot_class: spec.snapshot_class.clone(),
        conditions: Some(vec![condition]),
    }
}

/// Annotations the table puts on the profile (minimum claim size).
pub fn profile_annotations(sc: &StorageClass) -> Vec<(String, String)> {
    let key = capabilities::provisioner_key(sc);
    capabilities::minimum_claim_size(&key)
        .map(|size| {
            (
                sc_ann::MINIMUM_SUPPORTED_PVC_SIZE.to_owned(),
                size.to_owned(),
            )
        })
        .into_iter()
        .collect()
}

/// The labels of the profile's `kubevirt_cdi_storageprofile_info` series.
pub fn info_labels(sc: &StorageClass, status: &StorageProfileStatus) -> StorageProfileLabels {
    let annotation = |k: &str| {
        sc.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .is_some_and(|v| v == "true")
    };
    let sets = status.claim_property_sets.clone().unwrap_or_default();
    let complete = !sets.is_empty();
    let smart = matches!(
        status.clone_strategy,
        Some(CloneStrategy::Snapshot) | Some(CloneStrategy::CsiClone)
    );
    let rwx = sets
        .iter()
        .any(|s| s.access_modes.iter().any(|m| m == "ReadWriteMany"));
    StorageProfileLabels {
        storageclass: sc.metadata.name.clone().unwrap_or_default(),
        provisioner: sc.provisioner.clone(),
        complete: complete.to_string(),
        default: annotation(sc_ann::IS_DEFAULT_CLASS).to_string(),
        virtdefault: annotation(sc_ann::IS_DEFAULT_VIRT_CLASS).to_string(),
        rwx: rwx.to_string(),
        smartclone: smart.to_string(),
        // Degraded: usable, but without what VMs want most (live migration needs RWX; fast
        // golden-image clones need a smart strategy).
        degraded: (complete && !(rwx && smart)).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdi_crds::VolumeMode;
    use k8s_openapi::jiff::Timestamp;
    use std::collections::BTreeMap;

    fn class(name: &str, provisioner: &str, annotations: &[(&str, &str)]) -> StorageClass {
        let mut sc = StorageClass {
            provisioner: provisioner.into(),
            ..Default::default()
        };
        sc.metadata.name = Some(name.into());
        sc.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        sc
    }

    fn status(sc: &StorageClass, spec: &StorageProfileSpec, snap: bool) -> StorageProfileStatus {
        profile_status(sc, spec, snap, None, Time(Timestamp::now()))
    }

    fn recognized(s: &StorageProfileStatus) -> (ConditionStatus, String) {
        let c = &s.conditions.as_ref().expect("conditions")[0];
        (c.status.clone(), c.reason.clone().unwrap_or_default())
    }

    #[test]
    fn local_class_gets_rwo_filesystem_and_copy() {
        let s = status(
            &class("local", NO_PROVISIONER, &[]),
            &Default::default(),
            false,
        );
        assert_eq!(
            s.claim_property_sets,
            Some(vec![ClaimPropertySet {
                access_modes: vec!["ReadWriteOnce".into()],
                volume_mode: VolumeMode::Filesystem
            }])
        );
        assert_eq!(s.clone_strategy, Some(CloneStrategy::Copy));
        assert_eq!(
            s.data_import_cron_source_format,
            Some(DataImportCronSourceFormat::Pvc)
        );
        assert_eq!(s.storage_class.as_deref(), Some("local"));
        assert_eq!(
            recognized(&s),
            (ConditionStatus::True, "RecognizedProvisioner".into())
        );
    }

    #[test]
    fn table_sets_are_grouped_by_volume_mode() {
        let s = status(
            &class("ceph", "rbd.csi.ceph.com", &[]),
            &Default::default(),
            true,
        );
        let sets = s.claim_property_sets.expect("sets");
        assert_eq!(sets[0].volume_mode, VolumeMode::Block);
        assert_eq!(sets[0].access_modes, ["ReadWriteMany", "ReadWriteOnce"]);
        assert_eq!(sets[1].volume_mode, VolumeMode::Filesystem);
    }

    #[test]
    fn unknown_provisioner_has_no_sets_and_says_what_to_do() {
        let s = status(
            &class("x", "example.com/mystery", &[]),
            &Default::default(),
            false,
        );
        assert_eq!(s.claim_property_sets, None);
        assert_eq!(
            recognized(&s),
            (ConditionStatus::False, "UnrecognizedProvisioner".into())
        );
        let message = s.conditions.expect("c")[0]
            .message
            .clone()
            .unwrap_or_default();
        assert!(message.contains("spec.claimPropertySets"), "{message}");
    }

    #[test]
    fn spec_overrides_the_table() {
        let spec = StorageProfileSpec {
            claim_property_sets: Some(vec![ClaimPropertySet {
                access_modes: vec!["ReadWriteMany".into()],
                volume_mode: VolumeMode::Block,
            }]),
            clone_strategy: Some(CloneStrategy::Copy),
            ..Default::default()
        };
        let s = status(&class("ceph", "rbd.csi.ceph.com", &[]), &spec, true);
        assert_eq!(s.claim_property_sets, spec.claim_property_sets);
        assert_eq!(s.clone_strategy, Some(CloneStrategy::Copy));
    }

    #[test]
    fn clone_strategy_precedence_and_snapshot_fallback() {
        let annotated = class(
            "a",
            "rook-ceph.rbd.csi.ceph.com",
            &[(sc_ann::CLONE_STRATEGY, "snapshot")],
        );
        assert_eq!(
            status(&annotated, &Default::default(), true).clone_strategy,
            Some(CloneStrategy::Snapshot)
        );
        let plain = class("b", "rook-ceph.rbd.csi.ceph.com", &[]);
        assert_eq!(
            status(&plain, &Default::default(), true).clone_strategy,
            Some(CloneStrategy::CsiClone)
        );
        let unknown = class("c", "example.com/x", &[]);
        assert_eq!(
            status(&unknown, &Default::default(), true).clone_strategy,
            Some(CloneStrategy::Snapshot)
        );
        assert_eq!(
            status(&annotated, &Default::default(), false).clone_strategy,
            Some(CloneStrategy::Copy),
            "no snapshot class"
        );
    }

    #[test]
    fn unchanged_condition_keeps_its_times() {
        let sc = class("local", NO_PROVISIONER, &[]);
        let first = profile_status(
            &sc,
            &Default::default(),
            false,
            None,
            Time(Timestamp::UNIX_EPOCH),
        );
        let again = profile_status(
            &sc,
            &Default::default(),
            false,
            Some(&first),
            Time(Timestamp::now()),
        );
        assert_eq!(first, again);
    }

    #[test]
    fn info_labels_describe_the_profile() {
        let sc = class(
            "ceph",
            "rook-ceph.rbd.csi.ceph.com",
            &[(sc_ann::IS_DEFAULT_CLASS, "true")],
        );
        let s = status(&sc, &Default::default(), true);
        let l = info_labels(&sc, &s);
        assert_eq!(
            (
                l.complete.as_str(),
                l.default.as_str(),
                l.virtdefault.as_str(),
                l.rwx.as_str(),
                l.smartclone.as_str(),
                l.degraded.as_str()
            ),
            ("true", "true", "false", "true", "true", "false")
        );
        let local = class("local", NO_PROVISIONER, &[]);
        assert_eq!(
            info_labels(&local, &status(&local, &Default::default(), false)).degraded,
            "true"
        );
    }
}
