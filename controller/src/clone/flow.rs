//! The DataVolume side of a clone: resolves the source (a DataSource first, if named), checks
//! that the requester may read it and that it is there and populated, decides the strategy
//! ([`strategy::decide`]) and creates what the strategy needs: a claim whose `dataSource` is the
//! source claim (CSI clone), a VolumeSnapshot and then a claim restored from it (smart clone,
//! the snapshot deleted once the claim is bound), or a claim annotated with
//! `k8s.io/CloneRequest` that the worker controller fills host-assisted. A snapshot source is
//! restored directly when the storage can, else into a temporary claim beside it, which is then
//! copied host-assisted. Every decision is a pure function of what was read.

use std::collections::BTreeMap;
use std::time::Duration;

use cdi_crds::annotations::{clone as clone_ann, pod as pod_ann, switches};
use cdi_crds::{CloneStrategy, DataSource, DataVolume, DataVolumePhase};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, TypedLocalObjectReference,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, PostParams};
use kube::{Resource, ResourceExt};

use super::source::{self, CloneSource, Requested};
use super::strategy::{self, ClaimFacts, CloneFacts, Decision, Strategy};
use crate::context::EventSpec;
use crate::datavolume::plan::{self, PlanError, SourceSize, StorageView};
use crate::objects::{create_or_get as create_or_keep, delete_if_present};
use crate::{Context, Error};

/// How often a clone waiting for its snapshot looks again (snapshots are not watched).
const SNAPSHOT_POLL: Duration = Duration::from_secs(2);
/// The API group of VolumeSnapshots.
const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";

/// Where a clone DataVolume stands after this pass.
#[derive(Debug, Default)]
pub struct CloneStep {
    /// The target claim, once it exists.
    pub claim: Option<PersistentVolumeClaim>,
    /// Why the clone waits (or, when terminal, fails) before its claim exists.
    pub waiting: Option<PlanError>,
    /// The DataVolume's phase while there is no claim yet.
    pub phase: Option<DataVolumePhase>,
    /// Events beyond those of the status change (a strategy fallback).
    pub events: Vec<EventSpec>,
    /// Look again after this long (something not watched is awaited).
    pub requeue: Option<Duration>,
}

impl CloneStep {
    fn waiting(error: PlanError) -> CloneStep {
        CloneStep {
            waiting: Some(error),
            ..Default::default()
        }
    }
}

/// The VolumeSnapshot API, read dynamically (its CRDs may not be installed).
pub fn snapshot_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk(SNAPSHOT_GROUP, "v1", "VolumeSnapshot");
    ApiResource::from_gvk_with_plural(&gvk, "volumesnapshots")
}

fn snapshot_content_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk(SNAPSHOT_GROUP, "v1", "VolumeSnapshotContent");
    ApiResource::from_gvk_with_plural(&gvk, "volumesnapshotcontents")
}

/// What a VolumeSnapshot tells a clone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotFacts {
    pub ready: bool,
    /// `status.restoreSize` in bytes.
    pub restore_size: Option<u64>,
    /// `status.error.message`, from the snapshotter.
    pub error: Option<String>,
    /// `status.boundVolumeSnapshotContentName`.
    pub content: Option<String>,
    /// The volume mode of the snapshotted claim, when recorded (upstream's
    /// `storage.import.sourceVolumeMode`).
    pub block: Option<bool>,
}

impl SnapshotFacts {
    pub fn of(snapshot: &DynamicObject) -> SnapshotFacts {
        let status = snapshot.data.get("status");
        let field = |name: &str| status.and_then(|s| s.get(name));
        SnapshotFacts {
            ready: field("readyToUse").and_then(|v| v.as_bool()) == Some(true),
            restore_size: field("restoreSize")
                .and_then(|v| v.as_str())
                .and_then(cdi_crds::quantity::parse_bytes),
            error: field("error")
                .and_then(|e| e.get("message"))
                .and_then(|m| m.as_str())
                .map(str::to_owned),
            content: field("boundVolumeSnapshotContentName")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            block: snapshot
                .annotations()
                .get(cdi_crds::annotations::import::SOURCE_VOLUME_MODE)
                .map(|m| m == "Block"),
        }
    }
}

