//! Where a clone DataVolume's data comes from: `source.pvc`, `source.snapshot`, or the claim or
//! snapshot a DataSource named by `sourceRef` resolves to (its status, which the DataSource
//! controller keeps). Pure.

use cdi_crds::datasource::DataSourceConditionType;
use cdi_crds::{ConditionStatus, DataSource, DataVolume, DataVolumeSourceRef};

use crate::datavolume::plan::PlanError;

/// A claim or a VolumeSnapshot to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloneSource {
    Pvc { namespace: String, name: String },
    Snapshot { namespace: String, name: String },
}

impl CloneSource {
    pub fn namespace(&self) -> &str {
        match self {
            CloneSource::Pvc { namespace, .. } | CloneSource::Snapshot { namespace, .. } => {
                namespace
            }
        }
    }

    pub fn name(&self) -> &str {
        match self {
            CloneSource::Pvc { name, .. } | CloneSource::Snapshot { name, .. } => name,
        }
    }

    /// `claim ns/name` or `snapshot ns/name`, for messages.
    pub fn describe(&self) -> String {
        let kind = match self {
            CloneSource::Pvc { .. } => "claim",
            CloneSource::Snapshot { .. } => "VolumeSnapshot",
        };
        format!("{kind} {}/{}", self.namespace(), self.name())
    }
}

/// What a clone DataVolume names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    Source(CloneSource),
    /// A DataSource, to be resolved.
    DataSource {
        namespace: String,
        name: String,
    },
}

/// What `dv` clones, or `None` if it is not a clone.
pub fn requested(dv: &DataVolume) -> Option<Requested> {
    let own_ns = dv.metadata.namespace.clone().unwrap_or_default();
    let or_own = |ns: &str| {
        if ns.is_empty() {
            own_ns.clone()
        } else {
            ns.to_owned()
        }
    };
    if let Some(source) = &dv.spec.source {
        if let Some(p) = &source.pvc {
            return Some(Requested::Source(CloneSource::Pvc {
                namespace: or_own(&p.namespace),
                name: p.name.clone(),
            }));
        }
        if let Some(s) = &source.snapshot {
            return Some(Requested::Source(CloneSource::Snapshot {
                namespace: or_own(&s.namespace),
                name: s.name.clone(),
            }));
        }
        return None;
    }
    let r = dv.spec.source_ref.as_ref()?;
    (r.kind == DataVolumeSourceRef::DATA_SOURCE_KIND).then(|| Requested::DataSource {
        namespace: or_own(r.namespace.as_deref().unwrap_or_default()),
        name: r.name.clone(),
    })
}

/// The source a DataSource resolves to now, or why the DataVolume waits for it: the
/// DataSource must exist and be Ready, with its resolved source in its status.
pub fn resolve(
    data_source: Option<&DataSource>,
    namespace: &str,
    name: &str,
) -> Result<CloneSource, PlanError> {
    let Some(ds) = data_source else {
        return Err(PlanError::waiting(
            "CloneWithoutSource",
            format!("DataSource {namespace}/{name} does not exist; the DataVolume waits for it"),
        ));
    };
    let status = ds.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DataSourceConditionType::Ready);
    let resolved = status
        .source
        .as_ref()
        .filter(|_| ready.is_some_and(|c| c.status == ConditionStatus::True));
    let Some(resolved) = resolved else {
        let why = ready
            .map(|c| {
                format!(
                    "{}: {}",
                    c.reason.as_deref().unwrap_or("NotReady"),
                    c.message.as_deref().unwrap_or("")
                )
            })
            .unwrap_or_else(|| "no Ready condition yet".to_owned());
        return Err(PlanError::waiting(
            "DataSourceNotReady",
            format!(
                "DataSource {namespace}/{name} is not Ready ({}); the DataVolume waits for it",
                why.trim_end_matches([' ', ':'])
            ),
        ));
    };
    let or_ds = |ns: &str| {
        if ns.is_empty() {
            namespace.to_owned()
        } else {
            ns.to_owned()
        }
    };
    if let Some(p) = &resolved.pvc {
        Ok(CloneSource::Pvc {
            namespace: or_ds(&p.namespace),
            name: p.name.clone(),
        })
    } else if let Some(s) = &resolved.snapshot {
        Ok(CloneSource::Snapshot {
            namespace: or_ds(&s.namespace),
            name: s.name.clone(),
        })
    } else {
        Err(PlanError::waiting(
            "DataSourceNotReady",
            format!("DataSource {namespace}/{name} resolves to neither a claim nor a snapshot"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::dv;
    use serde_json::json;

    fn data_source(status: serde_json::Value) -> DataSource {
        serde_json::from_value(json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
            "metadata": {"name": "fedora", "namespace": "golden"},
            "spec": {"source": {"pvc": {"namespace": "golden", "name": "fedora-42"}}},
            "status": status
        }))
        .expect("a DataSource")
    }

    #[test]
    fn the_source_a_datavolume_names() {
        let d = dv(
            "d",
            json!({"pvc": {"namespace": "golden", "name": "fedora"}}),
        );
        assert_eq!(
            requested(&d),
            Some(Requested::Source(CloneSource::Pvc {
                namespace: "golden".into(),
                name: "fedora".into()
            }))
        );
        let d = dv("d", json!({"snapshot": {"namespace": "", "name": "snap"}}));
        assert_eq!(
            requested(&d),
            Some(Requested::Source(CloneSource::Snapshot {
                namespace: crate::fixtures::NAMESPACE.into(),
                name: "snap".into()
            })),
            "an empty namespace is the DataVolume's"
        );
        assert_eq!(requested(&dv("d", json!({"blank": {}}))), None);
        let mut d = dv("d", json!({"blank": {}}));
        d.spec.source = None;
        d.spec.source_ref = Some(DataVolumeSourceRef {
            kind: "DataSource".into(),
            namespace: None,
            name: "fedora".into(),
        });
        assert_eq!(
            requested(&d),
            Some(Requested::DataSource {
                namespace: crate::fixtures::NAMESPACE.into(),
                name: "fedora".into()
            })
        );
    }

    #[test]
    fn a_datasource_resolves_only_when_ready() {
        let err = resolve(None, "golden", "fedora").expect_err("missing");
        assert_eq!(err.reason, "CloneWithoutSource");
        assert!(!err.terminal);

        let not_ready = data_source(json!({"conditions": [{"type": "Ready", "status": "False",
            "reason": "ImportInProgress", "message": "Import into fedora-42 in progress"}]}));
        let err = resolve(Some(&not_ready), "golden", "fedora").expect_err("not ready");
        assert_eq!(err.reason, "DataSourceNotReady");
        assert!(err.message.contains("ImportInProgress"), "{}", err.message);

        let ready = data_source(json!({
            "source": {"pvc": {"namespace": "", "name": "fedora-42"}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}));
        assert_eq!(
            resolve(Some(&ready), "golden", "fedora"),
            Ok(CloneSource::Pvc {
                namespace: "golden".into(),
                name: "fedora-42".into()
            })
        );
        let ready_snapshot = data_source(json!({
            "source": {"snapshot": {"namespace": "golden", "name": "fedora-snap"}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}));
        assert_eq!(
            resolve(Some(&ready_snapshot), "golden", "fedora"),
            Ok(CloneSource::Snapshot {
                namespace: "golden".into(),
                name: "fedora-snap".into()
            })
        );
    }
}
