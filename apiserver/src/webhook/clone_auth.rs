//! Who may clone what, pure: which source a DataVolume clones, which SubjectAccessReviews
//! decide whether the requesting user may read it, and the decision with its message.
//!
//! ```text
//!  spec.source.pvc | spec.source.snapshot ──────────────────────────► CloneSource
//!  spec.sourceRef (DataSource) ─► GET (mutate.rs) ─► data_source_target ─┘
//!  CloneCheck::next(answers so far) ─► Review(SAR) | Allowed | Denied(message)
//! ```
//!
//! A clone within one namespace needs nothing beyond creating the DataVolume. Across
//! namespaces, as upstream, the user must be allowed, in the source's namespace, one of:
//! - claim source: `create` on `datavolumes/source` (group `cdi.kubevirt.io`), or `create`
//!   on `pods`;
//! - snapshot source: `create` on `datavolumes/source`, or both `create` on `pods` and
//!   `create` on `persistentvolumeclaims` (upstream asks for resource `pvcs` here, a name no
//!   role grants but through a wildcard; the full name is what its check means: whoever may
//!   restore the snapshot into a claim and mount it in a pod may read it anyway).

use cdi_crds::{DataSource, DataVolumeSourceRef, DataVolumeSpec};
use cdi_token::{CloneRequest, CloneSource, CloneSourceKind};
use k8s_openapi::api::authentication::v1::UserInfo as RequestUser;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview};

use crate::authn::UserInfo;
use crate::authz::{self, Decision};

/// The subresource whose `create` grants cloning from a namespace.
pub const CLONE_SOURCE_SUBRESOURCE: &str = "source";

/// What a DataVolume clones, as far as its spec says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceLookup {
    /// Not a clone (an import, upload or blank disk): nothing to authorize.
    NotAClone,
    /// `source.pvc` or `source.snapshot`.
    Direct(CloneSource),
    /// `sourceRef`: the DataSource to read (its namespace defaults to the DataVolume's).
    DataSource { namespace: String, name: String },
}

/// Where `spec` clones from; an empty source namespace is the DataVolume's (`target_namespace`).
pub fn source_lookup(spec: &DataVolumeSpec, target_namespace: &str) -> SourceLookup {
    let or_target = |ns: &str| if ns.is_empty() { target_namespace } else { ns }.to_owned();
    if let Some(source) = &spec.source {
        if let Some(pvc) = &source.pvc {
            return SourceLookup::Direct(CloneSource {
                kind: CloneSourceKind::Pvc,
                namespace: or_target(&pvc.namespace),
                name: pvc.name.clone(),
            });
        }
        if let Some(snapshot) = &source.snapshot {
            return SourceLookup::Direct(CloneSource {
                kind: CloneSourceKind::Snapshot,
                namespace: or_target(&snapshot.namespace),
                name: snapshot.name.clone(),
            });
        }
        return SourceLookup::NotAClone;
    }
    match &spec.source_ref {
        Some(r) if r.kind == DataVolumeSourceRef::DATA_SOURCE_KIND => SourceLookup::DataSource {
            namespace: or_target(r.namespace.as_deref().unwrap_or("")),
            name: r.name.clone(),
        },
        _ => SourceLookup::NotAClone,
    }
}

/// What a DataSource points at: its `spec.source` claim or snapshot, or, when it refers to
/// another DataSource, what that one resolved to (`status.source`). `None` when it names
/// nothing yet, which (as upstream) is not a clone to authorize. An empty namespace is the
/// DataVolume's (`target_namespace`), as upstream resolves it.
pub fn data_source_target(data_source: &DataSource, target_namespace: &str) -> Option<CloneSource> {
    let spec = &data_source.spec.source;
    let source = if spec.data_source.is_some() {
        data_source
            .status
            .as_ref()
            .and_then(|s| s.source.as_ref())?
    } else {
        spec
    };
    let (kind, namespace, name) = if let Some(pvc) = &source.pvc {
        (CloneSourceKind::Pvc, &pvc.namespace, &pvc.name)
    } else if let Some(snapshot) = &source.snapshot {
        (
            CloneSourceKind::Snapshot,
            &snapshot.namespace,
            &snapshot.name,
        )
    } else {
        return None;
    };
    Some(CloneSource {
        kind,
        namespace: if namespace.is_empty() {
            target_namespace.to_owned()
        } else {
            namespace.clone()
        },
        name: name.clone(),
    })
}

