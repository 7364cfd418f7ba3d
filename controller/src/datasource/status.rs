//! A DataSource's status from what is observed, as upstream computes it (reference §1.6):
//! which claim or snapshot it resolves to, and whether that is ready to clone. Pure.

use cdi_crds::datasource::{DataSourceCondition, DataSourceConditionType};
use cdi_crds::{ConditionStatus, DataSource, DataSourceSource, DataSourceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What a DataSource points at, once references to other DataSources are followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Pvc { namespace: String, name: String },
    Snapshot { namespace: String, name: String },
}

/// Why a DataSource does not resolve: upstream's reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    pub reason: &'static str,
    pub message: String,
}

fn unresolved(reason: &'static str, message: String) -> Unresolved {
    Unresolved { reason, message }
}

/// The claim or snapshot `source` (of a DataSource in `namespace`) names directly.
fn direct(source: &DataSourceSource, namespace: &str) -> Option<(Target, DataSourceSource)> {
    let or_own = |ns: &str| {
        if ns.is_empty() {
            namespace.to_owned()
        } else {
            ns.to_owned()
        }
    };
    if let Some(p) = &source.pvc {
        let target = Target::Pvc {
            namespace: or_own(&p.namespace),
            name: p.name.clone(),
        };
        return Some((
            target,
            DataSourceSource {
                pvc: source.pvc.clone(),
                ..Default::default()
            },
        ));
    }
    source.snapshot.as_ref().map(|s| {
        (
            Target::Snapshot {
                namespace: or_own(&s.namespace),
                name: s.name.clone(),
            },
            DataSourceSource {
                snapshot: source.snapshot.clone(),
                ..Default::default()
            },
        )
    })
}

/// What `ds` resolves to: its own claim or snapshot, or the one of the DataSource it refers
/// to (`lookup` finds DataSources by namespace and name), which must be in the same namespace
/// and name a claim or snapshot itself (one level deep, as upstream).
pub fn resolve(
    ds: &DataSource,
    lookup: impl Fn(&str, &str) -> Option<DataSource>,
) -> Result<(Target, DataSourceSource), Unresolved> {
    let namespace = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let source = &ds.spec.source;
    if let Some(found) = direct(source, &namespace) {
        return Ok(found);
    }
    let Some(reference) = &source.data_source else {
        return Err(unresolved(
            "NoSource",
            "spec.source names no PVC, snapshot or DataSource".into(),
        ));
    };
    let ref_ns = if reference.namespace.is_empty() {
        namespace.clone()
    } else {
        reference.namespace.clone()
    };
    if ref_ns != namespace {
        return Err(unresolved(
            "CrossNamespaceReference",
            format!(
                "DataSource {namespace}/{name} refers to DataSource {ref_ns}/{}, in another \
                 namespace; a DataSource may only refer to one in its own namespace",
                reference.name
            ),
        ));
    }
    if reference.name == name {
        return Err(unresolved(
            "SelfReference",
            format!("DataSource {namespace}/{name} refers to itself"),
        ));
    }
    let Some(referenced) = lookup(&ref_ns, &reference.name) else {
        return Err(unresolved(
            "NotFound",
            format!("DataSource {ref_ns}/{} does not exist", reference.name),
        ));
    };
    direct(&referenced.spec.source, &ref_ns).ok_or_else(|| {
        unresolved(
            "MaxReferenceDepthReached",
            format!(
                "DataSource {ref_ns}/{} refers to another DataSource in turn; references go \
                 one level deep",
                reference.name
            ),
        )
    })
}

/// What was observed of the target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetState {
    /// The claim or snapshot exists.
    pub exists: bool,
    /// The phase of the DataVolume that fills the claim, if one does.
    pub data_volume_phase: Option<String>,
    /// The snapshot is ready to use.
    pub snapshot_ready: bool,
}

/// The Ready condition's status, reason and message for `target` in `state`.
pub fn readiness(target: &Target, state: &TargetState) -> (ConditionStatus, String, String) {
    let (kind, ns, name) = match target {
        Target::Pvc { namespace, name } => ("PersistentVolumeClaim", namespace, name),
        Target::Snapshot { namespace, name } => ("VolumeSnapshot", namespace, name),
    };
    if !state.exists {
        return (
            ConditionStatus::False,
            "NotFound".into(),
            format!("{kind} {ns}/{name} does not exist"),
        );
    }
    match (target, &state.data_volume_phase) {
        (Target::Pvc { .. }, Some(phase)) if phase != "Succeeded" => (
            ConditionStatus::False,
            phase.clone(),
            format!("DataVolume {ns}/{name} is {phase}"),
        ),
        (Target::Snapshot { .. }, _) if !state.snapshot_ready => (
            ConditionStatus::False,
            "SnapshotNotReady".into(),
            format!("VolumeSnapshot {ns}/{name} is not ready to use"),
        ),
        _ => (ConditionStatus::True, "Ready".into(), String::new()),
    }
}

