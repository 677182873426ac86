//! The Pod executor: each `cmd` input of a task with `executor.type: Pod` runs as one pod, with
//! the executor's image and ServiceAccount and the task's resources. The engine judges its exit
//! code and output (the pod's log) exactly as a local process's.
//!
//! A pod outlives the operator process that created it: one whose name exists already is
//! followed, not created again. While its run goes on a pod is never deleted after it started:
//! a command stopped early (its deadline, a failed sibling input under failFast) keeps its pod,
//! ended, until the run's result is recorded ([`super::cleanup`]), so a successor adopting the
//! run finds it instead of starting the command again. A run cancelled for good (the task
//! deleted or changed, `Replace`) deletes its pods at once; a run this process hands over (it
//! stops, or no longer leads) leaves them running for the next leader.

use std::collections::BTreeSet;
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use mcall_engine::{Captured, Command, CommandEnd, CommandFuture, CommandRun, CommandRunner};
use mcall_generated::{McallTask, Reason};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::HandOver;
use super::pod_api::{STOPPED_CANCELLED, STOPPED_TIMEOUT, create_or_find, delete, logs, stop};
use super::pod_spec::{
    ATTEMPT_ANNOTATION, EXECUTION_LABEL, PodRequest, label_value, pod, pod_name,
};
use super::pod_status::{POD_DELETED, POD_REFUSED, Progress, UNSCHEDULABLE, progress};

/// How often the pod's status is read while its command runs: often at first (most commands
/// are short, and their end is what a user waits for), then once a second, so that many long
/// commands do not load the API server (32 pods at 4 reads a second each starved it on two
/// cores, see BENCHMARKS.md).
const POLL: Duration = Duration::from_millis(250);
const POLL_LATER: Duration = Duration::from_secs(1);
const POLL_OFTEN_FOR: Duration = Duration::from_secs(5);

fn poll_interval(following_for: Duration) -> Duration {
    if following_for < POLL_OFTEN_FOR {
        POLL
    } else {
        POLL_LATER
    }
}

/// Which run a [`PodCommands`] runs the commands of.
pub struct RunOf {
    pub task: Arc<McallTask>,
    /// The run's key (see [`super::run_key`]): its pods' names and label.
    pub key: String,
    pub generation: i64,
    /// Cancelled when the run is cancelled for good (the task deleted or changed, `Replace`),
    /// rather than by a failed sibling input.
    pub cancelled: CancellationToken,
    /// The run replays one a previous operator process started (the task says Running).
    pub adopting: bool,
}

/// Runs a task's commands in pods.
pub struct PodCommands {
    client: Client,
    run: RunOf,
    /// The executor's image, else the operator's default.
    image: Option<String>,
    hand_over: HandOver,
    /// Set when a pod was left running for the next leader.
    handed_over: AtomicBool,
    /// For a replayed run: the attempts its predecessor created pods for (looked up once;
    /// `None`: the lookup failed).
    predecessor_pods: tokio::sync::OnceCell<Option<BTreeSet<u32>>>,
}

impl CommandRunner for PodCommands {
    fn run<'a>(&'a self, command: Command<'a>, cancel: &'a CancellationToken) -> CommandFuture<'a> {
        Box::pin(self.run_pod(command, cancel))
    }

    /// A replayed run's retry whose pod the predecessor created: its backoff was waited out.
    fn started_already(&self, attempt: u32) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            self.run.adopting
                && self
                    .predecessor_attempts()
                    .await
                    .is_some_and(|attempts| attempts.contains(&attempt))
        })
    }
}

impl PodCommands {
    pub fn new(
        client: Client,
        run: RunOf,
        image: Option<String>,
        hand_over: HandOver,
    ) -> PodCommands {
        PodCommands {
            client,
            run,
            image,
            hand_over,
            handed_over: AtomicBool::new(false),
            predecessor_pods: tokio::sync::OnceCell::new(),
        }
    }

    /// Whether the run is the next leader's to finish: a pod was left running for it, or this
    /// process stops or no longer leads (whatever the engine says then, the successor replays
    /// the run over the same pods and records its result).
    pub fn handed_over(&self) -> bool {
        self.handing_over()
    }

