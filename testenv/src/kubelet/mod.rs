//! The kubelet stand-in: schedules pods onto one fake node, provisions hostPath volumes for
//! them, runs their container as a local process and reports pod status as a kubelet would.
//!
//! Each pod's single container (init containers are not supported) maps to a local binary by
//! image name. Its mounts become symlinks under a per-pod root passed as `CDI_ROOT`; port 8443
//! is mapped to a free loopback port passed as `CDI_METRICS_ADDR` and published in the pod's
//! [`PORTS_ANNOTATION`]; `podIP` is 127.0.0.1. Restart policies are honoured with a short
//! back-off (1 s doubling to 8 s, instead of the kubelet's 10 s to 5 min).

pub mod csi;
mod pod;
pub mod snapshot;
mod sparse;
mod storage;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Node, NodeCondition, NodeStatus, ObjectReference,
    PersistentVolumeClaim, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

pub use pod::{PORTS_ANNOTATION, WORKER_PORT, image_name};
pub use storage::{SELECTED_NODE, STORAGE_CLASS, STORAGE_CLASS_WFFC, quantity_bytes};

use crate::Error;
use crate::process::{free_port, spawn_tied};

/// The one node every pod is scheduled to.
pub const STANDIN_NODE: &str = "cdi-standin";

/// How many times (every 500 ms) a pod waits for a ConfigMap or Secret it mounts to appear.
const MISSING_WAITS: u32 = 60;

/// How long to wait between scheduling attempts while a pod's claims are not bound.
const SCHEDULE_RETRY: Duration = Duration::from_millis(250);

/// A running stand-in; dropping it stops its loops and kills the processes it started.
#[derive(Debug)]
pub struct KubeletStandIn {
    tasks: Mutex<Vec<JoinHandle<()>>>,
    shared: Arc<Shared>,
    /// Whether the CSI driver and snapshotter stand-ins run ([`Self::enable_csi`]).
    csi: tokio::sync::Mutex<bool>,
}

struct Shared {
    client: Client,
    root: PathBuf,
    binaries: BTreeMap<String, PathBuf>,
    /// Pods being scheduled or run, by UID, with the pid of their current process if any.
    pods: Mutex<HashMap<String, Option<u32>>>,
    /// Bind provisioned claims at once instead of leaving it to the controller-manager.
    bind_now: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("root", &self.root)
            .field("binaries", &self.binaries)
            .finish_non_exhaustive()
    }
}

impl KubeletStandIn {
    /// Registers the node and StorageClasses and starts watching. `binaries` maps an image's
    /// repository name (e.g. `cdi-importer`) to the local binary that plays it; `root` holds
    /// volumes and pod directories.
    pub async fn start(
        client: Client,
        root: PathBuf,
        binaries: BTreeMap<String, PathBuf>,
    ) -> Result<KubeletStandIn, Error> {
        register_node(&client).await?;
        storage::ensure_storage_classes(&client).await?;
        let shared = Arc::new(Shared {
            client,
            root,
            binaries,
            pods: Mutex::new(HashMap::new()),
            bind_now: std::sync::atomic::AtomicBool::new(false),
        });
        let tasks = vec![
            tokio::spawn(provision_loop(shared.clone())),
            tokio::spawn(pod_loop(shared.clone())),
        ];
        Ok(KubeletStandIn {
            tasks: Mutex::new(tasks),
            shared,
            csi: tokio::sync::Mutex::new(false),
        })
    }