/// The new status: the Ready condition (its times kept while it holds), and the resolved
/// source while Ready.
pub fn compute(
    ds: &DataSource,
    resolved: Result<(&DataSourceSource, (ConditionStatus, String, String)), &Unresolved>,
    now: &Time,
) -> DataSourceStatus {
    let (source, (status, reason, message)) = match resolved {
        Ok((source, ready)) => (Some(source.clone()), ready),
        Err(u) => (
            None,
            (
                ConditionStatus::False,
                u.reason.to_owned(),
                u.message.clone(),
            ),
        ),
    };
    let old = ds
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == DataSourceConditionType::Ready));
    let same = old.is_some_and(|c| {
        c.status == status
            && c.reason.as_deref().unwrap_or("") == reason
            && c.message.as_deref().unwrap_or("") == message
    });
    let condition = DataSourceCondition {
        type_: DataSourceConditionType::Ready,
        last_transition_time: match old {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Some(now.clone()),
        },
        last_heartbeat_time: match old {
            Some(c) if same => c.last_heartbeat_time.clone(),
            _ => Some(now.clone()),
        },
        reason: Some(reason).filter(|r| !r.is_empty()),
        message: Some(message).filter(|m| !m.is_empty()),
        status: status.clone(),
    };
    DataSourceStatus {
        source: source.filter(|_| status == ConditionStatus::True),
        conditions: Some(vec![condition]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn ds(name: &str, source: serde_json::Value) -> DataSource {
        serde_json::from_value(json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
            "metadata": {"name": name, "namespace": "golden"},
            "spec": {"source": source}
        }))
        .expect("a DataSource")
    }

    fn none(_: &str, _: &str) -> Option<DataSource> {
        None
    }

    #[test]
    fn references_resolve_one_level_deep_in_one_namespace() {
        let pvc = ds(
            "fedora",
            json!({"pvc": {"namespace": "", "name": "fedora-42"}}),
        );
        let (target, source) = resolve(&pvc, none).expect("resolves");
        assert_eq!(
            target,
            Target::Pvc {
                namespace: "golden".into(),
                name: "fedora-42".into()
            }
        );
        assert!(source.pvc.is_some());

        let alias = ds(
            "latest",
            json!({"dataSource": {"namespace": "golden", "name": "fedora"}}),
        );
        let lookup = |_: &str, n: &str| (n == "fedora").then(|| pvc.clone());
        assert_eq!(resolve(&alias, lookup).expect("resolves").0, target);

        let table = [
            (json!({}), "NoSource"),
            (
                json!({"dataSource": {"namespace": "other", "name": "fedora"}}),
                "CrossNamespaceReference",
            ),
            (
                json!({"dataSource": {"namespace": "", "name": "me"}}),
                "SelfReference",
            ),
            (
                json!({"dataSource": {"namespace": "", "name": "missing"}}),
                "NotFound",
            ),
        ];
        for (source, reason) in table {
            let err = resolve(&ds("me", source.clone()), none).expect_err("unresolved");
            assert_eq!(err.reason, reason, "{source}");
        }
        let chained = |_: &str, _: &str| Some(alias.clone());
        let err = resolve(
            &ds(
                "me",
                json!({"dataSource": {"namespace": "", "name": "latest"}}),
            ),
            chained,
        )
        .expect_err("two levels");
        assert_eq!(err.reason, "MaxReferenceDepthReached");
    }

    #[test]
    fn readiness_follows_the_claim_its_datavolume_or_the_snapshot() {
        let pvc = Target::Pvc {
            namespace: "golden".into(),
            name: "fedora-42".into(),
        };
        let snap = Target::Snapshot {
            namespace: "golden".into(),
            name: "s".into(),
        };
        let state = |exists, phase: Option<&str>, ready| TargetState {
            exists,
            data_volume_phase: phase.map(str::to_owned),
            snapshot_ready: ready,
        };
        let table = [
            (
                &pvc,
                state(false, None, false),
                ConditionStatus::False,
                "NotFound",
            ),
            (
                &pvc,
                state(true, None, false),
                ConditionStatus::True,
                "Ready",
            ),
            (
                &pvc,
                state(true, Some("ImportInProgress"), false),
                ConditionStatus::False,
                "ImportInProgress",
            ),
            (
                &pvc,
                state(true, Some("Succeeded"), false),
                ConditionStatus::True,
                "Ready",
            ),
            (
                &snap,
                state(true, None, false),
                ConditionStatus::False,
                "SnapshotNotReady",
            ),
            (
                &snap,
                state(true, None, true),
                ConditionStatus::True,
                "Ready",
            ),
            (
                &snap,
                state(false, None, false),
                ConditionStatus::False,
                "NotFound",
            ),
        ];
        for (target, state, status, reason) in table {
            let (s, r, _) = readiness(target, &state);
            assert_eq!((s, r.as_str()), (status, reason), "{target:?} {state:?}");
        }
    }

    #[test]
    fn the_source_shows_only_while_ready_and_times_hold_while_unchanged() {
        let d = ds(
            "fedora",
            json!({"pvc": {"namespace": "", "name": "fedora-42"}}),
        );
        let (_, source) = resolve(&d, none).expect("resolves");
        let now = Time(Timestamp::now());
        let ready = (ConditionStatus::True, "Ready".to_owned(), String::new());
        let status = compute(&d, Ok((&source, ready.clone())), &now);
        assert!(status.source.is_some());
        let mut again = d.clone();
        again.status = Some(status.clone());
        let later = Time(Timestamp::now() + std::time::Duration::from_secs(60));
        assert_eq!(compute(&again, Ok((&source, ready)), &later), status);

        let waiting = (
            ConditionStatus::False,
            "ImportInProgress".to_owned(),
            "DataVolume golden/fedora-42 is ImportInProgress".to_owned(),
        );
        let status = compute(&again, Ok((&source, waiting)), &later);
        assert_eq!(status.source, None);
        let c = &status.conditions.as_ref().expect("conditions")[0];
        assert_eq!(c.last_transition_time, Some(later));
    }
}
