//! Authorization: every token request is checked with a SubjectAccessReview for the user
//! kube-apiserver authenticated (verb `create` on `uploadtokenrequests` in the request's
//! namespace), so RBAC decides, as for any built-in resource. The review is built by a pure
//! function; [`Authorizer`] sends it ([`KubeAuthorizer`] to the cluster, stubs in tests).

use futures_util::future::BoxFuture;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::authn::UserInfo;
use crate::discovery::{GROUP, RESOURCE, VERSION};

/// The verb a token request needs.
pub const VERB: &str = "create";

/// The review asking whether `user` may create `uploadtokenrequests` in `namespace`.
pub fn access_review(user: &UserInfo, namespace: &str) -> SubjectAccessReview {
    review_for(
        user,
        None,
        ResourceAttributes {
            namespace: Some(namespace.to_owned()),
            verb: Some(VERB.to_owned()),
            group: Some(GROUP.to_owned()),
            version: Some(VERSION.to_owned()),
            resource: Some(RESOURCE.to_owned()),
            ..ResourceAttributes::default()
        },
    )
}

/// The review asking whether `user` (with `uid`, when known) may do what `attributes` say.
pub fn review_for(
    user: &UserInfo,
    uid: Option<&str>,
    attributes: ResourceAttributes,
) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.username.clone()),
            uid: uid.filter(|u| !u.is_empty()).map(str::to_owned),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes: Some(attributes),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

/// The authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Not allowed; `reason` is the authorizer's explanation, if it gave one.
    Denied {
        reason: Option<String>,
    },
}

/// The 403 message, worded as kube-apiserver words its own.
pub fn forbidden_message(user: &UserInfo, namespace: &str, reason: Option<&str>) -> String {
    let mut message = format!(
        "{RESOURCE}.{GROUP} is forbidden: User \"{}\" cannot {VERB} resource \"{RESOURCE}\" \
         in API group \"{GROUP}\" in the namespace \"{namespace}\"",
        user.username
    );
    if let Some(reason) = reason.filter(|r| !r.is_empty()) {
        message.push_str(": ");
        message.push_str(reason);
    }
    message
}

/// Sends a SubjectAccessReview and returns the decision.
pub trait Authorizer: Send + Sync + 'static {
    fn review(&self, review: SubjectAccessReview) -> BoxFuture<'_, Result<Decision, kube::Error>>;
}

/// Asks the cluster (needs `create` on `subjectaccessreviews`: ClusterRole
/// `system:auth-delegator`).
#[derive(Clone)]
pub struct KubeAuthorizer {
    api: Api<SubjectAccessReview>,
}

impl std::fmt::Debug for KubeAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeAuthorizer").finish_non_exhaustive()
    }
}

impl KubeAuthorizer {
    pub fn new(client: kube::Client) -> KubeAuthorizer {
        KubeAuthorizer {
            api: Api::all(client),
        }
    }
}

impl Authorizer for KubeAuthorizer {
    fn review(&self, review: SubjectAccessReview) -> BoxFuture<'_, Result<Decision, kube::Error>> {
        Box::pin(async move {
            let answer = self.api.create(&PostParams::default(), &review).await?;
            let status = answer.status.unwrap_or_default();
            if let Some(error) = status.evaluation_error.as_deref().filter(|e| !e.is_empty()) {
                tracing::warn!(
                    error,
                    "The SubjectAccessReview reported an evaluation error."
                );
            }
            Ok(if status.allowed {
                Decision::Allowed
            } else {
                Decision::Denied {
                    reason: status.reason,
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn alice() -> UserInfo {
        UserInfo {
            username: "alice".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            extra: BTreeMap::from([("scopes".into(), vec!["a".into()])]),
        }
    }

    #[test]
    fn review_asks_for_create_on_uploadtokenrequests_in_the_namespace() {
        let review = serde_json::to_value(access_review(&alice(), "ns1")).expect("serialises");
        assert_eq!(
            review,
            serde_json::json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "metadata": {},
                "spec": {
                    "user": "alice",
                    "groups": ["dev", "system:authenticated"],
                    "extra": {"scopes": ["a"]},
                    "resourceAttributes": {
                        "namespace": "ns1",
                        "verb": "create",
                        "group": "upload.cdi.kubevirt.io",
                        "version": "v1beta1",
                        "resource": "uploadtokenrequests",
                    },
                },
            })
        );
    }

    #[test]
    fn review_of_a_user_without_extra_sends_none() {
        let user = UserInfo {
            username: "bob".into(),
            ..UserInfo::default()
        };
        let review = access_review(&user, "ns1");
        assert_eq!(review.spec.extra, None);
        assert_eq!(review.spec.groups, Some(vec![]));
    }

    #[test]
    fn forbidden_message_names_user_verb_resource_and_namespace() {
        assert_eq!(
            forbidden_message(&alice(), "ns1", Some("no RBAC rule")),
            "uploadtokenrequests.upload.cdi.kubevirt.io is forbidden: User \"alice\" cannot create \
             resource \"uploadtokenrequests\" in API group \"upload.cdi.kubevirt.io\" in the \
             namespace \"ns1\": no RBAC rule"
        );
        assert!(forbidden_message(&alice(), "ns1", Some("")).ends_with("\"ns1\""));
    }
}
