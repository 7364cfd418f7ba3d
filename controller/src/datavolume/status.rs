//! The DataVolume's status from what is observed: the claim's phase and the worker state the
//! worker controller wrote onto the claim's annotations. Pure, so every transition is tested
//! without an API server; also decides which events a transition emits.

use std::collections::BTreeMap;

use cdi_crds::annotations::{clone, condition, import, pod};
use cdi_crds::datavolume::PROGRESS_NOT_AVAILABLE;
use cdi_crds::{
    ConditionStatus, DataVolume, DataVolumeCondition, DataVolumeConditionType, DataVolumePhase,
    DataVolumeStatus,
};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::PlanError;
use crate::context::EventSpec;
use crate::worker::WorkerKind;

/// Progress written once the data is in place.
pub const PROGRESS_DONE: &str = "100.0%";

/// What the status is computed from.
#[derive(Debug)]
pub struct Observed<'a> {
    pub dv: &'a DataVolume,
    /// The claim named like the DataVolume, if it exists and belongs to it.
    pub claim: Option<&'a PersistentVolumeClaim>,
    /// A claim with that name exists but belongs to someone else.
    pub foreign_claim: bool,
    /// Why the claim could not be rendered, if it could not.
    pub plan_error: Option<&'a PlanError>,
    /// The worker kind, when the DataVolume has a supported source.
    pub transfer: Option<WorkerKind>,
    /// The claim waits for a consumer before binding (WaitForFirstConsumer class, the feature
    /// gate on, no immediate-binding annotation).
    pub wait_for_first_consumer: bool,
    /// The phase of a clone that has no claim yet (its source being snapshotted).
    pub clone_phase: Option<DataVolumePhase>,
    pub now: Time,
}

/// The new status and the events the change from the old one emits.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub status: DataVolumeStatus,
    pub events: Vec<EventSpec>,
}

