//! A StorageProfile's status and its `kubevirt_cdi_storageprofile_info` labels, as pure
//! functions of the StorageClass, the profile's spec and the VolumeSnapshotClasses.

use cdi_crds::annotations::storage_class as ann;
use cdi_crds::storageprofile::{
    StorageProfileCondition, StorageProfileConditionType, StorageProfileSpec, StorageProfileStatus,
};
use cdi_crds::{CloneStrategy, ConditionStatus, DataImportCronSourceFormat};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::capabilities::{self, Lookup, UNSUPPORTED_PROVISIONERS};
use super::snapshot::SnapshotClass;
use crate::metrics::StorageProfileLabels;

/// The status of the profile of `sc` with `spec`; `snapshot_class_exists` says whether a
/// VolumeSnapshotClass serves the class's driver (the one
/// [`select_snapshot_class`](super::snapshot::select_snapshot_class) picks).
///
/// `snapshotClass` is the spec's; the reconciler replaces it with the class it selected. The
/// Recognized condition has no times yet: [`stamp_conditions`] gives them.
pub fn profile_status(
    sc: &StorageClass,
    spec: &StorageProfileSpec,
    snapshot_class_exists: bool,
) -> StorageProfileStatus {
    let lookup = capabilities::lookup(sc);
    let table = lookup.entry();
    let from_spec = spec
        .claim_property_sets
        .clone()
        .filter(|sets| !sets.is_empty());
    let claim_property_sets = from_spec
        .clone()
        .or_else(|| table.map(|t| t.claim_property_sets()))
        .filter(|sets| !sets.is_empty());

    StorageProfileStatus {
        storage_class: sc.metadata.name.clone(),
        provisioner: Some(sc.provisioner.clone()),
        clone_strategy: Some(clone_strategy(sc, spec, lookup, snapshot_class_exists)),
        claim_property_sets,
        data_import_cron_source_format: Some(source_format(spec, lookup, snapshot_class_exists)),
        snapshot_class: spec.snapshot_class.clone(),
        conditions: Some(vec![recognized(sc, lookup, from_spec.is_some())]),
    }
}

/// Upstream's order: the profile's spec, the class's annotation, the table, then snapshot when
/// a snapshot class exists. Only the last two fall back to copy without a snapshot class: an
/// explicit choice is shown as made (the clone planner falls back itself, with an event).
fn clone_strategy(
    sc: &StorageClass,
    spec: &StorageProfileSpec,
    lookup: Lookup,
    snapshot_class_exists: bool,
) -> CloneStrategy {
    if let Some(chosen) = &spec.clone_strategy {
        return chosen.clone();
    }
    // Unknown annotation values are ignored rather than written to the status.
    let annotated = annotation(sc, ann::CLONE_STRATEGY)
        .map(CloneStrategy::from)
        .filter(CloneStrategy::is_known);
    if let Some(annotated) = annotated {
        return annotated;
    }
    let advised = lookup
        .entry()
        .and_then(|t| t.clone_strategy)
        .map(CloneStrategy::from);
    match advised {
        Some(CloneStrategy::Snapshot) | None if !snapshot_class_exists => CloneStrategy::Copy,
        Some(advised) => advised,
        None => CloneStrategy::Snapshot,
    }
}

/// The spec's format, else the table's; snapshot sources need a snapshot class, so without one
/// the table's advice falls back to PVCs.
fn source_format(
    spec: &StorageProfileSpec,
    lookup: Lookup,
    snapshot_class_exists: bool,
) -> DataImportCronSourceFormat {
    if let Some(chosen) = &spec.data_import_cron_source_format {
        return chosen.clone();
    }
    match lookup.entry().and_then(|t| t.source_format()) {
        Some(DataImportCronSourceFormat::Snapshot) if !snapshot_class_exists => {
            DataImportCronSourceFormat::Pvc
        }
        Some(advised) => advised,
        None => DataImportCronSourceFormat::Pvc,
    }
}