/// One permission a clone may rest on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Permission {
    /// `create` `datavolumes/source` in `cdi.kubevirt.io`.
    CloneSource,
    /// `create` `pods`.
    CreatePods,
    /// `create` `persistentvolumeclaims`.
    CreateClaims,
}

impl Permission {
    fn attributes(self, source: &CloneSource) -> ResourceAttributes {
        let (group, resource, subresource) = match self {
            Permission::CloneSource => (
                cdi_crds::GROUP,
                "datavolumes",
                Some(CLONE_SOURCE_SUBRESOURCE),
            ),
            Permission::CreatePods => ("", "pods", None),
            Permission::CreateClaims => ("", "persistentvolumeclaims", None),
        };
        ResourceAttributes {
            namespace: Some(source.namespace.clone()),
            verb: Some("create".to_owned()),
            group: Some(group.to_owned()),
            resource: Some(resource.to_owned()),
            subresource: subresource.map(str::to_owned),
            name: Some(source.name.clone()),
            ..ResourceAttributes::default()
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Permission::CloneSource => "create datavolumes/source (API group cdi.kubevirt.io)",
            Permission::CreatePods => "create pods",
            Permission::CreateClaims => "create persistentvolumeclaims",
        }
    }
}

/// The permissions that allow cloning from `kind`: any one alternative, all of its
/// permissions.
fn alternatives(kind: CloneSourceKind) -> &'static [&'static [Permission]] {
    match kind {
        CloneSourceKind::Pvc => &[&[Permission::CloneSource], &[Permission::CreatePods]],
        CloneSourceKind::Snapshot => &[
            &[Permission::CloneSource],
            &[Permission::CreatePods, Permission::CreateClaims],
        ],
    }
}

/// What to do next in a [`CloneCheck`].
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Send this review and call `next` again with its answer appended.
    Review(Box<SubjectAccessReview>),
    /// The user may clone the source.
    Allowed,
    /// The user may not; the message says who, what is missing where, and what the
    /// authorizer said.
    Denied(String),
}

/// The authorization of one clone for the requesting user, as a sequence of reviews.
#[derive(Clone, Debug)]
pub struct CloneCheck {
    user: UserInfo,
    uid: Option<String>,
    request: CloneRequest,
}

impl CloneCheck {
    /// The check of `request` for the user kube-apiserver authenticated (`userInfo` of the
    /// AdmissionRequest; a service account is `system:serviceaccount:<ns>:<name>` with its
    /// groups, like any user).
    pub fn new(user: &RequestUser, request: CloneRequest) -> CloneCheck {
        CloneCheck {
            user: UserInfo {
                username: user.username.clone().unwrap_or_default(),
                groups: user.groups.clone().unwrap_or_default(),
                extra: user.extra.clone().unwrap_or_default(),
            },
            uid: user.uid.clone(),
            request,
        }
    }

    /// The clone being checked.
    pub fn request(&self) -> &CloneRequest {
        &self.request
    }

    /// The next step, given the answers to the reviews asked for so far (in order). Reviews
    /// stop as soon as the outcome is known: an allowed alternative, or every alternative
    /// with a denied permission.
    pub fn next(&self, answers: &[Decision]) -> Step {
        if self.request.is_same_namespace() {
            return Step::Allowed;
        }
        let source = &self.request.source;
        let mut answers = answers.iter();
        let mut reasons = Vec::new();
        for alternative in alternatives(source.kind) {
            let mut granted = true;
            for permission in alternative.iter() {
                match answers.next() {
                    None => {
                        return Step::Review(Box::new(authz::review_for(
                            &self.user,
                            self.uid.as_deref(),
                            permission.attributes(source),
                        )));
                    }
                    Some(Decision::Allowed) => {}
                    Some(Decision::Denied { reason }) => {
                        if let Some(reason) = reason.as_deref().filter(|r| !r.is_empty()) {
                            reasons.push(reason.to_owned());
                        }
                        granted = false;
                        break;
                    }
                }
            }
            if granted {
                return Step::Allowed;
            }
        }
        Step::Denied(self.denial(&reasons))
    }

