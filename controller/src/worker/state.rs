//! A worker pod's state as the claim annotations upstream writes (`storage.pod.phase`,
//! `storage.pod.restarts`, `storage.condition.running*`, ...), and what the worker controller
//! must do about it. Pure: a function of the pod.

use std::collections::BTreeMap;

use cdi_crds::annotations::{condition, import, pod as pod_ann};
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod};

use super::WorkerKind;
use super::termination::{Termination, classify};

/// What the worker controller does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing: the pod is on its way, or the kubelet retries it.
    Wait,
    /// The data is in place: record it, then delete the pod.
    Complete {
        preallocation_applied: bool,
        labels: BTreeMap<String, String>,
    },
    /// A failure retrying cannot fix: fail the DataVolume and delete the pod.
    Fail { reason: String, message: String },
    /// The upload server's certificates expired unused: delete the pod to get fresh ones.
    Recreate,
}

/// The claim annotations describing `pod`, and what to do next.
pub fn observe(pod: &Pod, kind: WorkerKind) -> (BTreeMap<String, String>, Next) {
    let mut a = BTreeMap::new();
    let status = pod.status.clone().unwrap_or_default();
    // The worker's own container (a node-pull importer pod also runs the image's).
    let main = match kind {
        WorkerKind::Importer => "importer",
        WorkerKind::UploadServer => "cdi-upload-server",
    };
    let statuses: Vec<&ContainerStatus> = status.container_statuses.iter().flatten().collect();
    let container: Option<&ContainerStatus> = statuses
        .iter()
        .find(|c| c.name == main)
        .or(statuses.first())
        .copied();
    let restarts = container.map_or(0, |c| c.restart_count);
    let phase = status.phase.clone().unwrap_or_else(|| "Pending".into());
    a.insert(pod_ann::RESTARTS.into(), restarts.to_string());
    let unschedulable = status.conditions.iter().flatten().any(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    a.insert(pod_ann::SCHEDULABLE.into(), (!unschedulable).to_string());
    if kind == WorkerKind::UploadServer {
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        a.insert(pod_ann::READY.into(), ready.to_string());
    }

    let state = container.and_then(|c| c.state.clone()).unwrap_or_default();
    let last = container
        .and_then(|c| c.last_state.clone())
        .unwrap_or_default();
    // A container waiting to be restarted reports its failure in `lastState`.
    let finished = state
        .terminated
        .clone()
        .or_else(|| state.waiting.as_ref().and(last.terminated.clone()));
    let done_message = match kind {
        WorkerKind::Importer => "Import Complete",
        WorkerKind::UploadServer => "Upload Complete",
    };

    let mut running = |value: bool, reason: &str, message: &str| {
        a.insert(condition::RUNNING.into(), value.to_string());
        a.insert(condition::RUNNING_REASON.into(), reason.to_owned());
        a.insert(condition::RUNNING_MESSAGE.into(), message.to_owned());
    };
    let next = if let Some(t) = finished {
        match classify(
            t.exit_code,
            t.message.as_deref().unwrap_or(""),
            t.reason.as_deref(),
        ) {
            Termination::Succeeded {
                deadline_passed: true,
                ..
            } => {
                running(
                    false,
                    "DeadlinePassed",
                    "Upload deadline passed; recreating the upload pod",
                );
                Next::Recreate
            }
            Termination::Succeeded {
                message,
                preallocation_applied,
                labels,
                ..
            } => {
                let message = if message.is_empty() {
                    done_message.to_owned()
                } else {
                    message
                };
                running(false, "Completed", &message);
                Next::Complete {
                    preallocation_applied,
                    labels,
                }
            }
            Termination::Terminal { reason, message } => {
                running(false, &reason, &message);
                Next::Fail { reason, message }
            }
            // A pod Kubernetes gave up on (evicted, deadline) is not restarted by the kubelet.
            Termination::Transient { reason, message } if phase == "Failed" => {
                running(false, &reason, &message);
                Next::Recreate
            }
            Termination::Transient { reason, message } => {
                running(false, &reason, &message);
                Next::Wait
            }
        }
    } else if phase == "Failed" {
        let reason = status.reason.clone().unwrap_or_else(|| "PodFailed".into());
        let message = status
            .message
            .clone()
            .unwrap_or_else(|| "the worker pod failed before its container ran".into());
        running(false, &reason, &message);
        Next::Recreate
    } else {
        running_from_state(&state, &mut running);
        Next::Wait
    };
    let phase = match &next {
        Next::Complete { .. } => "Succeeded".to_owned(),
        Next::Fail { .. } => "Failed".to_owned(),
        // A restarting pod is Running or Pending to Kubernetes; keep what it says.
        _ if phase == "Succeeded" || phase == "Failed" => "Running".to_owned(),
        _ => phase,
    };
    a.insert(pod_ann::PHASE.into(), phase);
    if let Next::Fail { .. } = next {
        a.insert(import::FATAL_ERROR.into(), "true".into());
    }
    (a, next)
}

fn running_from_state(state: &ContainerState, running: &mut impl FnMut(bool, &str, &str)) {
    if state.running.is_some() {
        running(true, "", "Pod is running");
    } else if let Some(w) = &state.waiting {
        let reason = w.reason.as_deref().unwrap_or("Pending");
        match reason {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => running(
                false,
                "ImagePullFailed",
                w.message
                    .as_deref()
                    .unwrap_or("failed to pull the worker image"),
            ),
            _ => running(false, reason, w.message.as_deref().unwrap_or("")),
        }
    } else {
        running(false, "Pending", "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{pod_running, pod_terminated, pod_waiting};

    #[test]
    fn running_importer_sets_running_condition() {
        let (a, next) = observe(&pod_running(0), WorkerKind::Importer);
        assert_eq!(next, Next::Wait);
        assert_eq!(a[pod_ann::PHASE], "Running");
        assert_eq!(a[condition::RUNNING], "true");
        assert_eq!(a[pod_ann::RESTARTS], "0");
    }

    #[test]
    fn successful_importer_completes_with_upstreams_annotations() {
        let pod = pod_terminated(
            0,
            r#"{"preallocationApplied":false,"message":"Import Complete"}"#,
            0,
        );
        let (a, next) = observe(&pod, WorkerKind::Importer);
        assert_eq!(
            next,
            Next::Complete {
                preallocation_applied: false,
                labels: BTreeMap::new()
            }
        );
        assert_eq!(a[pod_ann::PHASE], "Succeeded");
        assert_eq!(a[condition::RUNNING], "false");
        assert_eq!(a[condition::RUNNING_REASON], "Completed");
        assert_eq!(a[condition::RUNNING_MESSAGE], "Import Complete");
        assert!(!a.contains_key(import::FATAL_ERROR));
    }

    #[test]
    fn a_node_pull_pod_is_judged_by_its_importer_not_by_the_image_beside_it() {
        let mut pod = pod_terminated(
            0,
            r#"{"preallocationApplied":false,"message":"Import Complete"}"#,
            0,
        );
        let status = pod.status.as_mut().expect("status");
        status.phase = Some("Running".into());
        let statuses = status.container_statuses.as_mut().expect("statuses");
        statuses[0].name = "importer".into();
        let mut server = crate::fixtures::pod_running(0)
            .status
            .and_then(|s| s.container_statuses)
            .expect("statuses")
            .remove(0);
        server.name = "server".into();
        // The image's container is listed first, still running until it sees the done file.
        statuses.insert(0, server);
        let (_, next) = observe(&pod, WorkerKind::Importer);
        assert_eq!(
            next,
            Next::Complete {
                preallocation_applied: false,
                labels: BTreeMap::new()
            }
        );
    }

    #[test]
    fn terminal_failure_is_fatal_even_while_waiting_for_restart() {
        let pod = pod_waiting(
            "CrashLoopBackOff",
            Some((
                1,
                "Unable to connect to http data source: 404\n{\"reason\":\"NotFound\",\"terminal\":true}",
            )),
            1,
        );
        let (a, next) = observe(&pod, WorkerKind::Importer);
        assert!(matches!(next, Next::Fail { ref reason, .. } if reason == "NotFound"));
        assert_eq!(a[import::FATAL_ERROR], "true");
        assert_eq!(a[pod_ann::PHASE], "Failed");
        assert_eq!(a[condition::RUNNING_REASON], "NotFound");
        assert_eq!(a[pod_ann::RESTARTS], "1");
    }

    #[test]
    fn transient_failure_waits_for_the_kubelet() {
        let pod = pod_waiting(
            "CrashLoopBackOff",
            Some((
                1,
                "Unable to process data: reset\n{\"reason\":\"TransferFailed\",\"terminal\":false}",
            )),
            2,
        );
        let (a, next) = observe(&pod, WorkerKind::Importer);
        assert_eq!(next, Next::Wait);
        assert_eq!(a[condition::RUNNING_REASON], "TransferFailed");
        assert_eq!(a[pod_ann::RESTARTS], "2");
        assert!(!a.contains_key(import::FATAL_ERROR));
    }

    #[test]
    fn image_pull_failure_has_upstreams_reason() {
        let (a, _) = observe(
            &pod_waiting("ErrImagePull", None, 0),
            WorkerKind::UploadServer,
        );
        assert_eq!(a[condition::RUNNING_REASON], "ImagePullFailed");
        assert_eq!(a[pod_ann::READY], "false");
    }

    #[test]
    fn evicted_pod_is_recreated_not_failed() {
        let mut pod = pod_waiting("ContainerCreating", None, 0);
        if let Some(status) = pod.status.as_mut() {
            status.phase = Some("Failed".into());
            status.reason = Some("Evicted".into());
            status.message = Some("The node was low on resource: ephemeral-storage.".into());
            status.container_statuses = None;
        }
        let (a, next) = observe(&pod, WorkerKind::Importer);
        assert_eq!(next, Next::Recreate);
        assert_eq!(a[condition::RUNNING_REASON], "Evicted");
        assert_eq!(a[pod_ann::PHASE], "Running", "the DataVolume does not fail");
        assert!(!a.contains_key(import::FATAL_ERROR));
    }

    #[test]
    fn upload_deadline_recreates_the_pod() {
        let pod = pod_terminated(
            0,
            r#"{"deadlinePassed":true,"message":"Deadline Passed"}"#,
            0,
        );
        assert_eq!(observe(&pod, WorkerKind::UploadServer).1, Next::Recreate);
    }
}
