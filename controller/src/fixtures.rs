//! Objects for unit tests, built field by field so each test shows what it depends on.

use std::collections::BTreeMap;
use std::sync::Arc;

use cdi_crds::storageprofile::{ClaimPropertySet, StorageProfile, StorageProfileStatus};
use cdi_crds::{DataVolume, DataVolumeSpec, StorageSpec, VolumeMode};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodStatus, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::datavolume::plan::StorageView;

pub const NAMESPACE: &str = "ns";
pub const DV_UID: &str = "11111111-2222-3333-4444-555555555555";

/// A DataVolume `name` in [`NAMESPACE`] with UID [`DV_UID`] and the given source (JSON).
pub fn dv(name: &str, source: serde_json::Value) -> DataVolume {
    let mut dv = DataVolume::new(
        name,
        DataVolumeSpec {
            source: Some(serde_json::from_value(source).expect("a valid source")),
            storage: Some(StorageSpec {
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    dv.metadata.namespace = Some(NAMESPACE.into());
    dv.metadata.uid = Some(DV_UID.into());
    dv
}

/// A StorageClass with `provisioner` and binding mode; `default` marks it the cluster default.
pub fn storage_class(name: &str, binding: &str, default: bool) -> StorageClass {
    let mut annotations = BTreeMap::new();
    if default {
        annotations.insert(
            "storageclass.kubernetes.io/is-default-class".to_string(),
            "true".to_string(),
        );
    }
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(annotations),
            ..Default::default()
        },
        provisioner: "kubernetes.io/no-provisioner".into(),
        volume_binding_mode: Some(binding.into()),
        ..Default::default()
    }
}

/// A StorageProfile for `class` whose status offers RWO with `mode`.
pub fn profile(class: &str, mode: VolumeMode) -> StorageProfile {
    let mut p = StorageProfile::new(class, Default::default());
    p.status = Some(StorageProfileStatus {
        storage_class: Some(class.into()),
        claim_property_sets: Some(vec![ClaimPropertySet {
            access_modes: vec!["ReadWriteOnce".into()],
            volume_mode: mode,
        }]),
        ..Default::default()
    });
    p
}

/// Storage with one default Immediate class `local` (Filesystem) and a WFFC class `wffc`.
pub fn storage() -> StorageView {
    StorageView {
        classes: vec![
            Arc::new(storage_class("local", "Immediate", true)),
            Arc::new(storage_class("wffc", "WaitForFirstConsumer", false)),
        ],
        profiles: vec![
            Arc::new(profile("local", VolumeMode::Filesystem)),
            Arc::new(profile("wffc", VolumeMode::Filesystem)),
        ],
    }
}

fn pod_with(
    state: ContainerState,
    last: Option<ContainerState>,
    restarts: i32,
    phase: &str,
) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("importer-disk".into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "importer".into(),
                restart_count: restarts,
                state: Some(state),
                last_state: last,
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// A pod whose container runs.
pub fn pod_running(restarts: i32) -> Pod {
    pod_with(
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        },
        None,
        restarts,
        "Running",
    )
}

fn terminated(exit_code: i32, message: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code,
        message: Some(message.into()),
        reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
        ..Default::default()
    }
}

/// A pod whose container exited with `exit_code` and termination `message`.
pub fn pod_terminated(exit_code: i32, message: &str, restarts: i32) -> Pod {
    pod_with(
        ContainerState {
            terminated: Some(terminated(exit_code, message)),
            ..Default::default()
        },
        None,
        restarts,
        if exit_code == 0 {
            "Succeeded"
        } else {
            "Running"
        },
    )
}

/// A pod whose container waits with `reason`, after an earlier run that ended as `last`.
pub fn pod_waiting(reason: &str, last: Option<(i32, &str)>, restarts: i32) -> Pod {
    pod_with(
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: None,
            }),
            ..Default::default()
        },
        last.map(|(code, message)| ContainerState {
            terminated: Some(terminated(code, message)),
            ..Default::default()
        }),
        restarts,
        if last.is_some() { "Running" } else { "Pending" },
    )
}

/// One request the mock API server received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: serde_json::Value,
}

