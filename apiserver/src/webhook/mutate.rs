//! `/datavolume-mutate`: a DataVolume that clones gets its clone token when the requesting user
//! may read the source, and is refused with the reason when not.
//!
//! ```text
//!  CREATE DataVolume ─► source_lookup ─► (GET DataSource) ─► CloneCheck: SARs until decided
//!     not a clone ──────────────────────────────────────► admitted unchanged
//!     allowed ──► token (cdi-apiserver, 5 min) ──► admitted + annotation storage.clone.token
//!     denied ───► refused 403 with who, what is missing where, and the authorizer's reason
//! ```
//!
//! A DataVolume admitted without a token loses any clone token its creator wrote into it: only
//! this webhook gives tokens, for the user it has checked.
//!
//! As upstream: a DataVolume marked `storage.prePopulated` or `storage.checkStaticVolume` may
//! not need its source, so a missing DataSource or a denial admits it without a token; the
//! token is added on CREATE only (the webhook is registered for CREATE).

use std::sync::Arc;

use cdi_crds::DataSource;
use cdi_crds::annotations::{clone, switches};
use cdi_token::{CloneRequest, CloneSource};
use futures_util::future::BoxFuture;
use kube::api::Api;
use kube::core::admission::{AdmissionResponse, Operation};

use super::clone_auth::{self, CloneCheck, SourceLookup, Step};
use super::review::{self, Refusal, Request};
use crate::authz::Authorizer;
use crate::issuer::TokenIssuer;

/// Reads DataSources (the server's client; a stub in tests).
pub trait DataSources: Send + Sync + 'static {
    /// The DataSource `namespace/name`, or `None` when there is none.
    fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Option<DataSource>, kube::Error>>;
}

/// Reads DataSources from the cluster (needs `get` on `datasources`).
#[derive(Clone)]
pub struct KubeDataSources {
    client: kube::Client,
}

impl std::fmt::Debug for KubeDataSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeDataSources").finish_non_exhaustive()
    }
}

impl KubeDataSources {
    pub fn new(client: kube::Client) -> KubeDataSources {
        KubeDataSources { client }
    }
}

impl DataSources for KubeDataSources {
    fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Option<DataSource>, kube::Error>> {
        let api: Api<DataSource> = Api::namespaced(self.client.clone(), namespace);
        let name = name.to_owned();
        Box::pin(async move { api.get_opt(&name).await })
    }
}

/// What the mutating webhook needs.
#[derive(Clone)]
pub struct MutateState {
    pub issuer: Arc<dyn TokenIssuer>,
    pub authorizer: Arc<dyn Authorizer>,
    pub data_sources: Arc<dyn DataSources>,
}

impl std::fmt::Debug for MutateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutateState").finish_non_exhaustive()
    }
}

/// Admits (or refuses) one DataVolume request.
pub async fn admit(state: &MutateState, request: &Request) -> AdmissionResponse {
    if request.operation != Operation::Create {
        return review::allow(request);
    }
    let dv = match review::data_volume(request, false) {
        Ok(dv) => dv,
        Err(e) => return review::refuse(request, Refusal::bad_request(e.to_string())),
    };
    if dv.metadata.deletion_timestamp.is_some() {
        return review::allow(request);
    }
    let target_namespace = dv
        .metadata
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .or_else(|| request.namespace.clone())
        .unwrap_or_default();
    let target_name = dv
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| request.name.clone());
    let annotations = dv.metadata.annotations.as_ref();
    let no_token_needed = annotations.is_some_and(|a| {
        a.contains_key(switches::PRE_POPULATED) || a.contains_key(switches::CHECK_STATIC_VOLUME)
    });
    let user = request.user_info.username.as_deref().unwrap_or("");

    let source = match resolve_source(state, &dv.spec, &target_namespace, no_token_needed).await {
        Ok(Some(source)) => source,
        Ok(None) => return without_token(request, annotations),
        Err(refusal) => return review::refuse(request, refusal),
    };
    let check = CloneCheck::new(
        &request.user_info,
        CloneRequest {
            source,
            target_namespace,
            target_name,
        },
    );
    match authorize(state, &check).await {
        Ok(None) => {}
        Ok(Some(_)) if no_token_needed => return without_token(request, annotations),
        Ok(Some(denial)) => {
            tracing::info!(user, source = %check.request().source, "Clone refused.");
            return review::refuse(request, Refusal::forbidden(denial));
        }
        Err(refusal) => return review::refuse(request, refusal),
    }

    let token = match state.issuer.issue_clone(check.request()) {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "Signing a clone token failed.");
            return review::refuse(
                request,
                Refusal::internal("the clone token could not be signed"),
            );
        }
    };
    let target = check.request();
    tracing::info!(
        user,
        source = %target.source,
        target = %format!("{}/{}", target.target_namespace, target.target_name),
        "Clone token added."
    );
    review::allow_with_patch(
        request,
        review::annotation_patch(annotations, clone::TOKEN, &token),
    )
}

/// The source the DataVolume clones; `None` when it clones nothing (or nothing yet) and may be
/// admitted without a token.
async fn resolve_source(
    state: &MutateState,
    spec: &cdi_crds::DataVolumeSpec,
    target_namespace: &str,
    no_token_needed: bool,
) -> Result<Option<CloneSource>, Refusal> {
    let (namespace, name) = match clone_auth::source_lookup(spec, target_namespace) {
        SourceLookup::NotAClone => return Ok(None),
        SourceLookup::Direct(source) => return Ok(Some(source)),
        SourceLookup::DataSource { namespace, name } => (namespace, name),
    };
    match state.data_sources.get(&namespace, &name).await {
        Ok(Some(data_source)) => Ok(clone_auth::data_source_target(
            &data_source,
            target_namespace,
        )),
        Ok(None) if no_token_needed => Ok(None),
        Ok(None) => Err(Refusal::not_found(format!(
            "spec.sourceRef names DataSource {namespace}/{name}, which does not exist: create \
             it first, or mark a pre-populated DataVolume with annotation {}",
            switches::PRE_POPULATED
        ))),
        Err(e) => {
            tracing::error!(data_source = %format!("{namespace}/{name}"), error = %e, "Reading a DataSource failed.");
            Err(Refusal::internal(format!(
                "reading DataSource {namespace}/{name} failed: {e}"
            )))
        }
    }
}

/// Sends the check's reviews until it is decided: `None` when allowed, else the denial.
async fn authorize(state: &MutateState, check: &CloneCheck) -> Result<Option<String>, Refusal> {
    let mut answers = Vec::new();
    loop {
        match check.next(&answers) {
            Step::Review(sar) => match state.authorizer.review(*sar).await {
                Ok(decision) => answers.push(decision),
                Err(e) => {
                    tracing::error!(error = %e, "SubjectAccessReview failed.");
                    return Err(Refusal::internal(format!(
                        "the clone authorization check could not be made: {e}"
                    )));
                }
            },
            Step::Allowed => return Ok(None),
            Step::Denied(denial) => return Ok(Some(denial)),
        }
    }
}

/// Admitted without a clone token: unchanged, or with a token its creator set removed.
fn without_token(
    request: &Request,
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> AdmissionResponse {
    if annotations.is_some_and(|a| a.contains_key(clone::TOKEN)) {
        tracing::info!(
            user = request.user_info.username.as_deref().unwrap_or(""),
            "Removing a clone token the DataVolume was created with."
        );
        review::allow_with_patch(request, review::annotation_removal(clone::TOKEN))
    } else {
        review::allow(request)
    }
}
