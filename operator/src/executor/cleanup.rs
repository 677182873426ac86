//! Which pods go once a run's result is recorded: the run's own pods, except failed ones, which
//! stay for `kubectl logs` — at most [`FAILED_PODS_KEPT`] per task, the newest. The task owns its
//! pods, so deleting the task deletes the rest.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use mcall_generated::McallTask;

use super::pod_spec::{EXECUTION_LABEL, TASK_LABEL, label_value};
use super::pod_status::{Progress, progress};

/// Failed pods kept per task (each is an exited container: no CPU or memory, a little disk
/// for its log on the node).
pub const FAILED_PODS_KEPT: usize = 5;

/// The pods to delete among `pods` (the task's), once run `run`'s result is recorded.
pub fn pods_to_delete(pods: &[Pod], task_uid: &str, run: &str) -> Vec<String> {
    let run = label_value(run);
    let owned: Vec<&Pod> = pods
        .iter()
        .filter(|pod| pod.owner_references().iter().any(|o| o.uid == task_uid))
        .collect();
    // By the container, as the run judged it: the kubelet reports the pod's phase only once
    // its sandbox is gone, a while after the command ended.
    let failed = |pod: &Pod| match progress(pod) {
        Progress::Exited(code) => code != 0,
        Progress::DeadlineExceeded | Progress::Failed { .. } => true,
        Progress::Pending | Progress::Unschedulable(_) | Progress::Running => false,
    };
    let mut doomed: Vec<String> = owned
        .iter()
        .filter(|pod| pod.labels().get(EXECUTION_LABEL) == Some(&run) && !failed(pod))
        .map(|pod| pod.name_any())
        .collect();
    let mut kept_failed: Vec<&Pod> = owned.iter().copied().filter(|pod| failed(pod)).collect();
    // Newest first; the name breaks ties so the choice is the same on every call.
    kept_failed.sort_by(|a, b| {
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(b)
            .cmp(&created(a))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    doomed.extend(
        kept_failed
            .into_iter()
            .skip(FAILED_PODS_KEPT)
            .map(|pod| pod.name_any()),
    );
    doomed
}

/// Deletes what [`pods_to_delete`] names; failures are logged (the task's deletion takes its
/// pods with it in any case).
pub async fn clean_up(api: &Api<Pod>, task: &McallTask, run: &str) {
    let selector = format!("{TASK_LABEL}={}", label_value(&task.name_any()));
    let pods = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(e) => {
            tracing::warn!(task = task.name_any(), error = %e, "listing the run's pods to remove them");
            return;
        }
    };
    for name in pods_to_delete(&pods, &task.uid().unwrap_or_default(), run) {
        delete(api, &name).await;
    }
}

/// Deletes the pod at once (its process is killed, no grace period); a failure is logged.
pub(super) async fn delete(api: &Api<Pod>, name: &str) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    if let Err(e) = api.delete(name, &params).await {
        tracing::debug!(pod = name, error = %e, "deleting the pod");
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn pod(name: &str, owner: &str, run: &str, phase: &str, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some([(EXECUTION_LABEL.to_owned(), run.to_owned())].into()),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.to_owned(),
                    ..Default::default()
                }]),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_runs_pods_go_but_failed_ones_and_other_runs_and_tasks() {
        let pods = [
            pod("done", "u1", "run-a", "Succeeded", 10),
            pod("timed-out", "u1", "run-a", "Running", 11),
            pod("failed", "u1", "run-a", "Failed", 12),
            pod("other-run", "u1", "run-b", "Running", 13),
            pod("other-task", "u2", "run-a", "Succeeded", 14),
        ];
        let mut doomed = pods_to_delete(&pods, "u1", "run-a");
        doomed.sort();
        assert_eq!(doomed, ["done", "timed-out"]);
    }

    #[test]
    fn a_command_that_failed_is_kept_before_the_kubelet_reports_the_pods_phase() {
        let mut exited = pod("exited-1", "u1", "run-a", "Running", 10);
        exited.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        assert!(pods_to_delete(&[exited], "u1", "run-a").is_empty());
    }

    #[test]
    fn only_the_newest_failed_pods_are_kept() {
        let pods: Vec<Pod> = (0..FAILED_PODS_KEPT as i64 + 3)
            .map(|i| pod(&format!("failed-{i}"), "u1", "old", "Failed", 100 + i))
            .collect();
        let mut doomed = pods_to_delete(&pods, "u1", "run-a");
        doomed.sort();
        assert_eq!(doomed, ["failed-0", "failed-1", "failed-2"]);
    }
}
