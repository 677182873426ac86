//! The Pod executor: each `cmd` input of a task with `executor.type: Pod` runs as one pod, with
//! the executor's image and ServiceAccount and the task's resources. The engine judges its exit
//! code and output (the pod's log) exactly as a local process's.
//!
//! A pod outlives the operator process that created it: one whose name exists already is
//! followed, not created again, and a pod is deleted only once the run's result is recorded
//! ([`super::cleanup`]), or at once when its run is cancelled for good (the task deleted or
//! changed). A cancel because this process stops or no longer leads leaves the pods running for
//! the next leader, which adopts them.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{LogParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use mcall_engine::{Captured, Command, CommandEnd, CommandFuture, CommandRun, CommandRunner};
use mcall_generated::McallTask;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::HandOver;
use super::cleanup::delete;
use super::pod_spec::{PodRequest, pod, pod_name};
use super::pod_status::{POD_REFUSED, Progress, SERVICE_ACCOUNT_MISSING, UNSCHEDULABLE, progress};

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

/// Runs a task's commands in pods.
pub struct PodCommands {
    client: Client,
    task: Arc<McallTask>,
    /// The executor's image, else the operator's default.
    image: Option<String>,
    /// The run's key (see [`super::run_key`]): its pods' names and label.
    run: String,
    hand_over: Option<HandOver>,
    /// Set when a pod was left running for the next leader.
    handed_over: AtomicBool,
}

impl CommandRunner for PodCommands {
    fn run<'a>(&'a self, command: Command<'a>, cancel: &'a CancellationToken) -> CommandFuture<'a> {
        Box::pin(self.run_pod(command, cancel))
    }
}

impl PodCommands {
    pub fn new(
        client: Client,
        task: Arc<McallTask>,
        image: Option<String>,
        run: String,
        hand_over: Option<HandOver>,
    ) -> PodCommands {
        PodCommands {
            client,
            task,
            image,
            run,
            hand_over,
            handed_over: AtomicBool::new(false),
        }
    }

    /// Whether a pod was left running for the next leader.
    pub fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Relaxed)
    }

    /// Deletes the run's pods but the failed ones, and failed ones past the number kept.
    pub async fn clean_up(&self) {
        let namespace = self.task.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        super::cleanup::clean_up(&api, &self.task, &self.run).await;
    }

    async fn run_pod(&self, command: Command<'_>, cancel: &CancellationToken) -> CommandRun {
        let namespace = self.task.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let name = pod_name(
            &self.task.name_any(),
            &self.run,
            command.input_name,
            command.attempt,
        );
        let remaining = command.deadline.saturating_duration_since(Instant::now());
        let spec = &self.task.spec;
        let Some(image) = self.image.as_deref() else {
            return ended(CommandEnd::Failed {
                error_code: POD_REFUSED.to_owned(),
                message: "it has no image: set spec.executor.image, or the operator's \
                          --executor-image (chart value executor.image)"
                    .to_owned(),
            });
        };
        let request = PodRequest {
            name: &name,
            owner: self.task.controller_owner_ref(&()).unwrap_or_default(),
            task: &self.task.name_any(),
            execution: &self.run,
            spec,
            image,
            script: command.script,
            environment: command.environment,
            deadline_seconds: remaining.as_secs_f64().ceil() as i64,
        };
        if let Err(end) = create(&api, &pod(&request), command.deadline, cancel).await {
            return ended(end);
        }
        let end = self.watch(&api, &name, command.deadline, cancel).await;
        let output = match end {
            CommandEnd::Cancelled => Captured::default(),
            _ => logs(&api, &name, command.keep).await,
        };
        CommandRun { end, output }
    }

    /// Follows the pod until its command ends, the deadline passes (its `activeDeadlineSeconds`
    /// stops it) or `cancel` fires: then the pod is deleted (its process is gone), unless the
    /// run is handed to the next leader.
    async fn watch(
        &self,
        api: &Api<Pod>,
        name: &str,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> CommandEnd {
        let mut unschedulable = None;
        let since = Instant::now();
        loop {
            tokio::select! {
                () = stopping(self.hand_over.as_ref()) => return self.leave(name),
                () = cancel.cancelled() => {
                    if self.hand_over.as_ref().is_some_and(|h| (h.now)()) {
                        return self.leave(name);
                    }
                    delete(api, name).await;
                    return CommandEnd::Cancelled;
                }
                () = tokio::time::sleep_until(deadline) => {
                    return match unschedulable {
                        Some(why) => CommandEnd::Failed {
                            error_code: UNSCHEDULABLE.to_owned(),
                            message: format!("its pod was never scheduled: {why}"),
                        },
                        None => CommandEnd::TimedOut,
                    };
                }
                () = tokio::time::sleep(poll_interval(since.elapsed())) => {}
            }
            let Ok(pod) = api.get(name).await else {
                continue;
            };
            match progress(&pod) {
                Progress::Pending | Progress::Running => {}
                Progress::Unschedulable(why) => unschedulable = Some(why),
                Progress::Exited(code) => {
                    return CommandEnd::Exited(ExitStatus::from_raw(code << 8));
                }
                Progress::DeadlineExceeded => return CommandEnd::TimedOut,
                Progress::Failed {
                    error_code,
                    message,
                } => {
                    return CommandEnd::Failed {
                        error_code: error_code.to_owned(),
                        message,
                    };
                }
            }
        }
    }
}