/// Whether a source claim holds its data: bound, and (when CDI filled it) its worker finished.
pub fn populated(source: &PersistentVolumeClaim) -> Result<(), PlanError> {
    let key = format!(
        "{}/{}",
        source.namespace().unwrap_or_default(),
        source.name_any()
    );
    if source.metadata.deletion_timestamp.is_some() {
        return Err(PlanError::waiting(
            "CloneWithoutSource",
            format!("the source claim {key} is being deleted"),
        ));
    }
    let phase = source.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase != Some("Bound") {
        return Err(PlanError::waiting(
            "CloneSourceNotPopulated",
            format!(
                "the source claim {key} is not bound yet ({}); the clone waits for it",
                phase.unwrap_or("Pending")
            ),
        ));
    }
    match source
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(pod_ann::PHASE))
    {
        Some(p) if p != "Succeeded" => Err(PlanError::waiting(
            "CloneSourceNotPopulated",
            format!(
                "the source claim {key} is still being filled (worker {p}); the clone waits for \
                 it to succeed"
            ),
        )),
        _ => Ok(()),
    }
}

/// The facts of a claim for the strategy: its class's provisioner, mode and sizes.
fn claim_facts(
    spec: Option<&PersistentVolumeClaimSpec>,
    capacity: Option<u64>,
    view: &StorageView,
) -> ClaimFacts {
    ClaimFacts {
        provisioner: spec
            .and_then(|s| s.storage_class_name.as_deref())
            .and_then(|c| view.class_provisioner(c)),
        block: spec.and_then(|s| s.volume_mode.as_deref()) == Some("Block"),
        requested: spec.and_then(plan::requested_bytes).unwrap_or(0),
        capacity,
    }
}

/// Everything the decision needs about the target's storage.
#[derive(Clone, Debug, Default)]
pub struct TargetStorage {
    pub override_strategy: Option<CloneStrategy>,
    pub profile_strategy: Option<CloneStrategy>,
    pub snapshot_class: Option<String>,
    pub expandable: bool,
}

impl TargetStorage {
    fn of(
        target: &PersistentVolumeClaim,
        ctx: &Context,
        override_strategy: Option<CloneStrategy>,
    ) -> TargetStorage {
        let class = target
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
            .unwrap_or_default();
        let status = ctx
            .stores
            .storage_profile(&class)
            .and_then(|p| p.status.clone())
            .unwrap_or_default();
        TargetStorage {
            override_strategy,
            profile_strategy: status.clone_strategy,
            snapshot_class: status.snapshot_class,
            expandable: ctx
                .stores
                .storage_class(&class)
                .and_then(|c| c.allow_volume_expansion)
                .unwrap_or(false),
        }
    }
}

/// The decision for cloning claim `source` into `target`.
pub fn decide_for_claim(
    dv: &DataVolume,
    source: &PersistentVolumeClaim,
    target: &PersistentVolumeClaim,
    storage: &TargetStorage,
    view: &StorageView,
) -> Decision {
    let capacity = source
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| cdi_crds::quantity::parse_bytes(&q.0));
    strategy::decide(&CloneFacts {
        override_strategy: storage.override_strategy.clone(),
        profile_strategy: storage.profile_strategy.clone(),
        snapshot_class: storage.snapshot_class.is_some(),
        target_expandable: storage.expandable,
        permissive: permissive(dv),
        cross_namespace: source.metadata.namespace != target.metadata.namespace,
        source: claim_facts(source.spec.as_ref(), capacity, view),
        target: claim_facts(target.spec.as_ref(), None, view),
    })
}