/// A mock API server (tower-test): answers by method and path from `objects` (path → JSON),
/// echoes created and patched bodies, 404s what it does not have, and records every request.
pub struct MockApi {
    pub seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl MockApi {
    /// The requests so far, as `METHOD path`.
    pub fn calls(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The body of the first request matching `method` and a path ending in `suffix`.
    pub fn body(&self, method: &str, suffix: &str) -> Option<serde_json::Value> {
        self.requests()
            .into_iter()
            .find(|s| s.method == method && s.path.ends_with(suffix))
            .map(|s| s.body)
    }
}

/// A context whose client talks to a [`MockApi`] serving `objects` (API path → object), with
/// the storage of [`storage`] in its caches.
pub fn mock_context(objects: BTreeMap<String, serde_json::Value>) -> (crate::Context, MockApi) {
    mock_context_with_storage(objects, storage())
}

/// Like [`mock_context`], with `view` in the caches.
pub fn mock_context_with_storage(
    objects: BTreeMap<String, serde_json::Value>,
    view: StorageView,
) -> (crate::Context, MockApi) {
    let (client, api) = mock_api(objects, false);
    (context_for(client, Some(view)), api)
}

/// Like [`mock_context`], but the server remembers: GET answers what POST created and PATCH
/// changed (so a reconcile can run twice), and the caches start empty.
pub fn stateful_mock_context() -> (crate::Context, MockApi) {
    let (client, api) = mock_api(BTreeMap::new(), true);
    (context_for(client, None), api)
}

/// The mock server behind the contexts above. Without `remember`, writes are echoed and the
/// objects never change.
fn mock_api(
    mut objects: BTreeMap<String, serde_json::Value>,
    remember: bool,
) -> (kube::Client, MockApi) {
    use http::{Request, Response};
    use kube::client::Body;

    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen: Arc<std::sync::Mutex<Vec<Seen>>> = Arc::default();
    let record = seen.clone();
    let task = tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_owned();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            record.lock().unwrap_or_else(|p| p.into_inner()).push(Seen {
                method: method.clone(),
                path: path.clone(),
                body: body.clone(),
            });
            let answer = if remember {
                remembered(&mut objects, &method, &path, body)
            } else {
                echoed(&objects, &method, &path, body)
            };
            let (status, answer) = answer.unwrap_or_else(|| (404, not_found()));
            let response = Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap_or_default()))
                .expect("a response");
            send.send_response(response);
        }
    });
    let client = kube::Client::new(service, "default");
    (client, MockApi { seen, _task: task })
}

/// Answers from fixed `objects`, echoing what is written.
fn echoed(
    objects: &BTreeMap<String, serde_json::Value>,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> Option<(u16, serde_json::Value)> {
    match method {
        "GET" => objects.get(path).map(|o| (200, o.clone())),
        "POST" => {
            let mut created = body;
            created["metadata"]["uid"] = serde_json::json!("created-uid");
            Some((201, created))
        }
        "PATCH" | "PUT" => {
            let mut answer = objects
                .get(path.trim_end_matches("/status"))
                .cloned()
                .unwrap_or(body);
            if answer.get("metadata").is_none() {
                let name = path
                    .trim_end_matches("/status")
                    .rsplit('/')
                    .next()
                    .unwrap_or("");
                answer["metadata"] = serde_json::json!({ "name": name });
            }
            if answer.get("spec").is_none() && path.contains("/datavolumes/") {
                answer["spec"] = serde_json::json!({});
            }
            Some((200, answer))
        }
        "DELETE" => Some((
            200,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        )),
        _ => Some((405, not_found())),
    }
}

/// Answers from `objects` and keeps what is created and patched (status, or metadata merged).
fn remembered(
    objects: &mut BTreeMap<String, serde_json::Value>,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> Option<(u16, serde_json::Value)> {
    let object_path = path.trim_end_matches("/status");
    match method {
        "GET" => objects.get(path).map(|o| (200, o.clone())),
        "POST" => {
            let mut created = body;
            created["metadata"]["uid"] = serde_json::json!("created-uid");
            let name = created["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            objects.insert(format!("{path}/{name}"), created.clone());
            Some((201, created))
        }
        "PATCH" => objects.get_mut(object_path).map(|o| {
            if path.ends_with("/status") {
                o["status"] = body["status"].clone();
            } else {
                for (k, v) in body["metadata"].as_object().into_iter().flatten() {
                    o["metadata"][k] = v.clone();
                }
            }
            (200, o.clone())
        }),
        _ => None,
    }
}

/// A controller context over `client`; its caches hold `storage`, if given.
fn context_for(client: kube::Client, storage: Option<StorageView>) -> crate::Context {
    let (config, _) = kube::runtime::reflector::store();
    let (classes, mut classes_writer) = kube::runtime::reflector::store();
    let (profiles, mut profiles_writer) = kube::runtime::reflector::store();
    if let Some(view) = storage {
        for c in view.classes {
            classes_writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply((*c).clone()));
        }
        for p in view.profiles {
            profiles_writer
                .apply_watcher_event(&kube::runtime::watcher::Event::Apply((*p).clone()));
        }
    }
    let stores = crate::context::Stores {
        config,
        storage_classes: classes,
        storage_profiles: profiles,
    };
    let certs = crate::certs::UploadCertificates::generate(Default::default()).expect("CAs");
    crate::Context::new(
        client,
        crate::Settings::default(),
        Arc::new(crate::metrics::Metrics::new()),
        Arc::new(certs),
        stores,
    )
}

fn not_found() -> serde_json::Value {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "code": 404, "message": "not found"
    })
}
