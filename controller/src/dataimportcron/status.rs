//! One pass of a cron's state machine, as upstream's: from the import in progress (its
//! DataVolume's phase) and the newest digest, the next status (`currentImports`,
//! `lastImportedPVC`, the `Progressing` and `UpToDate` conditions with upstream's reasons) and
//! what to create or delete. Pure.

use cdi_crds::annotations::import;
use cdi_crds::dataimportcron::{
    DataImportCronCondition, DataImportCronConditionType, DataImportCronStatus, ImportStatus,
};
use cdi_crds::{ConditionStatus, DataImportCron, DataImportCronSourceFormat, DataVolumeSourcePvc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::imports::{BadDigest, data_volume_name};

/// What is observed of the import `status.currentImports` names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportState {
    /// Its DataVolume's phase, if the DataVolume exists.
    pub data_volume_phase: Option<String>,
    /// Its DataVolume failed in a way a retry of the same digest will not fix (phase Failed,
    /// or its Running condition False with reason `Error` or `ImagePullFailed`).
    pub failed: bool,
    /// A claim of that name exists and is Bound (an import whose DataVolume is gone).
    pub claim_bound: bool,
    /// A VolumeSnapshot of that name exists (the snapshot format): whether it is ready to use.
    pub snapshot_ready: Option<bool>,
}

/// Why the last poll failed: the condition reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollFailure {
    pub reason: String,
    pub message: String,
}

/// What the pass decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: DataImportCronStatus,
    /// Create this import (`name`, `digest`), unless it exists.
    pub create: Option<(String, String)>,
    /// Delete this failed import first, so the new digest is imported cleanly.
    pub delete_failed: Option<String>,
    /// The import in progress finished in this pass (garbage collection may run).
    pub succeeded: bool,
    /// In the snapshot format: the import to keep as a VolumeSnapshot of its claim (created
    /// unless it exists; once it is ready the DataVolume and claim are deleted).
    pub snapshot: Option<String>,
}

impl Decision {
    /// `UpToDate` is not True: the `kubevirt_cdi_dataimportcron_outdated` gauge is 1.
    pub fn outdated(&self) -> bool {
        condition(&self.status, DataImportCronConditionType::UpToDate)
            .is_none_or(|c| c.status != ConditionStatus::True)
    }
}

/// The condition of type `t` in `status`.
pub fn condition(
    status: &DataImportCronStatus,
    t: DataImportCronConditionType,
) -> Option<&DataImportCronCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == t)
}