/// The decision for restoring snapshot `facts` (taken by `driver`) into `target`: a restore
/// when the storage can (upstream's snapshot-source checks), else a copy from a claim restored
/// beside the snapshot.
pub fn decide_for_snapshot(
    dv: &DataVolume,
    facts: &SnapshotFacts,
    driver: Option<String>,
    same_namespace: bool,
    target: &PersistentVolumeClaim,
    storage: &TargetStorage,
    view: &StorageView,
) -> Decision {
    let target_facts = claim_facts(target.spec.as_ref(), None, view);
    let size = facts.restore_size.unwrap_or(0);
    strategy::decide(&CloneFacts {
        // Restoring needs no snapshot class: the snapshot exists.
        override_strategy: Some(CloneStrategy::Snapshot),
        profile_strategy: None,
        snapshot_class: true,
        target_expandable: storage.expandable,
        permissive: permissive(dv),
        cross_namespace: !same_namespace,
        source: ClaimFacts {
            provisioner: driver,
            block: facts.block.unwrap_or(target_facts.block),
            requested: size,
            capacity: Some(size),
        },
        target: target_facts,
    })
}

fn permissive(dv: &DataVolume) -> bool {
    dv.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(switches::PERMISSIVE_CLONE))
        .is_some_and(|v| v == "true")
}

/// A claim reference as `dataSource` takes it.
fn data_source(kind: &str, name: &str) -> TypedLocalObjectReference {
    TypedLocalObjectReference {
        api_group: (kind == "VolumeSnapshot").then(|| SNAPSHOT_GROUP.to_owned()),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

/// The target claim of `decision` cloning from `source` (`via` a temporary claim when a
/// snapshot is copied): the rendered claim with the decision's annotations and, for the
/// storage's own strategies, its `dataSource`.
pub fn target_claim(
    mut claim: PersistentVolumeClaim,
    decision: &Decision,
    source: &CloneSource,
    restored_from: Option<&str>,
) -> PersistentVolumeClaim {
    let Decision::Clone { strategy, .. } = decision else {
        return claim;
    };
    let annotations = claim.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in decision.annotations() {
        annotations.insert(k.to_owned(), v);
    }
    let spec = claim.spec.get_or_insert_with(Default::default);
    match (strategy, source) {
        (Strategy::Copy, CloneSource::Pvc { namespace, name }) => {
            annotations.insert(
                clone_ann::CLONE_REQUEST.into(),
                format!("{namespace}/{name}"),
            );
        }
        (Strategy::Copy, CloneSource::Snapshot { namespace, .. }) => {
            annotations.insert(
                clone_ann::CLONE_REQUEST.into(),
                format!("{namespace}/{}", restored_from.unwrap_or_default()),
            );
        }
        (Strategy::CsiClone, _) => {
            spec.data_source = Some(data_source("PersistentVolumeClaim", source.name()));
        }
        (Strategy::Snapshot, CloneSource::Snapshot { name, .. }) => {
            spec.data_source = Some(data_source("VolumeSnapshot", name));
        }
        (Strategy::Snapshot, CloneSource::Pvc { .. }) => {
            spec.data_source = Some(data_source(
                "VolumeSnapshot",
                restored_from.unwrap_or_default(),
            ));
        }
    }
    claim
}

/// The VolumeSnapshot a smart clone takes of `source` (in the DataVolume's namespace, owned by
/// it, so it goes with the DataVolume if the clone never finishes).
pub fn render_snapshot(dv: &DataVolume, source: &str, class: Option<&str>) -> DynamicObject {
    let name = cdi_crds::naming::clone_snapshot(dv.metadata.uid.as_deref().unwrap_or_default());
    let mut object = DynamicObject::new(&name, &snapshot_resource())
        .within(dv.metadata.namespace.as_deref().unwrap_or_default());
    object.metadata.labels = Some(plan::cdi_labels());
    object.metadata.owner_references = dv.controller_owner_ref(&()).map(|o| vec![o]);
    let mut spec = serde_json::json!({"source": {"persistentVolumeClaimName": source}});
    if let Some(class) = class {
        spec["volumeSnapshotClassName"] = class.into();
    }
    object.data = serde_json::json!({ "spec": spec });
    object
}

/// The claim a snapshot is restored into beside it, when it must be copied host-assisted
/// (another namespace, or storage that cannot restore it into the target).
pub fn render_restore_claim(
    dv: &DataVolume,
    snapshot: &str,
    namespace: &str,
    class: &str,
    facts: &SnapshotFacts,
) -> PersistentVolumeClaim {
    let name =
        cdi_crds::naming::clone_snapshot_claim(dv.metadata.uid.as_deref().unwrap_or_default());
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_owned()),
            labels: Some(plan::cdi_labels()),
            annotations: Some(BTreeMap::from([(
                clone_ann::CLONE_TARGET.to_owned(),
                format!(
                    "{}/{}",
                    dv.metadata.namespace.as_deref().unwrap_or_default(),
                    dv.name_any()
                ),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.to_owned()),
            volume_mode: Some(
                if facts.block == Some(true) {
                    "Block"
                } else {
                    "Filesystem"
                }
                .into(),
            ),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(facts.restore_size.unwrap_or(1 << 30).to_string()),
                )])),
                ..Default::default()
            }),
            data_source: Some(data_source("VolumeSnapshot", snapshot)),
            ..Default::default()
        }),
        status: None,
    }
}