/// The Recognized condition: whether the table knows the class.
fn recognized(sc: &StorageClass, lookup: Lookup, spec_has_sets: bool) -> StorageProfileCondition {
    let fill_in = if spec_has_sets {
        "spec.claimPropertySets is used instead".to_owned()
    } else {
        format!(
            "DataVolumes that use the storage API and leave out accessModes or volumeMode \
             cannot be provisioned on this class until you set spec.claimPropertySets on \
             StorageProfile {name} (for example [{{accessModes: [ReadWriteOnce], volumeMode: \
             Filesystem}}], as the storage supports)",
            name = sc.metadata.name.as_deref().unwrap_or_default()
        )
    };
    let (status, reason, message) = match lookup {
        Lookup::Known(t) if t.is_recognized() => (
            ConditionStatus::True,
            "RecognizedProvisioner",
            format!("Provisioner {} is recognized", sc.provisioner),
        ),
        Lookup::Known(_) | Lookup::UnknownProvisioner => (
            ConditionStatus::False,
            "UnrecognizedProvisioner",
            format!(
                "Provisioner {} is not recognized by CDI: {fill_in}",
                sc.provisioner
            ),
        ),
        Lookup::UnknownParameters => (
            ConditionStatus::False,
            "UnrecognizedStorageClassParameters",
            format!(
                "The parameters of StorageClass {} do not name a storage type CDI knows for \
                 provisioner {}: {fill_in}",
                sc.metadata.name.as_deref().unwrap_or_default(),
                sc.provisioner
            ),
        ),
    };
    StorageProfileCondition {
        type_: StorageProfileConditionType::Recognized,
        status,
        last_transition_time: None,
        last_heartbeat_time: None,
        reason: Some(reason.to_owned()),
        message: Some(message),
    }
}

/// Gives the conditions of `status` their times, as upstream: both kept from `previous` when
/// nothing changed; on a change the heartbeat is `now`, and the transition time too if the
/// condition's status changed.
pub fn stamp_conditions(
    status: &mut StorageProfileStatus,
    previous: Option<&StorageProfileStatus>,
    now: &Time,
) {
    let old = previous
        .and_then(|p| p.conditions.as_deref())
        .unwrap_or(&[]);
    for condition in status.conditions.iter_mut().flatten() {
        let before = old.iter().find(|c| c.type_ == condition.type_);
        let same = |b: &&StorageProfileCondition| {
            b.status == condition.status
                && b.reason == condition.reason
                && b.message == condition.message
        };
        match before {
            Some(b) if same(&b) => {
                condition.last_transition_time = b.last_transition_time.clone();
                condition.last_heartbeat_time = b.last_heartbeat_time.clone();
            }
            Some(b) if b.status == condition.status => {
                condition.last_transition_time = b.last_transition_time.clone();
                condition.last_heartbeat_time = Some(now.clone());
            }
            _ => {
                condition.last_transition_time = Some(now.clone());
                condition.last_heartbeat_time = Some(now.clone());
            }
        }
    }
}

/// Why the spec's claim property sets cannot be used, if they cannot: each needs access modes.
/// (The CRD already restricts the volume mode to Block or Filesystem.)
pub fn spec_problem(spec: &StorageProfileSpec) -> Option<String> {
    let sets = spec.claim_property_sets.as_deref().unwrap_or_default();
    sets.iter()
        .position(|s| s.access_modes.is_empty())
        .map(|i| {
            format!(
                "spec.claimPropertySets[{i}] has no accessModes: each set needs both accessModes \
             and volumeMode"
            )
        })
}

/// The labels of the profile's `kubevirt_cdi_storageprofile_info` series, as upstream computes
/// them on a cluster that is not single-node OpenShift.
///
/// - complete: the status has claim property sets (or the provisioner is one CDI cannot use,
///   which the incomplete-profiles alert should not count);
/// - smartclone: csi-clone, or snapshot with a snapshot class for the driver (upstream also
///   checks that a CSIDriver object exists for csi-clone; this does not);
/// - degraded: no RWX (no live migration) or no smart clone.
pub fn info_labels(
    sc: &StorageClass,
    status: &StorageProfileStatus,
    snapshot_classes: &[SnapshotClass],
) -> StorageProfileLabels {
    let sets = status.claim_property_sets.as_deref().unwrap_or_default();
    let unsupported = UNSUPPORTED_PROVISIONERS.contains(&sc.provisioner.as_str());
    let complete =
        unsupported || (!sets.is_empty() && sets.iter().all(|s| !s.access_modes.is_empty()));
    let rwx = sets
        .iter()
        .any(|s| s.access_modes.iter().any(|m| m == "ReadWriteMany"));
    let smartclone = match status.clone_strategy {
        Some(CloneStrategy::CsiClone) => true,
        Some(CloneStrategy::Snapshot) | None => {
            snapshot_classes.iter().any(|c| c.driver == sc.provisioner)
        }
        Some(_) => false,
    };
    StorageProfileLabels {
        storageclass: sc.metadata.name.clone().unwrap_or_default(),
        provisioner: sc.provisioner.clone(),
        complete: complete.to_string(),
        default: (annotation(sc, ann::IS_DEFAULT_CLASS) == Some("true")).to_string(),
        virtdefault: (annotation(sc, ann::IS_DEFAULT_VIRT_CLASS) == Some("true")).to_string(),
        rwx: rwx.to_string(),
        smartclone: smartclone.to_string(),
        degraded: (!rwx || !smartclone).to_string(),
    }
}