/// The next status of `cron` given its import's `state`, the time, and a failed poll.
pub fn decide(
    cron: &DataImportCron,
    state: &ImportState,
    format: &DataImportCronSourceFormat,
    poll_failure: Option<&PollFailure>,
    now: &Time,
) -> Result<Decision, BadDigest> {
    let old = cron.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let namespace = cron.namespace().unwrap_or_default();
    let mut imports = old.current_imports.clone().unwrap_or_default();
    let mut succeeded = false;
    let mut progressing = (
        ConditionStatus::False,
        "NoImport",
        "No current import".to_owned(),
    );
    let mut phase_reason = String::new();
    match (&state.data_volume_phase, imports.first()) {
        (Some(phase), Some(_)) => match phase.as_str() {
            "Succeeded" => succeeded = true,
            "ImportScheduled" => {
                progressing = (
                    ConditionStatus::False,
                    "ImportScheduled",
                    "Import is scheduled".into(),
                )
            }
            "ImportInProgress" => {
                progressing = (
                    ConditionStatus::True,
                    "ImportProgressing",
                    "Import is progressing".into(),
                )
            }
            other => {
                phase_reason = other.to_owned();
                progressing = (
                    ConditionStatus::False,
                    "",
                    format!("Import DataVolume phase {other}"),
                );
            }
        },
        (None, Some(_)) if state.claim_bound || state.snapshot_ready.is_some() => succeeded = true,
        (_, Some(_)) => {
            imports.remove(0);
        }
        (_, None) => {}
    }
    if succeeded {
        if let Some(current) = imports.first() {
            let pvc = DataVolumeSourcePvc {
                namespace: namespace.clone(),
                name: current.data_volume_name.clone(),
            };
            if old.last_imported_pvc.as_ref() != Some(&pvc) {
                status.last_imported_pvc = Some(pvc);
                status.last_import_timestamp = Some(now.clone());
            }
        }
        progressing = (
            ConditionStatus::False,
            "NoImport",
            "No current import".into(),
        );
    }

    let desired = cron
        .annotations()
        .get(import::SOURCE_DESIRED_DIGEST)
        .filter(|d| !d.is_empty())
        .cloned();
    let snapshot_format = *format == DataImportCronSourceFormat::Snapshot;
    let snapshot = imports
        .first()
        .filter(|_| succeeded && snapshot_format)
        .map(|i| i.data_volume_name.clone());
    let mut create = None;
    let mut delete_failed = None;
    let digest_updated = desired
        .as_ref()
        .is_some_and(|d| imports.first().is_none_or(|i| &i.digest != d));
    let up_to_date = if let (true, Some(digest)) = (digest_updated, &desired) {
        if state.failed
            && let Some(current) = imports.first()
        {
            delete_failed = Some(current.data_volume_name.clone());
            imports.clear();
        }
        if succeeded || imports.is_empty() {
            let name = data_volume_name(&cron.spec.managed_data_source, digest)?;
            imports = vec![ImportStatus {
                data_volume_name: name.clone(),
                digest: digest.clone(),
            }];
            create = Some((name, digest.clone()));
        }
        (
            ConditionStatus::False,
            "Outdated",
            "Source digest updated since last import".to_owned(),
        )
    } else if succeeded {
        status.source_format = Some(format.clone());
        if snapshot_format && state.snapshot_ready != Some(true) {
            (
                ConditionStatus::False,
                "ImportProgressing",
                "Snapshot of imported data is progressing".to_owned(),
            )
        } else {
            (
                ConditionStatus::True,
                "UpToDate",
                "Latest import is up to date".to_owned(),
            )
        }
    } else if !imports.is_empty() {
        (
            ConditionStatus::False,
            "ImportProgressing",
            "Import is progressing".to_owned(),
        )
    } else {
        (
            ConditionStatus::False,
            "NoDigest",
            "No source digest".to_owned(),
        )
    };
    let up_to_date = match poll_failure {
        // Whatever was imported stays; the condition says the source could not be checked.
        Some(f) => (ConditionStatus::False, f.reason.as_str(), f.message.clone()),
        None => (up_to_date.0, up_to_date.1, up_to_date.2),
    };
    status.current_imports = (!imports.is_empty()).then_some(imports);
    let progressing_reason = if progressing.1.is_empty() {
        phase_reason.as_str()
    } else {
        progressing.1
    };
    set_condition(
        &mut status,
        DataImportCronConditionType::Progressing,
        (progressing.0, progressing_reason, progressing.2),
        now,
    );
    set_condition(
        &mut status,
        DataImportCronConditionType::UpToDate,
        up_to_date,
        now,
    );
    if let Some(last) = cron.annotations().get(import::LAST_CRON_TIME)
        && let Ok(t) = last.parse()
    {
        status.last_execution_timestamp = Some(Time(t));
    }
    Ok(Decision {
        status,
        create,
        delete_failed,
        succeeded,
        snapshot,
    })
}