/// The DataVolume side of a clone, for `dv` whose claim is `existing` (if it has one).
pub async fn reconcile(
    dv: &DataVolume,
    ctx: &Context,
    existing: Option<PersistentVolumeClaim>,
) -> Result<CloneStep, Error> {
    let ns = dv.namespace().unwrap_or_default();
    let uid = dv.metadata.uid.clone().unwrap_or_default();
    if let Some(claim) = existing {
        finish(ctx, dv, &claim).await?;
        return Ok(CloneStep {
            claim: Some(claim),
            ..Default::default()
        });
    }

    let Some(requested) = source::requested(dv) else {
        return Ok(CloneStep::waiting(PlanError::invalid(
            "the DataVolume names no clone source",
        )));
    };
    let source = match requested {
        Requested::Source(s) => s,
        Requested::DataSource { namespace, name } => {
            let ds = Api::<DataSource>::namespaced(ctx.client.clone(), &namespace)
                .get_opt(&name)
                .await?;
            match source::resolve(ds.as_ref(), &namespace, &name) {
                Ok(s) => s,
                Err(wait) => return Ok(CloneStep::waiting(wait)),
            }
        }
    };
    if source.namespace() != ns
        && let Err(denied) = super::authorize::check(ctx, dv, &source)
    {
        return Ok(CloneStep::waiting(denied));
    }

    let config = ctx.stores.effective_config();
    let view = StorageView {
        classes: ctx.stores.all_storage_classes(),
        profiles: ctx.stores.storage_profiles.state(),
    };
    let override_strategy = clone_strategy_override(ctx).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    match &source {
        CloneSource::Pvc { namespace, name } => {
            let Some(src) = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), namespace)
                .get_opt(name)
                .await?
            else {
                return Ok(CloneStep::waiting(PlanError::waiting(
                    "CloneWithoutSource",
                    format!(
                        "the source claim {namespace}/{name} does not exist; the DataVolume \
                         waits for it"
                    ),
                )));
            };
            if let Err(wait) = populated(&src) {
                return Ok(CloneStep::waiting(wait));
            }
            let size = SourceSize {
                bytes: src
                    .spec
                    .as_ref()
                    .and_then(plan::requested_bytes)
                    .unwrap_or(0),
                block: src.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block"),
            };
            let rendered = match plan::render_clone_claim(dv, &config, &view, size) {
                Ok(c) => c,
                Err(e) => return Ok(CloneStep::waiting(e)),
            };
            let storage = TargetStorage::of(&rendered, ctx, override_strategy);
            let decision = decide_for_claim(dv, &src, &rendered, &storage, &view);
            let strategy = match chosen(&decision) {
                Ok(s) => s,
                Err(wait) => return Ok(CloneStep::waiting(wait)),
            };
            let mut step = CloneStep {
                events: fallback_events(&decision),
                ..Default::default()
            };
            match strategy {
                Strategy::Snapshot => {
                    let snapshots: Api<DynamicObject> =
                        Api::namespaced_with(ctx.client.clone(), &ns, &snapshot_resource());
                    let snapshot_name = cdi_crds::naming::clone_snapshot(&uid);
                    let snapshot = match snapshots.get_opt(&snapshot_name).await? {
                        Some(s) => s,
                        None => {
                            let object =
                                render_snapshot(dv, name, storage.snapshot_class.as_deref());
                            tracing::info!(snapshot = %snapshot_name, "Snapshotting the clone source.");
                            create_or_keep(&snapshots, &object).await?
                        }
                    };
                    let facts = SnapshotFacts::of(&snapshot);
                    if !facts.ready {
                        step.phase = Some(DataVolumePhase::SnapshotForSmartCloneInProgress);
                        step.requeue = Some(SNAPSHOT_POLL);
                        if let Some(e) = facts.error {
                            step.events.push(EventSpec::warning(
                                "SnapshotForSmartCloneInProgress",
                                format!("snapshot {snapshot_name} reports: {e}"),
                            ));
                        }
                        return Ok(step);
                    }
                    let claim = target_claim(rendered, &decision, &source, Some(&snapshot_name));
                    step.claim = create_claim(&claims, claim).await?;
                }
                Strategy::Copy | Strategy::CsiClone => {
                    let claim = target_claim(rendered, &decision, &source, None);
                    step.claim = create_claim(&claims, claim).await?;
                }
            }
            Ok(step)
        }
        CloneSource::Snapshot { namespace, name } => {
            let snapshots: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), namespace, &snapshot_resource());
            let Some(snapshot) = snapshots.get_opt(name).await? else {
                return Ok(CloneStep::waiting(PlanError::waiting(
                    "CloneWithoutSource",
                    format!(
                        "the source VolumeSnapshot {namespace}/{name} does not exist; the \
                         DataVolume waits for it"
                    ),
                )));
            };
            let facts = SnapshotFacts::of(&snapshot);
            if !facts.ready {
                return Ok(CloneStep::waiting(PlanError::waiting(
                    "CloneSourceNotPopulated",
                    format!(
                        "the source VolumeSnapshot {namespace}/{name} is not ready to use yet{}",
                        facts
                            .error
                            .as_ref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                )));
            }
            let driver = snapshot_driver(ctx, facts.content.as_deref()).await?;
            let size = SourceSize {
                bytes: facts.restore_size.unwrap_or(0),
                block: facts.block.unwrap_or(false),
            };
            let rendered = match plan::render_clone_claim(dv, &config, &view, size) {
                Ok(c) => c,
                Err(e) => return Ok(CloneStep::waiting(e)),
            };
            let storage = TargetStorage::of(&rendered, ctx, override_strategy);
            let decision = decide_for_snapshot(
                dv,
                &facts,
                driver.clone(),
                *namespace == ns,
                &rendered,
                &storage,
                &view,
            );
            let strategy = match chosen(&decision) {
                Ok(s) => s,
                Err(wait) => return Ok(CloneStep::waiting(wait)),
            };
            let mut step = CloneStep {
                events: fallback_events(&decision),
                ..Default::default()
            };
            match strategy {
                Strategy::Copy => {
                    // Restore beside the snapshot, then copy that claim.
                    let Some(class) = driver.as_deref().and_then(|d| view.class_of_provisioner(d))
                    else {
                        return Ok(CloneStep::waiting(PlanError::waiting(
                            "CloneValidationFailed",
                            format!(
                                "the VolumeSnapshot {namespace}/{name} must be copied, but no \
                                 StorageClass of its driver {} exists to restore it into",
                                driver.as_deref().unwrap_or("(unknown)")
                            ),
                        )));
                    };
                    let restore = render_restore_claim(dv, name, namespace, &class, &facts);
                    let restored_name = restore.name_any();
                    create_or_keep(
                        &Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), namespace),
                        &restore,
                    )
                    .await?;
                    let claim = target_claim(rendered, &decision, &source, Some(&restored_name));
                    step.claim = create_claim(&claims, claim).await?;
                }
                Strategy::Snapshot | Strategy::CsiClone => {
                    let claim = target_claim(rendered, &decision, &source, None);
                    step.claim = create_claim(&claims, claim).await?;
                }
            }
            Ok(step)
        }
    }
}