/// Computes the status of `o.dv` and the events for how it changed.
pub fn compute(o: &Observed) -> Outcome {
    let name = o.dv.metadata.name.clone().unwrap_or_default();
    let old = o.dv.status.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let ann = o
        .claim
        .and_then(|c| c.metadata.annotations.as_ref())
        .unwrap_or(&empty);
    let claim_phase = o
        .claim
        .and_then(|c| c.status.as_ref())
        .and_then(|s| s.phase.as_deref());

    // Bound condition.
    let bound = match (o.plan_error, o.claim, claim_phase) {
        (Some(e), None, _) => cond(ConditionStatus::False, e.reason, &e.message),
        (None, None, _) if o.foreign_claim => cond(
            ConditionStatus::False,
            "ErrResourceExists",
            &format!("Resource {name} already exists and is not managed by DataVolume"),
        ),
        (_, None, _) => cond(ConditionStatus::False, "NotFound", "No PVC found"),
        (_, Some(_), Some("Bound")) => {
            cond(ConditionStatus::True, "Bound", &format!("PVC {name} Bound"))
        }
        (_, Some(_), Some("Lost")) => cond(
            ConditionStatus::False,
            "ClaimLost",
            &format!("PVC {name} lost its volume"),
        ),
        (_, Some(_), _) => cond(
            ConditionStatus::False,
            "Pending",
            &format!("PVC {name} Pending"),
        ),
    };

    // Running condition, as the worker controller recorded it.
    let running = match ann.get(condition::RUNNING).map(String::as_str) {
        Some("true") => cond(
            ConditionStatus::True,
            ann.get(condition::RUNNING_REASON)
                .map_or("", String::as_str),
            ann.get(condition::RUNNING_MESSAGE)
                .map_or("", String::as_str),
        ),
        _ => cond(
            ConditionStatus::False,
            ann.get(condition::RUNNING_REASON)
                .map_or("", String::as_str),
            ann.get(condition::RUNNING_MESSAGE)
                .map_or("", String::as_str),
        ),
    };

    let pod_phase = ann.get(pod::PHASE).map(String::as_str).unwrap_or("");
    let fatal = ann.get(import::FATAL_ERROR).is_some_and(|v| v == "true");
    // Before the claim names its worker (an invalid spec), it reads as an import.
    let kind = o.transfer.unwrap_or(WorkerKind::Importer);
    let ready_pod = ann.get(pod::READY).is_some_and(|v| v == "true");
    // A claim the storage fills itself (CSI clone, restore from a snapshot) is done once bound.
    let storage_filled = (!ann.contains_key(clone::CLONE_REQUEST))
        .then(|| ann.get(clone::CLONE_TYPE).map(String::as_str))
        .flatten()
        .and_then(|t| match t {
            "csi-clone" => Some(DataVolumePhase::CsiCloneInProgress),
            "snapshot" => Some(DataVolumePhase::CloneFromSnapshotSourceInProgress),
            _ => None,
        });
    let phase = match (o.claim, claim_phase) {
        (None, _) if o.plan_error.is_some_and(|e| e.terminal) => DataVolumePhase::Failed,
        (None, _) => o.clone_phase.clone().unwrap_or(DataVolumePhase::Pending),
        (Some(_), Some("Lost")) => DataVolumePhase::Failed,
        _ if fatal => DataVolumePhase::Failed,
        (Some(_), _) if pod_phase == "Succeeded" => DataVolumePhase::Succeeded,
        (Some(_), Some("Bound")) if storage_filled.is_some() => DataVolumePhase::Succeeded,
        (Some(_), _) if o.wait_for_first_consumer && storage_filled.is_some() => {
            DataVolumePhase::WaitForFirstConsumer
        }
        (Some(_), _) if let Some(in_progress) = storage_filled.clone() => in_progress,
        (Some(_), Some("Bound")) => match pod_phase {
            "" => DataVolumePhase::PvcBound,
            "Pending" => kind.scheduled_phase(),
            "Running" => kind.running_phase(ready_pod),
            "Failed" => DataVolumePhase::Failed,
            _ => DataVolumePhase::Unknown,
        },
        (Some(_), _) if o.wait_for_first_consumer => DataVolumePhase::WaitForFirstConsumer,
        // Immediate binding on a WaitForFirstConsumer class: the worker pod is what gets the
        // claim bound.
        (Some(_), _) if pod_phase == "Pending" => kind.scheduled_phase(),
        (Some(_), _) => DataVolumePhase::Pending,
    };

    let ready = if phase == DataVolumePhase::Succeeded {
        cond(ConditionStatus::True, "", "")
    } else if phase == DataVolumePhase::Unknown {
        cond(ConditionStatus::Unknown, "", "")
    } else if running.status == ConditionStatus::True {
        cond(ConditionStatus::False, "TransferRunning", "")
    } else {
        cond(ConditionStatus::False, "", "")
    };

    let progress = if phase == DataVolumePhase::Succeeded {
        PROGRESS_DONE.to_owned()
    } else {
        old.progress
            .clone()
            .filter(|_| !matches!(phase, DataVolumePhase::Failed))
            .unwrap_or_else(|| PROGRESS_NOT_AVAILABLE.to_owned())
    };
    let restart_count = ann
        .get(pod::RESTARTS)
        .and_then(|r| r.parse().ok())
        .or(old.restart_count)
        .unwrap_or(0);

    let old_conditions = old.conditions.clone().unwrap_or_default();
    let conditions = vec![
        merge(
            &old_conditions,
            DataVolumeConditionType::Bound,
            bound,
            &o.now,
        ),
        merge(
            &old_conditions,
            DataVolumeConditionType::Running,
            running,
            &o.now,
        ),
        merge(
            &old_conditions,
            DataVolumeConditionType::Ready,
            ready,
            &o.now,
        ),
    ];

    let status = DataVolumeStatus {
        claim_name: o.claim.map(|_| name.clone()).or(old.claim_name.clone()),
        phase: Some(phase),
        progress: Some(progress),
        restart_count: Some(restart_count),
        conditions: Some(conditions),
    };
    let events = events(&name, &old, &status, kind, o.plan_error);
    Outcome { status, events }
}

/// A condition's status, reason and message (type and times are added by [`merge`]).
struct Cond {
    status: ConditionStatus,
    reason: String,
    message: String,
}

fn cond(status: ConditionStatus, reason: &str, message: &str) -> Cond {
    Cond {
        status,
        reason: reason.into(),
        message: message.into(),
    }
}

