//! Helpers of the workflow tests: create a workflow, await its status, list its children.

use std::time::Duration;

use kube::Api;
use kube::api::{ListParams, PostParams};
use mcall_generated::{McallTask, McallWorkflow, McallWorkflowStatus, Phase, WorkflowTaskStatus};
use serde_json::{Value, json};

use super::TestEnv;

const T: Duration = Duration::from_secs(30);

/// Operator logs on stderr (shown for failed tests), at `RUST_LOG` or warnings.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "mcall=warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn create_workflow(env: &TestEnv, name: &str, spec: Value) -> McallWorkflow {
    let object: McallWorkflow = serde_json::from_value(json!({
        "apiVersion": "mcall.tz.io/v1", "kind": "McallWorkflow", "metadata": {"name": name}, "spec": spec
    }))
    .expect("a valid McallWorkflow");
    workflows(env)
        .create(&PostParams::default(), &object)
        .await
        .expect("the API server accepts the workflow")
}

pub fn workflows(env: &TestEnv) -> Api<McallWorkflow> {
    Api::namespaced(env.client.clone(), &env.namespace)
}

/// Polls the workflow until `check` holds for its status, or fails with the last status.
pub async fn wait_workflow(
    env: &TestEnv,
    name: &str,
    what: &str,
    check: impl Fn(&McallWorkflowStatus) -> bool,
) -> McallWorkflowStatus {
    let deadline = std::time::Instant::now() + T;
    loop {
        let wf = workflows(env).get(name).await.expect("the workflow exists");
        if let Some(status) = wf.status.filter(|s| check(s)) {
            return status;
        }
        let last = workflows(env).get(name).await.ok().and_then(|w| w.status);
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: timed out waiting for {what}; status: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn ended(env: &TestEnv, name: &str) -> McallWorkflowStatus {
    wait_workflow(env, name, "the run to end", |s| {
        s.completion_time.is_some()
            && s.next_retry_time.is_none()
            && matches!(s.phase, Some(Phase::Succeeded | Phase::Failed))
    })
    .await
}

pub fn step<'a>(s: &'a McallWorkflowStatus, name: &str) -> &'a WorkflowTaskStatus {
    s.task_statuses
        .iter()
        .flatten()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no step {name} in {s:#?}"))
}

pub async fn children(env: &TestEnv, workflow: &str) -> Vec<McallTask> {
    env.tasks
        .list(&ListParams::default().labels(&format!("mcall.tz.io/workflow={workflow}")))
        .await
        .expect("list children")
        .items
}