fn annotation<'a>(sc: &'a StorageClass, key: &str) -> Option<&'a str> {
    sc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storageprofile::fixtures::{class, snapshot_class};
    use cdi_crds::VolumeMode;
    use cdi_crds::storageprofile::ClaimPropertySet;
    use k8s_openapi::jiff::Timestamp;
    use std::collections::BTreeMap;

    const RBD: &str = "rook-ceph.rbd.csi.ceph.com";

    fn set(access: &str, mode: VolumeMode) -> ClaimPropertySet {
        ClaimPropertySet {
            access_modes: vec![access.into()],
            volume_mode: mode,
        }
    }

    fn recognized(s: &StorageProfileStatus) -> &StorageProfileCondition {
        &s.conditions.as_ref().expect("conditions")[0]
    }

    fn strategy(sc: &StorageClass, spec: &StorageProfileSpec, snapshots: bool) -> CloneStrategy {
        profile_status(sc, spec, snapshots)
            .clone_strategy
            .expect("a strategy")
    }

    mod claim_property_sets {
        use super::*;

        #[test]
        fn known_provisioner_gets_the_table_sets_one_access_mode_each() {
            let s = profile_status(&class("ceph", RBD, &[]), &Default::default(), true);
            assert_eq!(
                s.claim_property_sets,
                Some(vec![
                    set("ReadWriteMany", VolumeMode::Block),
                    set("ReadWriteOnce", VolumeMode::Block),
                    set("ReadWriteOnce", VolumeMode::Filesystem),
                ])
            );
            assert_eq!(s.storage_class.as_deref(), Some("ceph"));
            assert_eq!(s.provisioner.as_deref(), Some(RBD));
            let c = recognized(&s);
            assert_eq!(
                (c.type_.clone(), c.status.clone(), c.reason.as_deref()),
                (
                    StorageProfileConditionType::Recognized,
                    ConditionStatus::True,
                    Some("RecognizedProvisioner")
                )
            );
        }

        #[test]
        fn no_provisioner_class_is_rwo_filesystem_with_copy_and_pvc_sources() {
            let s = profile_status(
                &class("local", "kubernetes.io/no-provisioner", &[]),
                &Default::default(),
                false,
            );
            assert_eq!(
                s.claim_property_sets,
                Some(vec![set("ReadWriteOnce", VolumeMode::Filesystem)])
            );
            assert_eq!(s.clone_strategy, Some(CloneStrategy::Copy));
            assert_eq!(
                s.data_import_cron_source_format,
                Some(DataImportCronSourceFormat::Pvc)
            );
            assert_eq!(recognized(&s).status, ConditionStatus::True);
        }

        #[test]
        fn unknown_provisioner_has_no_sets_and_says_to_fill_the_spec() {
            let s = profile_status(
                &class("mystery", "example.com/mystery", &[]),
                &Default::default(),
                false,
            );
            assert_eq!(s.claim_property_sets, None);
            let c = recognized(&s);
            assert_eq!(c.status, ConditionStatus::False);
            assert_eq!(c.reason.as_deref(), Some("UnrecognizedProvisioner"));
            let message = c.message.as_deref().unwrap_or_default();
            assert!(message.contains("spec.claimPropertySets"), "{message}");
            assert!(message.contains("StorageProfile mystery"), "{message}");
        }

        #[test]
        fn unknown_parameters_are_their_own_reason() {
            let mut sc = class("trident", "csi.trident.netapp.io", &[]);
            sc.parameters = Some(BTreeMap::from([(
                "backendType".to_string(),
                "solidfire-san".to_string(),
            )]));
            let s = profile_status(&sc, &Default::default(), false);
            assert_eq!(s.claim_property_sets, None);
            assert_eq!(
                recognized(&s).reason.as_deref(),
                Some("UnrecognizedStorageClassParameters")
            );
        }

        #[test]
        fn spec_sets_override_the_table() {
            let spec = StorageProfileSpec {
                claim_property_sets: Some(vec![set("ReadWriteOnce", VolumeMode::Filesystem)]),
                ..Default::default()
            };
            let s = profile_status(&class("ceph", RBD, &[]), &spec, true);
            assert_eq!(s.claim_property_sets, spec.claim_property_sets);
        }

        #[test]
        fn spec_sets_fill_in_for_an_unknown_provisioner_which_stays_unrecognized() {
            let spec = StorageProfileSpec {
                claim_property_sets: Some(vec![set("ReadWriteMany", VolumeMode::Block)]),
                ..Default::default()
            };
            let s = profile_status(&class("m", "example.com/mystery", &[]), &spec, false);
            assert_eq!(s.claim_property_sets, spec.claim_property_sets);
            let c = recognized(&s);
            assert_eq!(c.status, ConditionStatus::False);
            assert!(
                c.message
                    .as_deref()
                    .unwrap_or_default()
                    .contains("spec.claimPropertySets is used instead")
            );
        }

        #[test]
        fn a_spec_set_without_access_modes_is_a_problem() {
            let spec = StorageProfileSpec {
                claim_property_sets: Some(vec![
                    set("ReadWriteOnce", VolumeMode::Block),
                    ClaimPropertySet {
                        access_modes: vec![],
                        volume_mode: VolumeMode::Filesystem,
                    },
                ]),
                ..Default::default()
            };
            let problem = spec_problem(&spec).expect("a problem");
            assert!(problem.contains("claimPropertySets[1]"), "{problem}");
            assert_eq!(spec_problem(&Default::default()), None);
        }
    }

    mod clone_strategy {
        use super::*;

        #[test]
        fn spec_wins_over_everything() {
            let sc = class("ceph", RBD, &[(ann::CLONE_STRATEGY, "snapshot")]);
            let spec = StorageProfileSpec {
                clone_strategy: Some(CloneStrategy::Copy),
                ..Default::default()
            };
            assert_eq!(strategy(&sc, &spec, true), CloneStrategy::Copy);
        }

        #[test]
        fn class_annotation_wins_over_the_table() {
            let sc = class("ceph", RBD, &[(ann::CLONE_STRATEGY, "snapshot")]);
            assert_eq!(
                strategy(&sc, &Default::default(), true),
                CloneStrategy::Snapshot
            );
        }

        #[test]
        fn unknown_annotation_value_is_ignored() {
            let sc = class("ceph", RBD, &[(ann::CLONE_STRATEGY, "teleport")]);
            assert_eq!(
                strategy(&sc, &Default::default(), true),
                CloneStrategy::CsiClone
            );
        }

        #[test]
        fn table_wins_over_the_default() {
            let sc = class("topolvm", "topolvm.io", &[]);
            assert_eq!(
                strategy(&sc, &Default::default(), true),
                CloneStrategy::Copy
            );
            assert_eq!(
                strategy(&class("ceph", RBD, &[]), &Default::default(), false),
                CloneStrategy::CsiClone,
                "csi-clone needs no snapshot class"
            );
        }

        #[test]
        fn default_is_snapshot_with_a_snapshot_class_else_copy() {
            let sc = class("x", "example.com/mystery", &[]);
            assert_eq!(
                strategy(&sc, &Default::default(), true),
                CloneStrategy::Snapshot
            );
            assert_eq!(
                strategy(&sc, &Default::default(), false),
                CloneStrategy::Copy
            );
        }

        #[test]
        fn advised_snapshot_without_snapshot_class_falls_back_to_copy() {
            let sc = class("gke", "pd.csi.storage.gke.io", &[]);
            assert_eq!(
                strategy(&sc, &Default::default(), true),
                CloneStrategy::Snapshot
            );
            assert_eq!(
                strategy(&sc, &Default::default(), false),
                CloneStrategy::Copy
            );
        }

        #[test]
        fn explicit_snapshot_is_kept_without_snapshot_class_as_upstream() {
            let sc = class(
                "x",
                "example.com/mystery",
                &[(ann::CLONE_STRATEGY, "snapshot")],
            );
            assert_eq!(
                strategy(&sc, &Default::default(), false),
                CloneStrategy::Snapshot
            );
        }
    }

    mod source_format {
        use super::*;

        #[test]
        fn table_advises_snapshots_only_with_a_snapshot_class() {
            let sc = class("ceph", RBD, &[]);
            let with = profile_status(&sc, &Default::default(), true);
            let without = profile_status(&sc, &Default::default(), false);
            assert_eq!(
                with.data_import_cron_source_format,
                Some(DataImportCronSourceFormat::Snapshot)
            );
            assert_eq!(
                without.data_import_cron_source_format,
                Some(DataImportCronSourceFormat::Pvc)
            );
        }

        #[test]
        fn spec_format_is_kept() {
            let spec = StorageProfileSpec {
                data_import_cron_source_format: Some(DataImportCronSourceFormat::Snapshot),
                ..Default::default()
            };
            let s = profile_status(&class("x", "example.com/mystery", &[]), &spec, false);
            assert_eq!(
                s.data_import_cron_source_format,
                Some(DataImportCronSourceFormat::Snapshot)
            );
        }
    }

    mod conditions {
        use super::*;

        fn at(seconds: i64) -> Time {
            Time(Timestamp::from_second(seconds).expect("a time"))
        }

        #[test]
        fn new_condition_gets_now_for_both_times() {
            let mut s = profile_status(
                &class("l", "example.com/x", &[]),
                &Default::default(),
                false,
            );
            stamp_conditions(&mut s, None, &at(100));
            let c = recognized(&s);
            assert_eq!(c.last_transition_time, Some(at(100)));
            assert_eq!(c.last_heartbeat_time, Some(at(100)));
        }

        #[test]
        fn unchanged_condition_keeps_its_times() {
            let sc = class("l", "kubernetes.io/no-provisioner", &[]);
            let mut first = profile_status(&sc, &Default::default(), false);
            stamp_conditions(&mut first, None, &at(100));
            let mut again = profile_status(&sc, &Default::default(), false);
            stamp_conditions(&mut again, Some(&first), &at(200));
            assert_eq!(first, again);
        }

        #[test]
        fn changed_message_moves_only_the_heartbeat() {
            let sc = class("l", "example.com/x", &[]);
            let mut first = profile_status(&sc, &Default::default(), false);
            stamp_conditions(&mut first, None, &at(100));
            let spec = StorageProfileSpec {
                claim_property_sets: Some(vec![set("ReadWriteOnce", VolumeMode::Block)]),
                ..Default::default()
            };
            let mut second = profile_status(&sc, &spec, false);
            stamp_conditions(&mut second, Some(&first), &at(200));
            let c = recognized(&second);
            assert_eq!(c.last_transition_time, Some(at(100)));
            assert_eq!(c.last_heartbeat_time, Some(at(200)));
        }
    }

    mod info {
        use super::*;

        fn labels_of(sc: &StorageClass, snapshots: &[SnapshotClass]) -> StorageProfileLabels {
            let status = profile_status(sc, &Default::default(), !snapshots.is_empty());
            info_labels(sc, &status, snapshots)
        }

        #[test]
        fn ceph_rbd_default_class_is_complete_rwx_smart_and_not_degraded() {
            let sc = class("ceph", RBD, &[(ann::IS_DEFAULT_CLASS, "true")]);
            assert_eq!(
                labels_of(&sc, &[]),
                StorageProfileLabels {
                    storageclass: "ceph".into(),
                    provisioner: RBD.into(),
                    complete: "true".into(),
                    default: "true".into(),
                    virtdefault: "false".into(),
                    rwx: "true".into(),
                    smartclone: "true".into(),
                    degraded: "false".into(),
                }
            );
        }

        #[test]
        fn local_class_is_complete_but_degraded() {
            let sc = class(
                "local",
                "kubernetes.io/no-provisioner",
                &[(ann::IS_DEFAULT_VIRT_CLASS, "true")],
            );
            let l = labels_of(&sc, &[]);
            assert_eq!(
                (
                    l.complete.as_str(),
                    l.virtdefault.as_str(),
                    l.rwx.as_str(),
                    l.smartclone.as_str(),
                    l.degraded.as_str()
                ),
                ("true", "true", "false", "false", "true")
            );
        }

        #[test]
        fn unknown_provisioner_is_incomplete() {
            let l = labels_of(&class("x", "example.com/x", &[]), &[]);
            assert_eq!(l.complete, "false");
        }

        #[test]
        fn object_bucket_provisioner_counts_as_complete() {
            let l = labels_of(&class("b", "openshift-storage.noobaa.io/obc", &[]), &[]);
            assert_eq!(l.complete, "true");
        }

        #[test]
        fn snapshot_strategy_is_smart_only_with_a_snapshot_class_for_the_driver() {
            let sc = class("x", "example.com/x", &[(ann::CLONE_STRATEGY, "snapshot")]);
            assert_eq!(labels_of(&sc, &[]).smartclone, "false");
            assert_eq!(
                labels_of(&sc, &[snapshot_class("s", "example.com/x", false)]).smartclone,
                "true"
            );
        }
    }
}
