//! Where a task's `cmd` inputs run: as processes of the operator ([`mcall_engine::LocalCommands`])
//! or each in a pod of its own ([`pod::PodCommands`], `executor.type: Pod`, or the operator's
//! default executor).
//!
//! A run's pods are named after the run (task, generation, scheduled time), the input and the
//! attempt, so an operator that takes over a run after a restart or a leader change finds the
//! pods its predecessor created and follows them instead of starting the commands again.

pub mod cleanup;
pub mod pod;
pub mod pod_api;
pub mod pod_spec;
pub mod pod_status;

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use mcall_engine::{CommandRunner, LocalCommands};
use mcall_generated::{ExecutorKind, McallTask};

use crate::config::ExecutorDefaults;

/// Whether `task`'s commands run in pods: its own `executor`, else the operator's default.
pub fn runs_in_pods(defaults: &ExecutorDefaults, task: &McallTask) -> bool {
    match task.spec.executor.as_ref().map(|e| &e.r#type) {
        Some(ExecutorKind::Pod) => true,
        Some(ExecutorKind::Process) => false,
        None => defaults.pods,
    }
}

/// The name of one run of a task, the same in every operator process: the start of the task's
/// UID (a task deleted and created again under its name is another task), the generation, and
/// for a scheduled run its scheduled time.
pub fn run_key(task_uid: &str, generation: i64, scheduled: Option<Timestamp>) -> String {
    let uid: String = task_uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    match scheduled {
        // Microseconds: a run-now request and a tick may fall in the same second.
        Some(at) => format!("{uid}-{generation}-{:x}", at.as_microsecond()),
        None => format!("{uid}-{generation}"),
    }
}

/// When a run is handed to another operator process, its pods are left running for the
/// successor to adopt.
#[derive(Clone)]
pub struct HandOver {
    /// Fires when this process stops: its pod runs are handed over at once (they need no
    /// drain).
    pub stopping: tokio_util::sync::CancellationToken,
    /// Whether a cancelled run is being handed over (this process stops or no longer leads)
    /// rather than cancelled for good.
    pub now: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl HandOver {
    /// Fires when this process stops and the run is to be handed over (a run that is not, say a
    /// scheduled run not yet recorded `Running`, drains as in-process runs do).
    async fn when_stopping(&self) {
        self.stopping.cancelled().await;
        if !(self.now)() {
            std::future::pending::<()>().await;
        }
    }
}

/// The runner of one run's commands, and what is done with its pods once its result is written.
pub enum Commands {
    Local(LocalCommands),
    Pods(Box<pod::PodCommands>),
}

impl Commands {
    pub fn runner(&self) -> &dyn CommandRunner {
        match self {
            Commands::Local(local) => local,
            Commands::Pods(pods) => pods.as_ref(),
        }
    }

    /// Whether a pod of the run was left running for the next leader: its result is then that
    /// process's to record.
    pub fn handed_over(&self) -> bool {
        matches!(self, Commands::Pods(pods) if pods.handed_over())
    }

    /// Fires when the run is to be handed over at once (this process stops): the engine is then
    /// cancelled too, so that it starts no retry and no further input.
    pub async fn handing_over(&self) {
        match self {
            Commands::Pods(pods) => pods.stopping().await,
            Commands::Local(_) => std::future::pending().await,
        }
    }

    /// After the run's result is recorded: its pods are deleted, but for failed ones kept for
    /// `kubectl logs` (see [`cleanup::FAILED_PODS_KEPT`]).
    pub async fn clean_up(&self) {
        if let Commands::Pods(pods) = self {
            pods.clean_up().await;
        }
    }
}

/// The runner for one run of `run.task`; `hand_over`: how its pods are left to the next
/// leader.
pub fn commands_for(
    client: &Client,
    defaults: &ExecutorDefaults,
    run: pod::RunOf,
    hand_over: HandOver,
) -> Commands {
    if !runs_in_pods(defaults, &run.task) {
        return Commands::Local(LocalCommands);
    }
    let image = run
        .task
        .spec
        .executor
        .as_ref()
        .and_then(|e| e.image.clone())
        .or_else(|| defaults.image.clone());
    Commands::Pods(Box::new(pod::PodCommands::new(
        client.clone(),
        run,
        image,
        hand_over,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jiff_millis(ms: i64) -> k8s_openapi::jiff::SignedDuration {
        k8s_openapi::jiff::SignedDuration::from_millis(ms)
    }

    #[test]
    fn a_run_has_the_same_key_in_every_process_and_differs_from_other_runs() {
        let uid = "3f2a9c1e-77aa-4b0e-9d1c-0123456789ab";
        let tick = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(run_key(uid, 4, None), "3f2a9c1e-4");
        assert_ne!(run_key(uid, 4, None), run_key(uid, 5, None));
        assert_ne!(run_key(uid, 4, Some(tick)), run_key(uid, 4, None));
        assert_eq!(run_key(uid, 4, Some(tick)), "3f2a9c1e-4-6651728988000");
        let run_now = tick.checked_add(jiff_millis(300)).unwrap();
        assert_ne!(run_key(uid, 4, Some(run_now)), run_key(uid, 4, Some(tick)));
        assert_ne!(run_key("0000", 4, None), run_key(uid, 4, None));
    }
}
