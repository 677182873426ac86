//! Which pods go once a run's result is recorded: the run's own pods, except failed ones, which
//! stay for `kubectl logs` — at most [`FAILED_PODS_KEPT`] per task, the newest; and any pod of an
//! older generation still there (its run was handed over, then the spec changed). The task owns
//! its pods, so deleting the task deletes the rest.

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use mcall_generated::McallTask;

use super::pod_api::{STOPPED_ANNOTATION, STOPPED_CANCELLED, STOPPED_TIMEOUT, delete};
use super::pod_spec::{EXECUTION_LABEL, GENERATION_LABEL, TASK_LABEL, label_value};
use super::pod_status::{Progress, progress};

/// Failed pods kept per task (each is an exited container: no CPU or memory, a little disk
/// for its log on the node).
pub const FAILED_PODS_KEPT: usize = 5;

/// The run whose result was just recorded.
pub struct Finished<'a> {
    pub task_uid: &'a str,
    pub run: &'a str,
    pub generation: i64,
}

/// The pods to delete among `pods` (the task's), once `finished`'s result is recorded.
pub fn pods_to_delete(pods: &[Pod], finished: &Finished<'_>) -> Vec<String> {
    let run = label_value(finished.run);
    let owned: Vec<&Pod> = pods
        .iter()
        .filter(|pod| {
            pod.owner_references()
                .iter()
                .any(|o| o.uid == finished.task_uid)
        })
        .collect();
    let of_run = |pod: &Pod| pod.labels().get(EXECUTION_LABEL) == Some(&run);
    let older = |pod: &Pod| {
        let generation = pod.labels().get(GENERATION_LABEL);
        generation
            .and_then(|g| g.parse::<i64>().ok())
            .is_some_and(|g| g < finished.generation)
    };
    let doomed_now = |pod: &Pod| {
        let cancelled = stopped(pod) == Some(STOPPED_CANCELLED);
        (of_run(pod) && (!failed(pod) || cancelled)) || (older(pod) && !failed(pod))
    };
    let mut doomed: Vec<String> = owned
        .iter()
        .filter(|pod| doomed_now(pod))
        .map(|pod| pod.name_any())
        .collect();
    // Only pods of runs before this one are pruned: a run still going (of a newer generation,
    // say) may need its failed attempts' pods.
    let this_run_started = owned
        .iter()
        .filter(|pod| of_run(pod))
        .filter_map(|pod| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .min();
    let mut failed_pods: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|pod| failed(pod) && !doomed_now(pod))
        .collect();
    // Newest first; the name breaks ties so the choice is the same on every call.
    failed_pods.sort_by(|a, b| {
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(b)
            .cmp(&created(a))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    doomed.extend(
        failed_pods
            .into_iter()
            .skip(FAILED_PODS_KEPT)
            .filter(|pod| {
                let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
                of_run(pod) || created.zip(this_run_started).is_some_and(|(c, s)| c <= s)
            })
            .map(|pod| pod.name_any()),
    );
    doomed
}

fn stopped(pod: &Pod) -> Option<&str> {
    pod.annotations()
        .get(STOPPED_ANNOTATION)
        .map(String::as_str)
}

/// Whether the pod's command failed, as the run judged it: by the container (the kubelet
/// reports the pod's phase only once its sandbox is gone, a while after the command ended), or
/// stopped at its deadline (the kubelet may not have ended it yet).
fn failed(pod: &Pod) -> bool {
    if stopped(pod) == Some(STOPPED_TIMEOUT) {
        return true;
    }
    match progress(pod) {
        Progress::Exited(code) => code != 0,
        Progress::DeadlineExceeded | Progress::Failed { .. } => true,
        Progress::Pending | Progress::Unschedulable(_) | Progress::Running => false,
    }
}

/// Deletes what [`pods_to_delete`] names; failures are logged (the task's deletion takes its
/// pods with it in any case).
pub async fn clean_up(api: &Api<Pod>, task: &McallTask, run: &str, generation: i64) {
    let selector = format!("{TASK_LABEL}={}", label_value(&task.name_any()));
    let pods = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(e) => {
            tracing::warn!(task = task.name_any(), error = %e, "listing the run's pods to remove them");
            return;
        }
    };
    let uid = task.uid().unwrap_or_default();
    let finished = Finished {
        task_uid: &uid,
        run,
        generation,
    };
    for name in pods_to_delete(&pods, &finished) {
        delete(api, &name).await;
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

    fn finished(run: &str) -> Finished<'_> {
        Finished {
            task_uid: "u1",
            run,
            generation: 2,
        }
    }

    fn pod(name: &str, owner: &str, run: &str, phase: &str, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    [
                        (EXECUTION_LABEL.to_owned(), run.to_owned()),
                        (GENERATION_LABEL.to_owned(), "2".to_owned()),
                    ]
                    .into(),
                ),
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
            pod("still-running", "u1", "run-a", "Running", 11),
            pod("failed", "u1", "run-a", "Failed", 12),
            pod("other-run", "u1", "run-b", "Running", 13),
            pod("other-task", "u2", "run-a", "Succeeded", 14),
        ];
        let mut doomed = pods_to_delete(&pods, &finished("run-a"));
        doomed.sort();
        assert_eq!(doomed, ["done", "still-running"]);
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
        assert!(pods_to_delete(&[exited], &finished("run-a")).is_empty());
    }

    #[test]
    fn only_the_newest_failed_pods_are_kept() {
        let mut pods: Vec<Pod> = (0..FAILED_PODS_KEPT as i64 + 3)
            .map(|i| pod(&format!("failed-{i}"), "u1", "old", "Failed", 100 + i))
            .collect();
        pods.push(pod("this-run", "u1", "run-a", "Succeeded", 200));
        let mut doomed = pods_to_delete(&pods, &finished("run-a"));
        doomed.sort();
        assert_eq!(doomed, ["failed-0", "failed-1", "failed-2", "this-run"]);
    }

    #[test]
    fn failed_pods_of_a_run_newer_than_this_one_are_not_pruned() {
        let mut pods: Vec<Pod> = (0..FAILED_PODS_KEPT as i64 + 2)
            .map(|i| pod(&format!("newer-{i}"), "u1", "newer", "Failed", 300 + i))
            .collect();
        pods.push(pod("this-run", "u1", "run-a", "Succeeded", 200));
        assert_eq!(pods_to_delete(&pods, &finished("run-a")), ["this-run"]);
    }

    #[test]
    fn a_pod_stopped_at_its_deadline_is_kept_before_the_kubelet_ended_it() {
        let mut timed_out = pod("timed-out", "u1", "run-a", "Running", 10);
        timed_out
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(STOPPED_ANNOTATION.to_owned(), STOPPED_TIMEOUT.to_owned());
        assert!(pods_to_delete(&[timed_out], &finished("run-a")).is_empty());
    }

    #[test]
    fn a_stopped_sibling_goes_and_an_older_generations_live_pod_too() {
        let mut sibling = pod("sibling", "u1", "run-a", "Failed", 10);
        sibling
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(STOPPED_ANNOTATION.to_owned(), STOPPED_CANCELLED.to_owned());
        let mut old = pod("old-gen", "u1", "run-old", "Running", 5);
        old.metadata
            .labels
            .get_or_insert_default()
            .insert(GENERATION_LABEL.to_owned(), "1".to_owned());
        let mut doomed = pods_to_delete(&[sibling, old], &finished("run-a"));
        doomed.sort();
        assert_eq!(doomed, ["old-gen", "sibling"]);
    }
}