    /// Deletes the run's pods but the failed ones, and failed ones past the number kept.
    pub async fn clean_up(&self) {
        let task = &self.run.task;
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &task.namespace().unwrap_or_default());
        super::cleanup::clean_up(&api, task, &self.run.key, self.run.generation).await;
    }

    /// Fires when this process stops and the run is handed over.
    pub async fn stopping(&self) {
        self.hand_over.when_stopping().await;
    }

    /// Whether this process hands the run over: it stops, or no longer leads.
    fn handing_over(&self) -> bool {
        self.handed_over.load(Ordering::Relaxed) || (self.hand_over.now)()
    }

    async fn run_pod(&self, command: Command<'_>, cancel: &CancellationToken) -> CommandRun {
        // A run being handed over starts nothing more: its successor does.
        if self.handing_over() {
            return ended(self.leave("(not created)"));
        }
        let task = &self.run.task;
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &task.namespace().unwrap_or_default());
        let name = pod_name(
            &task.name_any(),
            &self.run.key,
            command.input_name,
            command.attempt,
        );
        let Some(image) = self.image.as_deref() else {
            return ended(CommandEnd::Failed {
                error_code: POD_REFUSED.to_owned(),
                message: "it has no image: set spec.executor.image, or the operator's \
                          --executor-image (chart value executor.image)"
                    .to_owned(),
            });
        };
        if self.run.adopting
            && self
                .predecessor_attempts()
                .await
                .is_some_and(BTreeSet::is_empty)
        {
            return ended(CommandEnd::Failed {
                error_code: Reason::Interrupted.to_string(),
                message: "the operator stopped while this run was recorded running, and none \
                          of its pods exist: it stopped before creating them, or ran in the \
                          operator's own process (its executor changed since); it is not run \
                          again, so no command runs twice"
                    .to_owned(),
            });
        }
        let remaining = command.deadline.saturating_duration_since(Instant::now());
        let request = PodRequest {
            name: &name,
            owner: task.controller_owner_ref(&()).unwrap_or_default(),
            task: &task.name_any(),
            execution: &self.run.key,
            generation: self.run.generation,
            input: command.input_name,
            attempt: command.attempt,
            spec: &task.spec,
            image,
            script: command.script,
            environment: command.environment,
            deadline_seconds: remaining.as_secs_f64().ceil() as i64,
        };
        if let Err(end) = create_or_find(&api, &pod(&request), command.deadline, cancel).await {
            return ended(end);
        }
        let end = self.follow(&api, &name, command.deadline, cancel).await;
        let output = match end {
            CommandEnd::Cancelled => Captured::default(),
            _ => logs(&api, &name, command.keep).await,
        };
        CommandRun { end, output }
    }

    /// The attempts of this run that have a pod (any input). A replayed run without one did not
    /// run in pods. `None`: unknown; following is safe then (a create finds an existing pod).
    async fn predecessor_attempts(&self) -> Option<&BTreeSet<u32>> {
        self.predecessor_pods
            .get_or_init(|| async {
                let task = &self.run.task;
                let api: Api<Pod> =
                    Api::namespaced(self.client.clone(), &task.namespace().unwrap_or_default());
                let selector = format!("{EXECUTION_LABEL}={}", label_value(&self.run.key));
                match api
                    .list_metadata(&ListParams::default().labels(&selector))
                    .await
                {
                    Ok(list) => Some(
                        list.items
                            .iter()
                            .map(|pod| {
                                pod.annotations()
                                    .get(ATTEMPT_ANNOTATION)
                                    .and_then(|a| a.parse().ok())
                                    .unwrap_or(0)
                            })
                            .collect(),
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "listing the replayed run's pods");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    /// Follows the pod until its command ends, the deadline passes or `cancel` fires.
    async fn follow(
        &self,
        api: &Api<Pod>,
        name: &str,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> CommandEnd {
        let mut last: Option<Pod> = None;
        let since = Instant::now();
        loop {
            tokio::select! {
                () = self.hand_over.when_stopping() => return self.leave(name),
                () = cancel.cancelled() => return self.cancelled(api, name, last.as_ref()).await,
                () = tokio::time::sleep_until(deadline) => {
                    stop(api, name, last.as_ref(), STOPPED_TIMEOUT).await;
                    return match last.as_ref().map(progress) {
                        Some(Progress::Unschedulable(why)) => CommandEnd::Failed {
                            error_code: UNSCHEDULABLE.to_owned(),
                            message: format!("its pod was never scheduled: {why}"),
                        },
                        _ => CommandEnd::TimedOut,
                    };
                }
                () = tokio::time::sleep(poll_interval(since.elapsed())) => {}
            }
            let pod = match api.get(name).await {
                Ok(pod) => pod,
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    return CommandEnd::Failed {
                        error_code: POD_DELETED.to_owned(),
                        message: format!("its pod {name} was deleted before its command ended"),
                    };
                }
                Err(_) => continue,
            };
            if let Some(end) = ended_in(api, name, &pod).await {
                return end;
            }
            last = Some(pod);
        }
    }

    /// `cancel` fired: the run is handed over (the pod runs on), cancelled for good (the pod
    /// goes), or a sibling input failed under failFast (the pod is stopped and kept until the
    /// result is recorded).
    async fn cancelled(&self, api: &Api<Pod>, name: &str, last: Option<&Pod>) -> CommandEnd {
        if self.handing_over() {
            return self.leave(name);
        }
        if self.run.cancelled.is_cancelled() {
            delete(api, name).await;
        } else {
            stop(api, name, last, STOPPED_CANCELLED).await;
        }
        CommandEnd::Cancelled
    }

    /// Leaves the pod running for the next leader.
    fn leave(&self, pod: &str) -> CommandEnd {
        tracing::info!(pod, "left running for the next leader");
        self.handed_over.store(true, Ordering::Relaxed);
        CommandEnd::Cancelled
    }
}

/// How the command ended, if it did. A pod that cannot run its command (its image, its
/// container's configuration) is deleted: the command never started, and must not start later.
async fn ended_in(api: &Api<Pod>, name: &str, pod: &Pod) -> Option<CommandEnd> {
    match progress(pod) {
        Progress::Pending | Progress::Running | Progress::Unschedulable(_) => None,
        Progress::Exited(code) => Some(CommandEnd::Exited(ExitStatus::from_raw(code << 8))),
        Progress::DeadlineExceeded => Some(CommandEnd::TimedOut),
        Progress::Failed {
            error_code,
            message,
        } => {
            if !has_ended(pod) {
                delete(api, name).await;
            }
            Some(CommandEnd::Failed {
                error_code: error_code.to_owned(),
                message,
            })
        }
    }
}

/// Whether the pod is over: a final phase, or its container terminated.
fn has_ended(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    let terminated = status
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
        });
    matches!(phase, Some("Succeeded" | "Failed")) || terminated
}

fn ended(end: CommandEnd) -> CommandRun {
    CommandRun {
        end,
        output: Captured::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_read_often_at_first_then_once_a_second() {
        assert_eq!(poll_interval(Duration::ZERO), POLL);
        assert_eq!(poll_interval(POLL_OFTEN_FOR - POLL), POLL);
        assert_eq!(poll_interval(POLL_OFTEN_FOR), POLL_LATER);
        assert!(POLL < POLL_LATER);
    }

    #[test]
    fn a_pod_has_ended_once_its_container_terminated_or_its_phase_is_final() {
        let pod = |status: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"status": status})).unwrap()
        };
        let waiting = pod(
            serde_json::json!({"phase": "Pending", "containerStatuses": [
            {"name": "command", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
        );
        assert!(!has_ended(&waiting));
        let exited = pod(
            serde_json::json!({"phase": "Running", "containerStatuses": [
            {"name": "command", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 137}}}]}),
        );
        assert!(has_ended(&exited));
        assert!(has_ended(&pod(serde_json::json!({"phase": "Failed"}))));
    }
}