/// The strategy `decision` chose, or why the clone waits (a target smaller than its source).
fn chosen(decision: &Decision) -> Result<Strategy, PlanError> {
    match decision {
        Decision::Clone { strategy, .. } => Ok(*strategy),
        Decision::Invalid { message } => {
            Err(PlanError::waiting("CloneValidationFailed", message.clone()))
        }
    }
}

/// After the target claim exists: once it holds its data, the temporary objects go (the
/// smart clone's snapshot, a snapshot copy's restored claim). Done in the pass that moves the
/// DataVolume to Succeeded or Failed (before its status is written, so a failed delete is
/// retried), and not again after it.
async fn finish(
    ctx: &Context,
    dv: &DataVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), Error> {
    let ended = dv
        .status
        .as_ref()
        .and_then(|s| s.phase.as_ref())
        .is_some_and(|p| matches!(p, DataVolumePhase::Succeeded | DataVolumePhase::Failed));
    if ended {
        return Ok(());
    }
    let a = claim.metadata.annotations.clone().unwrap_or_default();
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let uid = dv.metadata.uid.clone().unwrap_or_default();
    let ns = dv.namespace().unwrap_or_default();
    let copied = a.get(pod_ann::PHASE).is_some_and(|p| p == "Succeeded")
        || a.get(cdi_crds::annotations::import::FATAL_ERROR)
            .is_some_and(|v| v == "true");
    if bound
        && a.get(clone_ann::CLONE_TYPE)
            .is_some_and(|t| t == "snapshot")
        && !a.contains_key(clone_ann::CLONE_REQUEST)
    {
        let snapshots: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &snapshot_resource());
        delete_if_present(&snapshots, &cdi_crds::naming::clone_snapshot(&uid)).await?;
    }
    if copied
        && let Some((source_ns, source_name)) = a
            .get(clone_ann::CLONE_REQUEST)
            .and_then(|r| r.split_once('/'))
        && source_name == cdi_crds::naming::clone_snapshot_claim(&uid)
    {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), source_ns);
        delete_if_present(&claims, source_name).await?;
    }
    Ok(())
}

