//! How a claim is cloned, decided from observed facts alone (no API calls), as upstream's
//! planner decides it (reference §4.1): CDIConfig's override, else the StorageProfile's
//! strategy, else `snapshot`; a smart strategy (`snapshot`, `csi-clone`) falls back to a
//! host-assisted copy when the storage cannot do it, and every fallback carries the reason
//! upstream records in an event and the `cloneFallbackReason` annotation.

use cdi_crds::CloneStrategy;
use cdi_crds::annotations::clone;

/// What the decision needs to know about one claim (the source or the target).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimFacts {
    /// The provisioner (CSI driver) of the claim's StorageClass.
    pub provisioner: Option<String>,
    /// `Block` or `Filesystem`.
    pub block: bool,
    /// The requested size in bytes.
    pub requested: u64,
    /// The size of the bound volume (source), if known.
    pub capacity: Option<u64>,
}

/// Everything the clone strategy depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloneFacts {
    /// CDIConfig's `spec.cloneStrategyOverride`.
    pub override_strategy: Option<CloneStrategy>,
    /// The target StorageProfile's `status.cloneStrategy`.
    pub profile_strategy: Option<CloneStrategy>,
    /// A VolumeSnapshotClass exists for the target's provisioner.
    pub snapshot_class: bool,
    /// The target's StorageClass sets `allowVolumeExpansion`.
    pub target_expandable: bool,
    /// The clone may proceed with a smaller target (upstream's `permissiveClone`).
    pub permissive: bool,
    /// Source and target are in different namespaces: a claim's `dataSource` cannot reach
    /// across, so only a copy can.
    pub cross_namespace: bool,
    pub source: ClaimFacts,
    pub target: ClaimFacts,
}

/// The three ways to clone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Host-assisted: a cloner pod on the source streams to an upload server on the target.
    Copy,
    /// A VolumeSnapshot of the source, then a claim restored from it.
    Snapshot,
    /// A claim whose `dataSource` is the source claim, copied by the CSI driver.
    CsiClone,
}

impl Strategy {
    /// The value of `cdi.kubevirt.io/cloneType`, as upstream's.
    pub fn clone_type(self) -> &'static str {
        match self {
            Strategy::Copy => "copy",
            Strategy::Snapshot => "snapshot",
            Strategy::CsiClone => "csi-clone",
        }
    }
}

/// Why the strategy asked for was not used; the reason is upstream's event reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    pub reason: &'static str,
    pub message: String,
}

/// The decision: a strategy (with the fallback that led to it, if any), or a clone that cannot
/// be done at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Clone {
        strategy: Strategy,
        fallback: Option<Fallback>,
    },
    /// The DataVolume fails validation (`CloneValidationFailed`) with this message.
    Invalid { message: String },
}

impl Decision {
    /// The target claim's annotations recording the decision (`cloneType`, and
    /// `cloneFallbackReason` after a fallback).
    pub fn annotations(&self) -> Vec<(&'static str, String)> {
        match self {
            Decision::Clone { strategy, fallback } => {
                let mut a = vec![(clone::CLONE_TYPE, strategy.clone_type().to_owned())];
                if let Some(f) = fallback {
                    a.push((clone::CLONE_FALLBACK_REASON, f.message.clone()));
                }
                a
            }
            Decision::Invalid { .. } => Vec::new(),
        }
    }
}