    /// From now on, binds each claim it provisions itself, at once ([`storage::bind_now`]),
    /// instead of leaving that to the controller-manager's binder (a few claims a second):
    /// for benchmarks that measure what happens after binding.
    pub fn bind_claims_at_once(&self) {
        self.shared
            .bind_now
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts the CSI driver stand-in and its snapshotter (once; later calls do nothing):
    /// StorageClass [`csi::CSI_STORAGE_CLASS`] of driver [`csi::CSI_DRIVER`], which provisions
    /// empty volumes, clones of a claim and restores of a VolumeSnapshot, and expands them; the
    /// `snapshot.storage.k8s.io/v1` CRDs, VolumeSnapshotClass [`snapshot::SNAPSHOT_CLASS`] and
    /// a snapshotter for that driver's volumes.
    pub async fn enable_csi(&self) -> Result<(), Error> {
        let mut enabled = self.csi.lock().await;
        if *enabled {
            return Ok(());
        }
        csi::install(&self.shared.client).await?;
        snapshot::install(&self.shared.client).await?;
        let driver = Arc::new(csi::CsiDriver::new(
            self.shared.client.clone(),
            self.shared.root.clone(),
        ));
        let started = [
            tokio::spawn(csi::claim_loop(driver.clone())),
            tokio::spawn(csi::reclaim_loop(driver.clone())),
            tokio::spawn(snapshot::snapshot_loop(driver)),
        ];
        self.tasks
            .lock()
            .map_err(|_| Error::Setup("the stand-in's task list is poisoned".into()))?
            .extend(started);
        *enabled = true;
        Ok(())
    }

    /// Where the stand-in keeps the files of pod `namespace/name` (logs, mount roots).
    pub fn pod_dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.shared
            .root
            .join("pods")
            .join(format!("{namespace}_{name}"))
    }

    /// The output of a pod's container (all runs, appended), for test failure messages.
    pub fn pod_log(&self, namespace: &str, name: &str, container: &str) -> String {
        std::fs::read_to_string(
            self.pod_dir(namespace, name)
                .join(format!("{container}.log")),
        )
        .unwrap_or_default()
    }
}

impl Drop for KubeletStandIn {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
        let pods = self
            .shared
            .pods
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        for pid in pods.values().flatten() {
            kill(*pid, rustix::process::Signal::KILL);
        }
    }
}

fn kill(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

async fn register_node(client: &Client) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(STANDIN_NODE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let status = NodeStatus {
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("the cdi-rs kubelet stand-in is running".into()),
            last_heartbeat_time: Some(now()),
            last_transition_time: Some(now()),
        }]),
        capacity: Some(BTreeMap::from([
            (
                "cpu".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into()),
            ),
            (
                "memory".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("24Gi".into()),
            ),
            (
                "pods".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1000".into()),
            ),
        ])),
        ..Default::default()
    };
    let patch = serde_json::json!({ "status": status });
    api.patch_status(STANDIN_NODE, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// How long a watch waits after an error before it tries again.
const WATCH_RETRY: Duration = Duration::from_millis(250);

/// The objects a watch on all of `api` reports created or changed (those listed when it starts
/// too); a watch error is logged, naming `what`, and the watch goes on after [`WATCH_RETRY`].
pub(crate) fn applied<K>(api: Api<K>, what: &'static str) -> impl futures::Stream<Item = K> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, watcher::Config::default()).filter_map(move |event| async move {
        match event {
            Ok(watcher::Event::Apply(k) | watcher::Event::InitApply(k)) => Some(k),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!("stand-in: {what} watch: {e}");
                // Not in a tight loop while the API server is away.
                tokio::time::sleep(WATCH_RETRY).await;
                None
            }
        }
    })
}

/// How many claims are provisioned at once (a burst of claims is not served one by one).
const PROVISION_PARALLEL: usize = 16;

async fn provision_loop(shared: Arc<Shared>) {
    let api: Api<PersistentVolumeClaim> = Api::all(shared.client.clone());
    let mut claims = std::pin::pin!(applied(api, "claim"));
    let slots = Arc::new(tokio::sync::Semaphore::new(PROVISION_PARALLEL));
    // Claims being provisioned, so that a change to one meanwhile does not start it twice.
    let busy: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    while let Some(pvc) = claims.next().await {
        if !storage::wants_volume(&pvc) {
            continue;
        }
        let uid = pvc.uid().unwrap_or_default();
        if !busy.lock().is_ok_and(|mut b| b.insert(uid.clone())) {
            continue;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (shared, busy) = (shared.clone(), busy.clone());
        tokio::spawn(async move {
            let mut result = storage::provision(&shared.client, &shared.root, &pvc).await;
            if result.is_ok() && shared.bind_now.load(std::sync::atomic::Ordering::Relaxed) {
                result = storage::bind_now(&shared.client, &pvc).await;
            }
            if let Err(e) = result {
                tracing::warn!(
                    "stand-in: provisioning {}/{}: {e}",
                    pvc.namespace().unwrap_or_default(),
                    pvc.name_any()
                );
            }
            if let Ok(mut b) = busy.lock() {
                b.remove(&uid);
            }
            drop(slot);
        });
    }
}

async fn pod_loop(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                on_pod(&shared, pod).await
            }
            Ok(watcher::Event::Delete(pod)) => {
                let pid = pod
                    .uid()
                    .and_then(|uid| shared.pods.lock().ok()?.remove(&uid))
                    .flatten();
                if let Some(pid) = pid {
                    kill(pid, rustix::process::Signal::KILL);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("stand-in: pod watch: {e}");
                tokio::time::sleep(WATCH_RETRY).await;
            }
        }
    }
}

