//! Where a task's `cmd` inputs run: as processes of the operator ([`mcall_engine::LocalCommands`])
//! or each in a pod of its own ([`pod::PodCommands`], `executor.type: Pod`).

pub mod pod;
pub mod pod_spec;
pub mod pod_status;

use std::sync::Arc;

use kube::Client;
use mcall_engine::{CommandRunner, LocalCommands};
use mcall_generated::{ExecutorKind, McallTask};

/// The runner for `task`'s commands; `execution` names this execution's pods.
pub fn commands_for(
    client: &Client,
    task: &Arc<McallTask>,
    execution: String,
) -> Box<dyn CommandRunner> {
    match task.spec.executor.as_ref().map(|e| &e.r#type) {
        Some(ExecutorKind::Pod) => Box::new(pod::PodCommands {
            client: client.clone(),
            task: task.clone(),
            execution,
        }),
        Some(ExecutorKind::Process) | None => Box::new(LocalCommands),
    }
}