    fn denial(&self, reasons: &[String]) -> String {
        let source = &self.request.source;
        let needs = alternatives(source.kind)
            .iter()
            .map(|alternative| {
                alternative
                    .iter()
                    .map(|p| p.describe())
                    .collect::<Vec<_>>()
                    .join(" and ")
            })
            .collect::<Vec<_>>()
            .join(", or ");
        let mut message = format!(
            "User \"{}\" may not clone {source} into DataVolume {}/{}: cloning from namespace \
             \"{}\" needs permission there to {needs}",
            self.user.username,
            self.request.target_namespace,
            self.request.target_name,
            source.namespace,
        );
        if reasons.is_empty() {
            message.push_str(" (no RBAC rule allows it)");
        } else {
            message.push_str("; the authorizer said: ");
            message.push_str(&reasons.join("; "));
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn spec(mut value: serde_json::Value) -> DataVolumeSpec {
        value["storage"] = json!({});
        serde_json::from_value(value).expect("spec")
    }

    fn source(kind: CloneSourceKind, namespace: &str, name: &str) -> CloneSource {
        CloneSource {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn source_lookup_follows_the_spec() {
        let cases = [
            (
                json!({"source": {"pvc": {"namespace": "golden", "name": "fedora"}}}),
                SourceLookup::Direct(source(CloneSourceKind::Pvc, "golden", "fedora")),
            ),
            (
                json!({"source": {"pvc": {"namespace": "", "name": "fedora"}}}),
                SourceLookup::Direct(source(CloneSourceKind::Pvc, "vms", "fedora")),
            ),
            (
                json!({"source": {"snapshot": {"namespace": "snaps", "name": "s1"}}}),
                SourceLookup::Direct(source(CloneSourceKind::Snapshot, "snaps", "s1")),
            ),
            (
                json!({"sourceRef": {"kind": "DataSource", "name": "fedora"}}),
                SourceLookup::DataSource {
                    namespace: "vms".into(),
                    name: "fedora".into(),
                },
            ),
            (
                json!({"sourceRef": {"kind": "DataSource", "namespace": "golden", "name": "fedora"}}),
                SourceLookup::DataSource {
                    namespace: "golden".into(),
                    name: "fedora".into(),
                },
            ),
            (json!({"source": {"blank": {}}}), SourceLookup::NotAClone),
            (
                json!({"sourceRef": {"kind": "PersistentVolumeClaim", "name": "x"}}),
                SourceLookup::NotAClone,
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                source_lookup(&spec(value.clone()), "vms"),
                expected,
                "{value}"
            );
        }
    }

    #[test]
    fn data_source_points_at_its_claim_snapshot_or_resolved_reference() {
        let ds = |value: serde_json::Value| -> DataSource {
            let mut object = json!({
                "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataSource",
                "metadata": {"name": "fedora", "namespace": "golden"},
            });
            object["spec"] = value["spec"].clone();
            if !value["status"].is_null() {
                object["status"] = value["status"].clone();
            }
            serde_json::from_value(object).expect("DataSource")
        };
        let cases = [
            (
                json!({"spec": {"source": {"pvc": {"namespace": "golden", "name": "f40"}}}}),
                Some(source(CloneSourceKind::Pvc, "golden", "f40")),
            ),
            (
                json!({"spec": {"source": {"snapshot": {"namespace": "", "name": "s"}}}}),
                Some(source(CloneSourceKind::Snapshot, "vms", "s")),
            ),
            (
                json!({"spec": {"source": {"dataSource": {"namespace": "golden", "name": "other"}}},
                       "status": {"source": {"pvc": {"namespace": "golden", "name": "f41"}}}}),
                Some(source(CloneSourceKind::Pvc, "golden", "f41")),
            ),
            (
                json!({"spec": {"source": {"dataSource": {"namespace": "golden", "name": "other"}}}}),
                None,
            ),
            (json!({"spec": {"source": {}}}), None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                data_source_target(&ds(value.clone()), "vms"),
                expected,
                "{value}"
            );
        }
    }

    fn bob() -> RequestUser {
        RequestUser {
            username: Some("bob".into()),
            uid: Some("uid-bob".into()),
            groups: Some(vec!["dev".into(), "system:authenticated".into()]),
            extra: Some(BTreeMap::from([("scopes".into(), vec!["clone".into()])])),
        }
    }

    fn check(kind: CloneSourceKind, source_namespace: &str) -> CloneCheck {
        CloneCheck::new(
            &bob(),
            CloneRequest {
                source: source(kind, source_namespace, "disk"),
                target_namespace: "target".into(),
                target_name: "dv".into(),
            },
        )
    }

    const YES: Decision = Decision::Allowed;
    fn no(reason: &str) -> Decision {
        Decision::Denied {
            reason: Some(reason.into()),
        }
    }

    /// `(resource, subresource)` of the review a step asks for.
    type Asked = Option<(String, Option<String>)>;

    fn asked(step: &Step) -> Asked {
        match step {
            Step::Review(review) => {
                let attrs = review.spec.resource_attributes.as_ref()?;
                Some((attrs.resource.clone()?, attrs.subresource.clone()))
            }
            _ => None,
        }
    }

    #[test]
    fn decision_table_for_claim_and_snapshot_sources() {
        let dv_source = Some(("datavolumes".to_owned(), Some("source".to_owned())));
        let pods = Some(("pods".to_owned(), None));
        let claims = Some(("persistentvolumeclaims".to_owned(), None));
        // (kind, answers so far, the review asked next or None when decided, the decision)
        let cases: Vec<(CloneSourceKind, Vec<Decision>, Asked, Option<bool>)> = vec![
            (CloneSourceKind::Pvc, vec![], dv_source.clone(), None),
            (CloneSourceKind::Pvc, vec![YES], None, Some(true)),
            (CloneSourceKind::Pvc, vec![no("")], pods.clone(), None),
            (CloneSourceKind::Pvc, vec![no(""), YES], None, Some(true)),
            (
                CloneSourceKind::Pvc,
                vec![no(""), no("")],
                None,
                Some(false),
            ),
            (CloneSourceKind::Snapshot, vec![], dv_source.clone(), None),
            (CloneSourceKind::Snapshot, vec![YES], None, Some(true)),
            (CloneSourceKind::Snapshot, vec![no("")], pods.clone(), None),
            (
                CloneSourceKind::Snapshot,
                vec![no(""), YES],
                claims.clone(),
                None,
            ),
            (
                CloneSourceKind::Snapshot,
                vec![no(""), YES, YES],
                None,
                Some(true),
            ),
            (
                CloneSourceKind::Snapshot,
                vec![no(""), YES, no("")],
                None,
                Some(false),
            ),
            (
                CloneSourceKind::Snapshot,
                vec![no(""), no("")],
                None,
                Some(false),
            ),
        ];
        for (kind, answers, next_review, decided) in cases {
            let step = check(kind, "source").next(&answers);
            let case = format!("{kind:?} after {answers:?}: {step:?}");
            assert_eq!(asked(&step), next_review, "{case}");
            match decided {
                None => assert!(matches!(step, Step::Review(_)), "{case}"),
                Some(true) => assert_eq!(step, Step::Allowed, "{case}"),
                Some(false) => assert!(matches!(step, Step::Denied(_)), "{case}"),
            }
        }
    }

    #[test]
    fn same_namespace_clone_is_allowed_without_a_review() {
        for kind in [CloneSourceKind::Pvc, CloneSourceKind::Snapshot] {
            assert_eq!(check(kind, "target").next(&[]), Step::Allowed);
        }
    }

    #[test]
    fn review_is_for_the_requesting_user_in_the_source_namespace() {
        let Step::Review(review) = check(CloneSourceKind::Pvc, "source").next(&[]) else {
            panic!("a review first");
        };
        assert_eq!(
            serde_json::to_value(&review.spec).expect("json"),
            json!({
                "user": "bob",
                "uid": "uid-bob",
                "groups": ["dev", "system:authenticated"],
                "extra": {"scopes": ["clone"]},
                "resourceAttributes": {
                    "namespace": "source",
                    "verb": "create",
                    "group": "cdi.kubevirt.io",
                    "resource": "datavolumes",
                    "subresource": "source",
                    "name": "disk",
                },
            })
        );
    }

    #[test]
    fn denial_names_user_permissions_namespace_and_reasons() {
        let step = check(CloneSourceKind::Pvc, "source")
            .next(&[no("RBAC: no rule"), no("webhook: closed")]);
        assert_eq!(
            step,
            Step::Denied(
                "User \"bob\" may not clone PersistentVolumeClaim source/disk into DataVolume \
                 target/dv: cloning from namespace \"source\" needs permission there to create \
                 datavolumes/source (API group cdi.kubevirt.io), or create pods; the authorizer \
                 said: RBAC: no rule; webhook: closed"
                    .into()
            )
        );
        let Step::Denied(message) =
            check(CloneSourceKind::Snapshot, "source").next(&[no(""), YES, no("")])
        else {
            panic!("denied");
        };
        assert!(
            message.ends_with(
                "create datavolumes/source (API group cdi.kubevirt.io), or create pods and \
                 create persistentvolumeclaims (no RBAC rule allows it)"
            ),
            "{message}"
        );
    }
}