fn is_ours(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let node = spec.and_then(|s| s.node_name.as_deref());
    let scheduler = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("default-scheduler");
    node == Some(STANDIN_NODE) || (node.is_none() && scheduler == "default-scheduler")
}

async fn on_pod(shared: &Arc<Shared>, pod: Pod) {
    if !is_ours(&pod) {
        return;
    }
    let (Some(uid), Some(ns)) = (pod.uid(), pod.namespace()) else {
        return;
    };
    let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(STANDIN_NODE);
    if pod.metadata.deletion_timestamp.is_some() {
        if bound {
            // Play the kubelet's part of a graceful delete: stop the process, then finish it.
            let pid = shared
                .pods
                .lock()
                .ok()
                .and_then(|mut p| p.remove(&uid))
                .flatten();
            if let Some(pid) = pid {
                kill(pid, rustix::process::Signal::TERM);
            }
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let _ = Api::<Pod>::namespaced(shared.client.clone(), &ns)
                .delete(&pod.name_any(), &dp)
                .await;
        }
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return;
    }
    {
        let Ok(mut pods) = shared.pods.lock() else {
            return;
        };
        if pods.contains_key(&uid) {
            return;
        }
        pods.insert(uid.clone(), None);
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let name = pod.name_any();
        if let Err(e) = run_pod(&shared, pod).await {
            tracing::warn!("stand-in: pod {ns}/{name}: {e}");
        }
    });
}

/// Still tracked (not deleted) pod?
fn tracked(shared: &Shared, uid: &str) -> bool {
    shared
        .pods
        .lock()
        .map(|p| p.contains_key(uid))
        .unwrap_or(false)
}