/// The condition of `type_`, keeping its times when nothing about it changed (so an unchanged
/// DataVolume is not written again).
fn merge(
    old: &[DataVolumeCondition],
    type_: DataVolumeConditionType,
    new: Cond,
    now: &Time,
) -> DataVolumeCondition {
    let previous = old.iter().find(|c| c.type_ == type_);
    let unchanged = previous.is_some_and(|p| {
        p.status == new.status
            && p.reason.as_deref().unwrap_or("") == new.reason
            && p.message.as_deref().unwrap_or("") == new.message
    });
    let transition = match previous {
        Some(p) if p.status == new.status => p.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    let heartbeat = match previous {
        Some(p) if unchanged => p.last_heartbeat_time.clone(),
        _ => Some(now.clone()),
    };
    DataVolumeCondition {
        type_,
        status: new.status,
        last_transition_time: transition,
        last_heartbeat_time: heartbeat,
        reason: Some(new.reason).filter(|r| !r.is_empty()),
        message: Some(new.message).filter(|m| !m.is_empty()),
    }
}

fn condition_of(
    status: &DataVolumeStatus,
    type_: DataVolumeConditionType,
) -> Option<&DataVolumeCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// Reasons a worker pod gives while it is simply on its way (scheduling, pulling, starting):
/// they show in the Running condition but are no reason for a warning event.
const NOT_AN_ERROR: &[&str] = &["Pending", "ContainerCreating", "PodInitializing"];

/// Events for the change from `old` to `new`, with upstream's reason strings.
fn events(
    name: &str,
    old: &DataVolumeStatus,
    new: &DataVolumeStatus,
    kind: WorkerKind,
    plan_error: Option<&PlanError>,
) -> Vec<EventSpec> {
    let mut out = Vec::new();
    let old_bound = condition_of(old, DataVolumeConditionType::Bound);
    let new_bound = condition_of(new, DataVolumeConditionType::Bound);
    let bound_changed = |c: Option<&DataVolumeCondition>| {
        (c.map(|c| (&c.status, &c.message))) != old_bound.map(|c| (&c.status, &c.message))
    };
    if let Some(b) = new_bound.filter(|b| bound_changed(Some(b))) {
        let message = b.message.clone().unwrap_or_default();
        match (&b.status, plan_error) {
            (ConditionStatus::True, _) => out.push(EventSpec::normal("Bound", message)),
            (_, Some(e)) => out.push(EventSpec::warning(e.reason, message)),
            _ => {}
        }
    }
    let old_running = condition_of(old, DataVolumeConditionType::Running);
    let new_running = condition_of(new, DataVolumeConditionType::Running);
    if let Some(r) = new_running
        && r.status == ConditionStatus::False
        && r.reason
            .as_deref()
            .is_some_and(|x| x != "Completed" && !NOT_AN_ERROR.contains(&x))
        && old_running.map(|c| (&c.reason, &c.message)) != Some((&r.reason, &r.message))
    {
        // A worker error: its own reason, as upstream emits condition reasons.
        out.push(EventSpec::warning(
            r.reason.as_deref().unwrap_or("Error"),
            r.message.clone().unwrap_or_default(),
        ));
    }

    let (Some(phase), false) = (&new.phase, new.phase == old.phase) else {
        return out;
    };
    let failure = || {
        plan_error
            .filter(|e| e.terminal)
            .map(|e| e.message.clone())
            .or_else(|| new_running.and_then(|r| r.message.clone()))
            .unwrap_or_else(|| format!("Transfer into {name} failed"))
    };
    let event = match phase {
        DataVolumePhase::Pending => {
            Some(EventSpec::normal("Pending", format!("PVC {name} Pending")))
        }
        DataVolumePhase::ImportScheduled => Some(EventSpec::normal(
            "ImportScheduled",
            format!("Import into {name} scheduled"),
        )),
        DataVolumePhase::ImportInProgress => Some(EventSpec::normal(
            "ImportInProgress",
            format!("Import into {name} in progress"),
        )),
        DataVolumePhase::UploadScheduled => Some(EventSpec::normal(
            "UploadScheduled",
            format!("Upload into {name} scheduled"),
        )),
        DataVolumePhase::UploadReady => Some(EventSpec::normal(
            "UploadReady",
            format!("Upload into {name} ready"),
        )),
        DataVolumePhase::CloneScheduled => Some(EventSpec::normal(
            "CloneScheduled",
            format!("Cloning into {name} scheduled"),
        )),
        DataVolumePhase::CloneInProgress => Some(EventSpec::normal(
            "CloneInProgress",
            format!("Cloning into {name} in progress"),
        )),
        DataVolumePhase::CsiCloneInProgress => Some(EventSpec::normal(
            "CSICloneInProgress",
            format!("CSI volume clone into {name} in progress"),
        )),
        DataVolumePhase::SnapshotForSmartCloneInProgress => Some(EventSpec::normal(
            "SnapshotForSmartCloneInProgress",
            format!("Snapshotting the source of {name}"),
        )),
        DataVolumePhase::CloneFromSnapshotSourceInProgress => Some(EventSpec::normal(
            "CloneFromSnapshotSourceInProgress",
            format!("Restoring {name} from a snapshot"),
        )),
        DataVolumePhase::WaitForFirstConsumer => Some(EventSpec::normal(
            "WaitForFirstConsumer",
            format!("PVC {name} waits for its first consumer to be scheduled"),
        )),
        DataVolumePhase::Succeeded => Some(kind.dv_succeeded(name)),
        DataVolumePhase::Failed => Some(kind.dv_failed(failure())),
        _ => None,
    };
    out.extend(event);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::dv;
    use k8s_openapi::api::core::v1::PersistentVolumeClaimStatus;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn claim(phase: &str, annotations: &[(&str, &str)]) -> PersistentVolumeClaim {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = Some("disk".into());
        c.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        c.status = Some(PersistentVolumeClaimStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        c
    }

    fn observe(
        dv: &DataVolume,
        claim: Option<&PersistentVolumeClaim>,
        transfer: WorkerKind,
    ) -> Outcome {
        compute(&Observed {
            dv,
            claim,
            foreign_claim: false,
            plan_error: None,
            transfer: Some(transfer),
            wait_for_first_consumer: false,
            clone_phase: None,
            now: Time(Timestamp::now()),
        })
    }

    fn condition(o: &Outcome, t: DataVolumeConditionType) -> &DataVolumeCondition {
        o.status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .expect("condition present")
    }

    fn http_dv() -> DataVolume {
        dv("disk", json!({"http": {"url": "http://x/disk.img"}}))
    }

    #[test]
    fn import_phases_follow_the_pod_phase_annotation() {
        let d = http_dv();
        for (pod_phase, expected) in [
            ("", DataVolumePhase::PvcBound),
            ("Pending", DataVolumePhase::ImportScheduled),
            ("Running", DataVolumePhase::ImportInProgress),
            ("Succeeded", DataVolumePhase::Succeeded),
        ] {
            let c = claim("Bound", &[(pod::PHASE, pod_phase)]);
            assert_eq!(
                observe(&d, Some(&c), WorkerKind::Importer).status.phase,
                Some(expected),
                "{pod_phase:?}"
            );
        }
    }

    #[test]
    fn missing_claim_is_pending_with_no_pvc_found() {
        let o = observe(&http_dv(), None, WorkerKind::Importer);
        assert_eq!(o.status.phase, Some(DataVolumePhase::Pending));
        let bound = condition(&o, DataVolumeConditionType::Bound);
        assert_eq!(bound.reason.as_deref(), Some("NotFound"));
        assert_eq!(bound.message.as_deref(), Some("No PVC found"));
        assert_eq!(o.status.progress.as_deref(), Some("N/A"));
    }

    #[test]
    fn succeeded_import_has_upstreams_final_status_and_events() {
        let mut d = http_dv();
        d.status = Some(DataVolumeStatus {
            phase: Some(DataVolumePhase::ImportInProgress),
            progress: Some("87.00%".into()),
            ..Default::default()
        });
        let c = claim(
            "Bound",
            &[
                (pod::PHASE, "Succeeded"),
                (condition::RUNNING, "false"),
                (condition::RUNNING_REASON, "Completed"),
                (condition::RUNNING_MESSAGE, "Import Complete"),
                (pod::RESTARTS, "0"),
            ],
        );
        let o = observe(&d, Some(&c), WorkerKind::Importer);
        assert_eq!(o.status.phase, Some(DataVolumePhase::Succeeded));
        assert_eq!(o.status.progress.as_deref(), Some("100.0%"));
        assert_eq!(o.status.claim_name.as_deref(), Some("disk"));
        assert_eq!(o.status.restart_count, Some(0));
        let bound = condition(&o, DataVolumeConditionType::Bound);
        assert_eq!(
            (
                bound.status.as_str(),
                bound.reason.as_deref(),
                bound.message.as_deref()
            ),
            ("True", Some("Bound"), Some("PVC disk Bound"))
        );
        let ready = condition(&o, DataVolumeConditionType::Ready);
        assert_eq!(ready.status, ConditionStatus::True);
        let running = condition(&o, DataVolumeConditionType::Running);
        assert_eq!(
            (
                running.status.as_str(),
                running.reason.as_deref(),
                running.message.as_deref()
            ),
            ("False", Some("Completed"), Some("Import Complete"))
        );
        assert_eq!(
            o.events,
            vec![
                EventSpec::normal("Bound", "PVC disk Bound"),
                EventSpec::normal("ImportSucceeded", "Successfully imported into PVC disk"),
            ]
        );
    }

    #[test]
    fn fatal_error_fails_the_dv_with_the_workers_reason() {
        let mut d = http_dv();
        d.status = Some(DataVolumeStatus {
            phase: Some(DataVolumePhase::ImportInProgress),
            ..Default::default()
        });
        let c = claim(
            "Bound",
            &[
                (pod::PHASE, "Failed"),
                (import::FATAL_ERROR, "true"),
                (condition::RUNNING, "false"),
                (condition::RUNNING_REASON, "ChecksumError"),
                (condition::RUNNING_MESSAGE, "checksum mismatch"),
            ],
        );
        let o = observe(&d, Some(&c), WorkerKind::Importer);
        assert_eq!(o.status.phase, Some(DataVolumePhase::Failed));
        assert!(
            o.events
                .contains(&EventSpec::warning("ChecksumError", "checksum mismatch"))
        );
        assert!(
            o.events
                .contains(&EventSpec::warning("ImportFailed", "checksum mismatch"))
        );
    }

    #[test]
    fn a_pod_on_its_way_gives_no_warning_but_an_image_pull_failure_does() {
        let d = http_dv();
        for (reason, warned) in [
            ("Pending", false),
            ("ContainerCreating", false),
            ("PodInitializing", false),
            ("ErrImagePull", true),
            ("CrashLoopBackOff", true),
        ] {
            let c = claim(
                "Bound",
                &[
                    (pod::PHASE, "Pending"),
                    (condition::RUNNING, "false"),
                    (condition::RUNNING_REASON, reason),
                ],
            );
            let o = observe(&d, Some(&c), WorkerKind::Importer);
            let warnings: Vec<_> = o.events.iter().filter(|e| e.reason == reason).collect();
            assert_eq!(!warnings.is_empty(), warned, "{reason}: {:?}", o.events);
        }
    }

    #[test]
    fn restarts_are_copied_and_running_true_means_transfer_running() {
        let c = claim(
            "Bound",
            &[
                (pod::PHASE, "Running"),
                (pod::RESTARTS, "3"),
                (condition::RUNNING, "true"),
            ],
        );
        let o = observe(&http_dv(), Some(&c), WorkerKind::Importer);
        assert_eq!(o.status.restart_count, Some(3));
        let ready = condition(&o, DataVolumeConditionType::Ready);
        assert_eq!(ready.reason.as_deref(), Some("TransferRunning"));
    }

    #[test]
    fn upload_phases_wait_for_readiness() {
        let d = dv("up", json!({"upload": {}}));
        let scheduled = claim("Bound", &[(pod::PHASE, "Running"), (pod::READY, "false")]);
        assert_eq!(
            observe(&d, Some(&scheduled), WorkerKind::UploadServer)
                .status
                .phase,
            Some(DataVolumePhase::UploadScheduled)
        );
        let ready = claim("Bound", &[(pod::PHASE, "Running"), (pod::READY, "true")]);
        assert_eq!(
            observe(&d, Some(&ready), WorkerKind::UploadServer)
                .status
                .phase,
            Some(DataVolumePhase::UploadReady)
        );
    }

    #[test]
    fn pending_claim_on_wffc_class_waits_for_first_consumer() {
        let d = http_dv();
        let c = claim("Pending", &[]);
        let o = compute(&Observed {
            dv: &d,
            claim: Some(&c),
            foreign_claim: false,
            plan_error: None,
            transfer: Some(WorkerKind::Importer),
            wait_for_first_consumer: true,
            clone_phase: None,
            now: Time(Timestamp::now()),
        });
        assert_eq!(o.status.phase, Some(DataVolumePhase::WaitForFirstConsumer));
        assert_eq!(
            condition(&o, DataVolumeConditionType::Bound)
                .reason
                .as_deref(),
            Some("Pending")
        );
    }

    #[test]
    fn lost_claim_fails() {
        let c = claim("Lost", &[]);
        let o = observe(&http_dv(), Some(&c), WorkerKind::Importer);
        assert_eq!(o.status.phase, Some(DataVolumePhase::Failed));
        assert_eq!(
            condition(&o, DataVolumeConditionType::Bound)
                .reason
                .as_deref(),
            Some("ClaimLost")
        );
    }

    #[test]
    fn plan_error_is_pending_with_a_warning_once() {
        let d = http_dv();
        let err = PlanError::invalid("no accessMode specified in StorageProfile local");
        let observed = |d: &DataVolume| {
            compute(&Observed {
                dv: d,
                claim: None,
                foreign_claim: false,
                plan_error: Some(&err),
                transfer: Some(WorkerKind::Importer),
                wait_for_first_consumer: false,
                clone_phase: None,
                now: Time(Timestamp::now()),
            })
        };
        let first = observed(&d);
        assert_eq!(first.status.phase, Some(DataVolumePhase::Pending));
        assert!(
            first
                .events
                .contains(&EventSpec::warning("ErrClaimNotValid", err.message.clone()))
        );
        let mut again = d.clone();
        again.status = Some(first.status.clone());
        let second = observed(&again);
        assert!(second.events.is_empty(), "no repeat: {:?}", second.events);
        assert_eq!(second.status, first.status, "nothing to write again");
    }

    #[test]
    fn foreign_claim_is_reported() {
        let d = http_dv();
        let o = compute(&Observed {
            dv: &d,
            claim: None,
            foreign_claim: true,
            plan_error: None,
            transfer: Some(WorkerKind::Importer),
            wait_for_first_consumer: false,
            clone_phase: None,
            now: Time(Timestamp::now()),
        });
        assert_eq!(
            condition(&o, DataVolumeConditionType::Bound)
                .reason
                .as_deref(),
            Some("ErrResourceExists")
        );
    }

    #[test]
    fn clones_the_storage_fills_succeed_once_bound() {
        use DataVolumePhase as P;
        let d = http_dv();
        let table = [
            ("csi-clone", "Pending", P::CsiCloneInProgress),
            ("csi-clone", "Bound", P::Succeeded),
            ("snapshot", "Pending", P::CloneFromSnapshotSourceInProgress),
            ("snapshot", "Bound", P::Succeeded),
        ];
        for (clone_type, claim_phase, want) in table {
            let c = claim(claim_phase, &[(clone::CLONE_TYPE, clone_type)]);
            let o = observe(&d, Some(&c), WorkerKind::CloneTarget);
            assert_eq!(
                o.status.phase,
                Some(want.clone()),
                "{clone_type} {claim_phase}"
            );
            if want == P::Succeeded {
                assert!(o.events.iter().any(|e| e.reason == "CloneSucceeded"));
                assert_eq!(o.status.progress.as_deref(), Some(PROGRESS_DONE));
            }
        }
        // A host-assisted copy is done when its worker is, not when its claim binds.
        let copy = claim(
            "Bound",
            &[
                (clone::CLONE_TYPE, "copy"),
                (clone::CLONE_REQUEST, "golden/fedora"),
                (pod::PHASE, "Running"),
                (pod::READY, "true"),
            ],
        );
        let o = observe(&d, Some(&copy), WorkerKind::CloneTarget);
        assert_eq!(o.status.phase, Some(P::CloneInProgress));
        assert!(o.events.iter().any(|e| e.reason == "CloneInProgress"));
    }

    #[test]
    fn a_clone_before_its_claim_shows_its_own_phase_or_fails_when_denied() {
        let d = http_dv();
        let observed = |clone_phase, plan_error| {
            compute(&Observed {
                dv: &d,
                claim: None,
                foreign_claim: false,
                plan_error,
                transfer: Some(WorkerKind::CloneTarget),
                wait_for_first_consumer: false,
                clone_phase,
                now: Time(Timestamp::now()),
            })
        };
        let o = observed(Some(DataVolumePhase::SnapshotForSmartCloneInProgress), None);
        assert_eq!(
            o.status.phase,
            Some(DataVolumePhase::SnapshotForSmartCloneInProgress)
        );
        assert!(
            o.events
                .iter()
                .any(|e| e.reason == "SnapshotForSmartCloneInProgress")
        );

        let denied = PlanError::failed("ErrUnableToClone", "cloning is not authorized: no token");
        let o = observed(None, Some(&denied));
        assert_eq!(o.status.phase, Some(DataVolumePhase::Failed));
        let failed = o
            .events
            .iter()
            .find(|e| e.reason == "CloneFailed")
            .expect("a failure event");
        assert!(failed.message.contains("no token"), "{}", failed.message);
    }
}