/// `n` bytes as a quantity: the largest binary unit that divides it (`1Gi`, `512Mi`, `1000`).
fn bytes(n: u64) -> String {
    for (unit, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if n > 0 && n.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// Decides how to clone, given `facts`.
pub fn decide(facts: &CloneFacts) -> Decision {
    let (source, target) = (&facts.source, &facts.target);
    if source.requested > target.requested && !facts.permissive {
        return Decision::Invalid {
            message: format!(
                "target claim requests {}, less than the source's {}: request at least the \
                 source's size",
                bytes(target.requested),
                bytes(source.requested)
            ),
        };
    }
    let asked = facts
        .override_strategy
        .as_ref()
        .or(facts.profile_strategy.as_ref());
    let smart = match asked {
        None | Some(CloneStrategy::Snapshot) => Strategy::Snapshot,
        Some(CloneStrategy::CsiClone) => Strategy::CsiClone,
        Some(CloneStrategy::Copy) => {
            return Decision::Clone {
                strategy: Strategy::Copy,
                fallback: None,
            };
        }
        Some(CloneStrategy::Other(s)) => {
            return copy_because(
                "UnknownCloneStrategy",
                format!("clone strategy {s:?} is not one of copy, snapshot, csi-clone"),
            );
        }
    };
    if facts.cross_namespace {
        return copy_because(
            "IncompatibleNamespaces",
            "source and target are in different namespaces, which a CSI or snapshot clone \
             cannot cross here"
                .into(),
        );
    }
    if smart == Strategy::Snapshot && !facts.snapshot_class {
        return copy_because(
            "NoVolumeSnapshotClass",
            format!(
                "no VolumeSnapshotClass for provisioner {}",
                target.provisioner.as_deref().unwrap_or("(none)")
            ),
        );
    }
    if source.provisioner.is_none() || source.provisioner != target.provisioner {
        return copy_because(
            "IncompatibleProvisioners",
            format!(
                "source and target are provisioned by {} and {}",
                source.provisioner.as_deref().unwrap_or("(none)"),
                target.provisioner.as_deref().unwrap_or("(none)")
            ),
        );
    }
    if source.block != target.block {
        let mode = |block| if block { "Block" } else { "Filesystem" };
        return copy_because(
            "IncompatibleVolumeModes",
            format!(
                "source volume mode {} differs from target's {}",
                mode(source.block),
                mode(target.block)
            ),
        );
    }
    let source_size = source.capacity.unwrap_or(source.requested);
    if target.requested > source_size && !facts.target_expandable {
        return copy_because(
            "NoVolumeExpansion",
            format!(
                "the target ({}) is larger than the source ({}) and its StorageClass does not \
                 allow volume expansion",
                bytes(target.requested),
                bytes(source_size)
            ),
        );
    }
    Decision::Clone {
        strategy: smart,
        fallback: None,
    }
}

fn copy_because(reason: &'static str, message: String) -> Decision {
    Decision::Clone {
        strategy: Strategy::Copy,
        fallback: Some(Fallback { reason, message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1 << 30;

    fn claim(provisioner: &str, block: bool, requested: u64) -> ClaimFacts {
        ClaimFacts {
            provisioner: Some(provisioner.into()).filter(|p: &String| !p.is_empty()),
            block,
            requested,
            capacity: None,
        }
    }

    fn facts() -> CloneFacts {
        CloneFacts {
            snapshot_class: true,
            source: claim("csi.a", false, GI),
            target: claim("csi.a", false, GI),
            ..Default::default()
        }
    }

    #[test]
    fn the_strategy_table() {
        use Strategy::*;
        type Case = (
            &'static str,
            fn(&mut CloneFacts),
            Strategy,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            ("default is snapshot", |_| {}, Snapshot, None),
            (
                "profile asks csi-clone",
                |f| f.profile_strategy = Some(CloneStrategy::CsiClone),
                CsiClone,
                None,
            ),
            (
                "override beats the profile",
                |f| {
                    f.profile_strategy = Some(CloneStrategy::CsiClone);
                    f.override_strategy = Some(CloneStrategy::Copy);
                },
                Copy,
                None,
            ),
            (
                "copy needs nothing of the storage",
                |f| {
                    f.profile_strategy = Some(CloneStrategy::Copy);
                    f.target = claim("other", true, 2 * GI);
                    f.snapshot_class = false;
                },
                Copy,
                None,
            ),
            (
                "snapshot without a snapshot class",
                |f| f.snapshot_class = false,
                Copy,
                Some("NoVolumeSnapshotClass"),
            ),
            (
                "csi-clone needs no snapshot class",
                |f| {
                    f.profile_strategy = Some(CloneStrategy::CsiClone);
                    f.snapshot_class = false;
                },
                CsiClone,
                None,
            ),
            (
                "different provisioners",
                |f| f.target = claim("csi.b", false, GI),
                Copy,
                Some("IncompatibleProvisioners"),
            ),
            (
                "no provisioner at all",
                |f| {
                    f.profile_strategy = Some(CloneStrategy::CsiClone);
                    f.source = claim("", false, GI);
                    f.target = claim("", false, GI);
                },
                Copy,
                Some("IncompatibleProvisioners"),
            ),
            (
                "volume modes differ",
                |f| f.target = claim("csi.a", true, GI),
                Copy,
                Some("IncompatibleVolumeModes"),
            ),
            (
                "larger target, class cannot expand",
                |f| f.target = claim("csi.a", false, 2 * GI),
                Copy,
                Some("NoVolumeExpansion"),
            ),
            (
                "larger target, class expands",
                |f| {
                    f.target = claim("csi.a", false, 2 * GI);
                    f.target_expandable = true;
                },
                Snapshot,
                None,
            ),
            (
                "larger request than the source's, but its volume is as large",
                |f| {
                    f.target = claim("csi.a", false, 2 * GI);
                    f.source.capacity = Some(2 * GI);
                },
                Snapshot,
                None,
            ),
            (
                "another namespace",
                |f| f.cross_namespace = true,
                Copy,
                Some("IncompatibleNamespaces"),
            ),
            (
                "copy across namespaces is no fallback",
                |f| {
                    f.cross_namespace = true;
                    f.override_strategy = Some(CloneStrategy::Copy);
                },
                Copy,
                None,
            ),
            (
                "an unknown strategy string",
                |f| f.profile_strategy = Some(CloneStrategy::Other("fast".into())),
                Copy,
                Some("UnknownCloneStrategy"),
            ),
        ];
        for (name, change, strategy, reason) in cases {
            let mut f = facts();
            change(&mut f);
            match decide(&f) {
                Decision::Clone {
                    strategy: got,
                    fallback,
                } => {
                    assert_eq!(got, *strategy, "{name}");
                    assert_eq!(fallback.as_ref().map(|f| f.reason), *reason, "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_target_smaller_than_the_source_is_invalid_unless_permissive() {
        let mut f = facts();
        f.target.requested = GI / 2;
        let Decision::Invalid { message } = decide(&f) else {
            panic!("a smaller target must be refused");
        };
        assert!(
            message.contains("512Mi") && message.contains("1Gi"),
            "{message}"
        );
        f.permissive = true;
        assert!(matches!(decide(&f), Decision::Clone { .. }));
    }

    #[test]
    fn the_decision_is_recorded_in_upstreams_annotations() {
        let mut f = facts();
        f.snapshot_class = false;
        let a = decide(&f).annotations();
        assert_eq!(a[0], (clone::CLONE_TYPE, "copy".to_owned()));
        assert_eq!(a[1].0, clone::CLONE_FALLBACK_REASON);
        assert!(a[1].1.contains("no VolumeSnapshotClass"), "{a:?}");
        let a = decide(&facts()).annotations();
        assert_eq!(a, [(clone::CLONE_TYPE, "snapshot".to_owned())]);
    }
}