async fn run_pod(shared: &Arc<Shared>, mut pod: Pod) -> Result<(), Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_none()
    {
        schedule(shared, &pod).await?;
        if !tracked(shared, &uid) {
            return Ok(());
        }
        pod = api.get(&name).await?;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let pod_dir = shared.root.join("pods").join(format!("{ns}_{name}"));
    std::fs::create_dir_all(&pod_dir)
        .map_err(|e| Error::io(format!("create {}", pod_dir.display()), e))?;
    let start_time = now();
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) || spec.containers.len() != 1 {
        let status = failed_status(
            &start_time,
            "the kubelet stand-in runs exactly one container and no init containers",
        );
        patch_status(&api, &name, &status).await?;
        return Ok(());
    }
    let container = spec.containers[0].clone();

    // Ports: every declared container port, and 8443 always (CDI's workers serve on it).
    let mut ports = BTreeMap::new();
    let declared = container.ports.iter().flatten().map(|p| p.container_port);
    for container_port in declared.chain([WORKER_PORT]) {
        if let std::collections::btree_map::Entry::Vacant(e) = ports.entry(container_port) {
            e.insert(free_port().map_err(|e| Error::io("find a free port".into(), e))?);
        }
    }
    let ports_json: BTreeMap<String, u16> =
        ports.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let annotate = serde_json::json!({ "metadata": { "annotations": {
        PORTS_ANNOTATION: serde_json::to_string(&ports_json).unwrap_or_default() } } });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&annotate))
        .await?;

    // An image with no local binary behaves as an image that cannot be pulled: the pod stays
    // Pending with the container waiting in ErrImagePull, as on a real node.
    let image = container.image.clone().unwrap_or_default();
    if !shared.binaries.contains_key(image_name(&image)) {
        let status = PodStatus {
            phase: Some("Pending".into()),
            start_time: Some(start_time.clone()),
            container_statuses: Some(vec![ContainerStatus {
                name: container.name.clone(),
                image: image.clone(),
                image_id: String::new(),
                ready: false,
                restart_count: 0,
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("ErrImagePull".into()),
                        message: Some(format!(
                            "the kubelet stand-in has no local binary for image {image:?}"
                        )),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        patch_status(&api, &name, &status).await?;
        return Ok(());
    }

    let restart_policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let mut restarts = 0;
    let mut last_state: Option<ContainerStateTerminated> = None;
    let mut backoff = Duration::from_secs(1);
    let mut missing_waits = 0;
    loop {
        let prepared = match pod::prepare(
            &shared.client,
            &pod,
            &container,
            &shared.binaries,
            &pod_dir,
            &ports,
        )
        .await
        {
            Ok(p) => p,
            // A ConfigMap or Secret the pod mounts may not exist yet (kube-root-ca.crt appears
            // a moment after its namespace): wait for it, as a kubelet does, then give up.
            Err(message) if message.contains("not found") && missing_waits < MISSING_WAITS => {
                missing_waits += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(message) => {
                let status = failed_status(&start_time, &message);
                patch_status(&api, &name, &status).await?;
                return Ok(());
            }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&prepared.log)
            .map_err(|e| Error::io(format!("open {}", prepared.log.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("dup log".into(), e))?;
        let mut cmd = Command::new(&prepared.program);
        cmd.args(&prepared.args)
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| {
                matches!(k.as_str(), "PATH" | "HOME" | "TMPDIR" | "RUST_BACKTRACE")
            }))
            .envs(&prepared.env)
            .current_dir(&prepared.root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let mut child = spawn_tied(cmd)
            .map_err(|e| Error::io(format!("start {}", prepared.program.display()), e))?;
        let started = now();
        {
            let Ok(mut pods) = shared.pods.lock() else {
                return Ok(());
            };
            match pods.get_mut(&uid) {
                Some(pid) => *pid = Some(child.id()),
                None => {
                    // Deleted while starting.
                    crate::process::stop(&mut child, Duration::from_secs(1));
                    return Ok(());
                }
            }
        }
        let running = ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started.clone()),
            }),
            ..Default::default()
        };
        let status = pod_status(
            "Running",
            &start_time,
            &container,
            running,
            last_state.clone(),
            restarts,
            true,
        );
        patch_status(&api, &name, &status).await?;

        let exit = tokio::task::spawn_blocking(move || child.wait())
            .await
            .map_err(|e| Error::Setup(format!("wait task: {e}")))?
            .map_err(|e| Error::io("wait for the container".into(), e))?;
        if !tracked(shared, &uid) {
            return Ok(()); // deleted: the pod object is gone or going
        }
        let code = exit.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&exit).unwrap_or(0)
        });
        let message = std::fs::read_to_string(&prepared.termination_log).unwrap_or_default();
        let terminated = ContainerStateTerminated {
            exit_code: code,
            reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
            message: (!message.is_empty()).then_some(message),
            started_at: Some(started),
            finished_at: Some(now()),
            ..Default::default()
        };
        let restart = match restart_policy.as_str() {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        };
        if !restart {
            let phase = if code == 0 { "Succeeded" } else { "Failed" };
            let state = ContainerState {
                terminated: Some(terminated),
                ..Default::default()
            };
            let status = pod_status(
                phase,
                &start_time,
                &container,
                state,
                last_state,
                restarts,
                false,
            );
            patch_status(&api, &name, &status).await?;
            if let Ok(mut pods) = shared.pods.lock() {
                pods.insert(uid.clone(), None);
            }
            return Ok(());
        }
        let waiting = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".into()),
                message: Some(format!(
                    "back-off {}s restarting failed container",
                    backoff.as_secs()
                )),
            }),
            ..Default::default()
        };
        last_state = Some(terminated);
        restarts += 1;
        let status = pod_status(
            "Running",
            &start_time,
            &container,
            waiting,
            last_state.clone(),
            restarts,
            false,
        );
        patch_status(&api, &name, &status).await?;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(8));
        if !tracked(shared, &uid) {
            return Ok(());
        }
        if let Ok(Some(fresh)) = api.get_opt(&name).await {
            pod = fresh;
        }
    }
}