impl PodCommands {
    /// Leaves the pod running for the next leader.
    fn leave(&self, pod: &str) -> CommandEnd {
        tracing::info!(pod, "left running for the next leader");
        self.handed_over.store(true, Ordering::Relaxed);
        CommandEnd::Cancelled
    }
}

/// Fires when this process stops, for a run handed over then; never otherwise.
async fn stopping(hand_over: Option<&HandOver>) {
    match hand_over {
        Some(hand_over) => hand_over.stopping.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Creates the pod, or finds it created already (by this run in a process that stopped). A
/// missing ServiceAccount is retried until the deadline: a new namespace's `default` one comes a
/// moment after the namespace.
async fn create(
    api: &Api<Pod>,
    pod: &Pod,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<(), CommandEnd> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    loop {
        let error = match api.create(&PostParams::default(), pod).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.reason == "AlreadyExists" => {
                tracing::info!(pod = name, "following the run's existing pod");
                return Ok(());
            }
            Err(e) => e,
        };
        let text = error.to_string();
        let account_missing = text.contains("serviceaccount") && text.contains("not found");
        if !account_missing {
            return Err(CommandEnd::Failed {
                error_code: POD_REFUSED.to_owned(),
                message: format!("its pod {name} could not be created: {text}"),
            });
        }
        if Instant::now() + POLL >= deadline {
            return Err(CommandEnd::Failed {
                error_code: SERVICE_ACCOUNT_MISSING.to_owned(),
                message: format!("its pod {name} could not be created: {text}"),
            });
        }
        tokio::select! {
            () = cancel.cancelled() => return Err(CommandEnd::Cancelled),
            () = tokio::time::sleep(POLL * 2) => {}
        }
    }
}

fn ended(end: CommandEnd) -> CommandRun {
    CommandRun {
        end,
        output: Captured::default(),
    }
}

/// The container's log, the first `keep` bytes (lines past them are not counted).
async fn logs(api: &Api<Pod>, name: &str, keep: usize) -> Captured {
    let params = LogParams {
        container: Some("command".to_owned()),
        limit_bytes: Some(keep.max(1) as i64),
        ..Default::default()
    };
    match api.logs(name, &params).await {
        Ok(text) => Captured::of(text.as_bytes(), keep),
        Err(e) => {
            tracing::debug!(pod = name, error = %e, "no log of the pod");
            Captured::default()
        }
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
}
