//! Where a task's `cmd` inputs run: as processes of the operator ([`mcall_engine::LocalCommands`])
//! or each in a pod of its own ([`pod::PodCommands`], `executor.type: Pod`, or the operator's
//! default executor).

pub mod pod;
pub mod pod_spec;
pub mod pod_status;

use std::sync::Arc;

use kube::Client;
use mcall_engine::{CommandRunner, LocalCommands};
use mcall_generated::{ExecutorKind, McallTask};

use crate::config::ExecutorDefaults;

/// The runner for `task`'s commands: its own `executor`, else the operator's default;
/// `execution` names this execution's pods.
pub fn commands_for(
    client: &Client,
    defaults: &ExecutorDefaults,
    task: &Arc<McallTask>,
    execution: String,
) -> Box<dyn CommandRunner> {
    let executor = task.spec.executor.as_ref();
    let in_pods = match executor.map(|e| &e.r#type) {
        Some(ExecutorKind::Pod) => true,
        Some(ExecutorKind::Process) => false,
        None => defaults.pods,
    };
    if !in_pods {
        return Box::new(LocalCommands);
    }
    let image = executor
        .and_then(|e| e.image.clone())
        .or_else(|| defaults.image.clone());
    Box::new(pod::PodCommands {
        client: client.clone(),
        task: task.clone(),
        image,
        execution,
    })
}