/// Sets condition `t`: the transition time changes with the status, the heartbeat with
/// anything, as upstream's `updateConditionState`.
fn set_condition(
    status: &mut DataImportCronStatus,
    t: DataImportCronConditionType,
    (value, reason, message): (ConditionStatus, &str, String),
    now: &Time,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let index = match conditions.iter().position(|c| c.type_ == t) {
        Some(i) => i,
        None => {
            conditions.push(DataImportCronCondition {
                type_: t,
                status: ConditionStatus::Unknown,
                last_transition_time: None,
                last_heartbeat_time: None,
                reason: None,
                message: None,
            });
            conditions.len() - 1
        }
    };
    let c = &mut conditions[index];
    let changed_status = c.status != value;
    if changed_status
        || c.reason.as_deref() != Some(reason)
        || c.message.as_deref() != Some(message.as_str())
    {
        if changed_status {
            c.status = value;
            c.last_transition_time = Some(now.clone());
        }
        c.last_heartbeat_time = Some(now.clone());
        c.reason = Some(reason.to_owned());
        c.message = Some(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    const PVC: DataImportCronSourceFormat = DataImportCronSourceFormat::Pvc;
    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn cron(desired: Option<&str>, imports: &[(&str, &str)], last: Option<&str>) -> DataImportCron {
        let mut annotations = serde_json::Map::new();
        if let Some(d) = desired {
            annotations.insert(import::SOURCE_DESIRED_DIGEST.into(), json!(d));
        }
        annotations.insert(import::LAST_CRON_TIME.into(), json!("2026-12-07T15:00:00Z"));
        let current: Vec<_> = imports
            .iter()
            .map(|(n, d)| json!({"DataVolumeName": n, "Digest": d}))
            .collect();
        let mut status = json!({});
        if !current.is_empty() {
            status["currentImports"] = json!(current);
        }
        if let Some(l) = last {
            status["lastImportedPVC"] = json!({"namespace": "golden", "name": l});
        }
        serde_json::from_value(json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataImportCron",
            "metadata": {"name": "c", "namespace": "golden", "annotations": annotations},
            "spec": {"template": {"spec": {"source": {"registry": {"url": "docker://r/x:1"}}}},
                     "schedule": "* * * * *", "managedDataSource": "fedora"},
            "status": status,
        }))
        .expect("cron")
    }

    fn dv(phase: &str) -> ImportState {
        ImportState {
            data_volume_phase: Some(phase.into()),
            ..ImportState::default()
        }
    }

    fn reasons(d: &Decision) -> (String, String) {
        let r = |t| {
            condition(&d.status, t)
                .and_then(|c| c.reason.clone())
                .unwrap_or_default()
        };
        (
            r(DataImportCronConditionType::Progressing),
            r(DataImportCronConditionType::UpToDate),
        )
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_800_000_000).expect("time"))
    }

    /// What a case is, the cron, its import, the (Progressing, UpToDate) reasons expected,
    /// and the import it should create.
    type Case = (
        &'static str,
        DataImportCron,
        ImportState,
        (&'static str, &'static str),
        Option<&'static str>,
    );

    #[test]
    fn the_condition_table_follows_upstream() {
        let n1 = "fedora-111111111111";
        let n2 = "fedora-222222222222";
        let table: Vec<Case> = vec![
            (
                "nothing polled yet",
                cron(None, &[], None),
                ImportState::default(),
                ("NoImport", "NoDigest"),
                None,
            ),
            (
                "first digest: import it",
                cron(Some(D1), &[], None),
                ImportState::default(),
                ("NoImport", "Outdated"),
                Some(n1),
            ),
            (
                "scheduled",
                cron(Some(D1), &[(n1, D1)], None),
                dv("ImportScheduled"),
                ("ImportScheduled", "ImportProgressing"),
                None,
            ),
            (
                "in progress",
                cron(Some(D1), &[(n1, D1)], None),
                dv("ImportInProgress"),
                ("ImportProgressing", "ImportProgressing"),
                None,
            ),
            (
                "another phase is the reason",
                cron(Some(D1), &[(n1, D1)], None),
                dv("Pending"),
                ("Pending", "ImportProgressing"),
                None,
            ),
            (
                "done",
                cron(Some(D1), &[(n1, D1)], None),
                dv("Succeeded"),
                ("NoImport", "UpToDate"),
                None,
            ),
            (
                "done and moved: the next import",
                cron(Some(D2), &[(n1, D1)], Some(n1)),
                dv("Succeeded"),
                ("NoImport", "Outdated"),
                Some(n2),
            ),
            (
                "moved while importing: wait for it",
                cron(Some(D2), &[(n1, D1)], None),
                dv("ImportInProgress"),
                ("ImportProgressing", "Outdated"),
                None,
            ),
            (
                "import gone: start again",
                cron(Some(D1), &[(n1, D1)], None),
                ImportState::default(),
                ("NoImport", "Outdated"),
                Some(n1),
            ),
            (
                "DataVolume gone, claim bound: done",
                cron(Some(D1), &[(n1, D1)], None),
                ImportState {
                    claim_bound: true,
                    ..ImportState::default()
                },
                ("NoImport", "UpToDate"),
                None,
            ),
        ];
        for (what, c, state, (progressing, up_to_date), create) in table {
            let d = decide(&c, &state, &PVC, None, &now()).expect(what);
            assert_eq!(
                reasons(&d),
                (progressing.into(), up_to_date.into()),
                "{what}"
            );
            assert_eq!(d.create.as_ref().map(|(n, _)| n.as_str()), create, "{what}");
        }
    }

    #[test]
    fn success_records_the_import_and_keeps_its_time_after() {
        let c = cron(Some(D1), &[("fedora-111111111111", D1)], None);
        let d = decide(&c, &dv("Succeeded"), &PVC, None, &now()).expect("decides");
        assert!(d.succeeded && !d.outdated());
        let pvc = d.status.last_imported_pvc.clone().expect("last import");
        assert_eq!(pvc.name, "fedora-111111111111");
        assert_eq!(d.status.last_import_timestamp, Some(now()));
        assert_eq!(
            d.status.source_format,
            Some(DataImportCronSourceFormat::Pvc)
        );
        assert_eq!(
            d.status
                .last_execution_timestamp
                .as_ref()
                .map(|t| t.0.to_string()),
            Some("2026-12-07T15:00:00Z".into())
        );
        // The next pass changes nothing: no new times, no writes.
        let mut again = c.clone();
        again.status = Some(d.status.clone());
        let later = Time(Timestamp::from_second(1_800_000_600).expect("time"));
        let d2 = decide(&again, &dv("Succeeded"), &PVC, None, &later).expect("decides");
        assert_eq!(d2.status, d.status);
    }

    #[test]
    fn in_the_snapshot_format_the_import_is_up_to_date_once_its_snapshot_is_ready() {
        let snap = DataImportCronSourceFormat::Snapshot;
        let c = cron(Some(D1), &[("fedora-111111111111", D1)], None);
        let d = decide(&c, &dv("Succeeded"), &snap, None, &now()).expect("decides");
        assert_eq!(d.snapshot.as_deref(), Some("fedora-111111111111"));
        assert_eq!(reasons(&d), ("NoImport".into(), "ImportProgressing".into()));
        assert_eq!(d.status.source_format, Some(snap.clone()));
        // The DataVolume and claim are gone once the snapshot is ready: still the import.
        let state = ImportState {
            snapshot_ready: Some(true),
            ..ImportState::default()
        };
        let d = decide(&c, &state, &snap, None, &now()).expect("decides");
        assert!(d.succeeded && !d.outdated());
        assert_eq!(reasons(&d), ("NoImport".into(), "UpToDate".into()));
        assert_eq!(
            d.status.last_imported_pvc.map(|p| p.name).as_deref(),
            Some("fedora-111111111111")
        );
    }

    #[test]
    fn a_failed_import_is_replaced_when_the_digest_moves() {
        let c = cron(Some(D2), &[("fedora-111111111111", D1)], None);
        let state = ImportState {
            data_volume_phase: Some("ImportInProgress".into()),
            failed: true,
            claim_bound: false,
            snapshot_ready: None,
        };
        let d = decide(&c, &state, &PVC, None, &now()).expect("decides");
        assert_eq!(d.delete_failed.as_deref(), Some("fedora-111111111111"));
        assert_eq!(
            d.create.map(|(n, _)| n).as_deref(),
            Some("fedora-222222222222")
        );
    }

    #[test]
    fn a_failed_poll_keeps_the_last_import_and_says_why() {
        let c = cron(
            Some(D1),
            &[("fedora-111111111111", D1)],
            Some("fedora-111111111111"),
        );
        let failure = PollFailure {
            reason: "RegistryUnreachable".into(),
            message: "registry r could not be reached".into(),
        };
        let d = decide(&c, &dv("Succeeded"), &PVC, Some(&failure), &now()).expect("decides");
        assert!(d.outdated());
        assert_eq!(reasons(&d).1, "RegistryUnreachable");
        assert_eq!(
            d.status.last_imported_pvc.map(|p| p.name).as_deref(),
            Some("fedora-111111111111")
        );
        assert!(d.create.is_none() && d.delete_failed.is_none());
    }
}