/// Places the pod on the node once every claim it uses is bound, selecting the node for
/// WaitForFirstConsumer claims on the way, as the scheduler's volume binding does.
async fn schedule(shared: &Shared, pod: &Pod) -> Result<(), Error> {
    let ns = pod.namespace().unwrap_or_default();
    let uid = pod.uid().unwrap_or_default();
    let claims: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|v| {
            v.iter()
                .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone()))
                .collect()
        })
        .unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), &ns);
    loop {
        if !tracked(shared, &uid) {
            return Ok(());
        }
        let mut all_bound = true;
        for claim in &claims {
            let Some(pvc) = pvcs.get_opt(claim).await? else {
                all_bound = false;
                continue;
            };
            let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            let class = pvc
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref());
            if !bound
                && class == Some(STORAGE_CLASS_WFFC)
                && !pvc.annotations().contains_key(SELECTED_NODE)
            {
                let patch = serde_json::json!({ "metadata": { "annotations": { SELECTED_NODE: STANDIN_NODE } } });
                pvcs.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            all_bound &= bound;
        }
        if all_bound {
            break;
        }
        tokio::time::sleep(SCHEDULE_RETRY).await;
    }
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name_any()),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(STANDIN_NODE.into()),
            api_version: Some("v1".into()),
            ..Default::default()
        },
    };
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let body =
        serde_json::to_vec(&binding).map_err(|e| Error::Setup(format!("encode binding: {e}")))?;
    let req = http::Request::post(format!(
        "/api/v1/namespaces/{ns}/pods/{}/binding",
        pod.name_any()
    ))
    .header("content-type", "application/json")
    .body(body)
    .map_err(|e| Error::Setup(format!("binding request: {e}")))?;
    drop(api);
    shared.client.request_text(req).await?;
    Ok(())
}

fn failed_status(start_time: &Time, message: &str) -> PodStatus {
    PodStatus {
        phase: Some("Failed".into()),
        reason: Some("StandInUnsupported".into()),
        message: Some(message.into()),
        start_time: Some(start_time.clone()),
        ..Default::default()
    }
}

fn pod_status(
    phase: &str,
    start_time: &Time,
    container: &k8s_openapi::api::core::v1::Container,
    state: ContainerState,
    last_state: Option<ContainerStateTerminated>,
    restarts: i32,
    ready: bool,
) -> PodStatus {
    let condition = |type_: &str, ok: bool| PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        last_transition_time: Some(now()),
        ..Default::default()
    };
    PodStatus {
        phase: Some(phase.into()),
        host_ip: Some("127.0.0.1".into()),
        pod_ip: Some("127.0.0.1".into()),
        pod_ips: Some(vec![PodIP {
            ip: "127.0.0.1".into(),
        }]),
        start_time: Some(start_time.clone()),
        conditions: Some(vec![
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ]),
        container_statuses: Some(vec![ContainerStatus {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            image_id: String::new(),
            ready,
            restart_count: restarts,
            started: Some(state.running.is_some()),
            state: Some(state),
            last_state: last_state.map(|t| ContainerState {
                terminated: Some(t),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// How long a pod status update is retried while the API server cannot be reached.
const STATUS_RETRY_FOR: Duration = Duration::from_secs(60);

/// Writes a pod's status, retrying while the API server is unreachable or failing (it may be
/// restarting), as a kubelet does: a status lost then would leave the pod's state unknown
/// to its controller for good.
async fn patch_status(api: &Api<Pod>, name: &str, status: &PodStatus) -> Result<(), Error> {
    let patch = serde_json::json!({ "status": status });
    let deadline = tokio::time::Instant::now() + STATUS_RETRY_FOR;
    loop {
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code < 500 => return Err(kube::Error::Api(s).into()),
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e.into()),
            Err(e) => {
                tracing::debug!("stand-in: status of pod {name} not written yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