/// The CSI driver that took a snapshot, from its VolumeSnapshotContent.
async fn snapshot_driver(ctx: &Context, content: Option<&str>) -> Result<Option<String>, Error> {
    let Some(content) = content else {
        return Ok(None);
    };
    let contents: Api<DynamicObject> =
        Api::all_with(ctx.client.clone(), &snapshot_content_resource());
    Ok(contents.get_opt(content).await?.and_then(|c| {
        c.data
            .get("spec")
            .and_then(|s| s.get("driver"))
            .and_then(|d| d.as_str())
            .map(str::to_owned)
    }))
}

/// The CDI resource's `cloneStrategyOverride`, if a CDI resource says one (the CRD may be
/// absent: then there is none).
async fn clone_strategy_override(ctx: &Context) -> Option<CloneStrategy> {
    let list = Api::<cdi_crds::Cdi>::all(ctx.client.clone())
        .list(&Default::default())
        .await
        .ok()?;
    list.items
        .into_iter()
        .find_map(|cdi| cdi.spec.clone_strategy_override)
}

/// The Warning event of a fallback, as upstream emits it.
fn fallback_events(decision: &Decision) -> Vec<EventSpec> {
    match decision {
        Decision::Clone {
            fallback: Some(f), ..
        } => vec![EventSpec::warning(
            f.reason,
            format!("{}; cloning host-assisted instead", f.message),
        )],
        _ => Vec::new(),
    }
}

async fn create_claim(
    api: &Api<PersistentVolumeClaim>,
    claim: PersistentVolumeClaim,
) -> Result<Option<PersistentVolumeClaim>, Error> {
    match api.create(&PostParams::default(), &claim).await {
        Ok(created) => {
            tracing::info!(claim = %created.name_any(), "Clone target claim created.");
            Ok(Some(created))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}
