//! The Pod executor: each `cmd` input of a task with `executor.type: Pod` runs as one pod, with
//! the executor's image and ServiceAccount and the task's resources. The engine judges its exit
//! code and output (the pod's log) exactly as a local process's.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, LogParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use mcall_engine::{Captured, Command, CommandEnd, CommandFuture, CommandRun, CommandRunner};
use mcall_generated::McallTask;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pod_spec::{PodRequest, pod, pod_name};
use super::pod_status::{POD_REFUSED, Progress, SERVICE_ACCOUNT_MISSING, UNSCHEDULABLE, progress};

/// How often the pod's status is read while its command runs.
const POLL: Duration = Duration::from_millis(250);

/// Runs a task's commands in pods.
pub struct PodCommands {
    pub client: Client,
    pub task: Arc<McallTask>,
    /// The executor's image, else the operator's default.
    pub image: Option<String>,
    /// Unique for this execution (the pods of one execution share it).
    pub execution: String,
}

impl CommandRunner for PodCommands {
    fn run<'a>(&'a self, command: Command<'a>, cancel: &'a CancellationToken) -> CommandFuture<'a> {
        Box::pin(self.run_pod(command, cancel))
    }
}

impl PodCommands {
    async fn run_pod(&self, command: Command<'_>, cancel: &CancellationToken) -> CommandRun {
        let namespace = self.task.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let name = pod_name(&self.task.name_any(), &self.execution, command.input_name);
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
            execution: &self.execution,
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
        let output = logs(&api, &name, command.keep).await;
        // A failed pod stays for `kubectl logs` until its task goes (it owns the pod).
        if matches!(&end, CommandEnd::Exited(status) if status.success())
            || matches!(end, CommandEnd::Cancelled | CommandEnd::TimedOut)
        {
            delete(&api, &name).await;
        }
        CommandRun { end, output }
    }

    /// Follows the pod until its command ends, the deadline passes or `cancel` fires (then the
    /// pod is deleted: its process is gone).
    async fn watch(
        &self,
        api: &Api<Pod>,
        name: &str,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> CommandEnd {
        let mut unschedulable = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    delete(api, name).await;
                    return CommandEnd::Cancelled;
                }
                () = tokio::time::sleep_until(deadline) => {
                    delete(api, name).await;
                    return match unschedulable {
                        Some(why) => CommandEnd::Failed {
                            error_code: UNSCHEDULABLE.to_owned(),
                            message: format!("its pod was never scheduled: {why}"),
                        },
                        None => CommandEnd::TimedOut,
                    };
                }
                () = tokio::time::sleep(POLL) => {}
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

/// Creates the pod. A missing ServiceAccount is retried until the deadline: a new namespace's
/// `default` one comes a moment after the namespace.
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

async fn delete(api: &Api<Pod>, name: &str) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    if let Err(e) = api.delete(name, &params).await {
        tracing::debug!(pod = name, error = %e, "deleting the pod");
    }
}
