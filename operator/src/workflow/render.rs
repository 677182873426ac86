//! The run as the status shows it: `taskStatuses`, the `dag` a UI draws, and the counts. Pure;
//! every text taken from a step is cut, so a 100-step run stays far below the object size limit.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use mcall_generated::{
    ConditionWhen, DagEdge, DagEdgeType, DagNode, DagSummary, McallWorkflowStatus, Phase,
    StepReason, WorkflowDag, WorkflowTaskStatus,
};

use super::dag::Dag;
use super::steps::{Child, StepState};
use crate::controller::report::truncate;

/// Bytes of a step's output in `taskStatuses`.
const OUTPUT_MAX: usize = 1024;
/// Bytes of a node's input, output and error in `dag`, and of a step's message and error.
const NODE_TEXT_MAX: usize = 256;

/// The status of each step, from its state and its child.
pub fn task_statuses(
    dag: &Dag<'_>,
    states: &[StepState],
    children: &[Option<&Child>],
    previous: &[WorkflowTaskStatus],
    now: Timestamp,
) -> Vec<WorkflowTaskStatus> {
    dag.steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let before = previous.iter().find(|p| p.name == step.name);
            let mut status = step_status(&step.name, states[i], children[i], before);
            // A step being created started now (its child's own start time replaces it).
            if states[i] == StepState::Creating && status.start_time.is_none() {
                status.start_time = Some(Time(now));
            }
            status
        })
        .collect()
}

fn step_status(
    name: &str,
    state: StepState,
    child: Option<&Child>,
    before: Option<&WorkflowTaskStatus>,
) -> WorkflowTaskStatus {
    let (phase, reason) = match state {
        StepState::Waiting | StepState::Ready => (Phase::Pending, StepReason::Waiting),
        StepState::Running | StepState::Creating => (Phase::Running, StepReason::Running),
        StepState::Ended(phase, reason) => (phase, reason),
    };
    let message = match (state, child) {
        (StepState::Ended(Phase::Skipped, reason), _) => Some(skip_message(reason)),
        (StepState::Ended(_, StepReason::DeadlineExceeded), _) => {
            Some("cancelled at the run's timeout".to_owned())
        }
        (_, Some(child)) => child.message.as_deref().map(|m| truncate(m, NODE_TEXT_MAX)),
        _ => None,
    };
    let child_field = |f: fn(&Child) -> Option<String>| child.and_then(f);
    WorkflowTaskStatus {
        name: name.to_owned(),
        phase,
        reason: Some(reason),
        message,
        // A step cancelled at the deadline keeps what was seen of it before its child went.
        start_time: child
            .and_then(|c| c.start_time.clone())
            .or_else(|| before.and_then(|b| b.start_time.clone())),
        completion_time: child.and_then(|c| c.completion_time.clone()),
        retry_count: child.and_then(|c| c.retry_count),
        output: child_field(|c| c.output.clone()).map(|o| truncate(&o, OUTPUT_MAX)),
        error_code: child_field(|c| c.error_code.clone()),
        error_message: child_field(|c| c.error_message.clone())
            .map(|e| truncate(&e, NODE_TEXT_MAX)),
        child_task: child.map(|c| c.name.clone()),
    }
}

fn skip_message(reason: StepReason) -> String {
    match reason {
        StepReason::ConditionNotMet => "skipped: its condition did not hold",
        StepReason::FailFast => "skipped: a step failed unhandled and failFast is on",
        StepReason::DeadlineExceeded => "skipped: the run's timeout passed",
        StepReason::Cancelled => "skipped: the run was cancelled",
        _ => "skipped: a dependency did not succeed",
    }
    .to_owned()
}

/// The run as a graph: one node per step, one edge per dependency, and the counts.
pub fn dag_status(dag: &Dag<'_>, statuses: &[WorkflowTaskStatus]) -> WorkflowDag {
    let nodes: Vec<DagNode> = dag
        .steps
        .iter()
        .zip(statuses)
        .map(|(step, status)| DagNode {
            id: step.name.clone(),
            name: step.name.clone(),
            r#type: step.r#type.map(|t| t.to_string()),
            phase: status.phase,
            start_time: status.start_time.clone(),
            end_time: status.completion_time.clone(),
            duration: duration(status),
            input: step.input.as_deref().map(|i| truncate(i, NODE_TEXT_MAX)),
            output: status.output.as_deref().map(|o| truncate(o, NODE_TEXT_MAX)),
            error_code: status.error_code.clone(),
            error_message: status
                .error_message
                .as_deref()
                .map(|e| truncate(e, NODE_TEXT_MAX)),
            retries: status.retry_count,
            task_ref: step.task_ref.as_ref().map(|r| match &r.namespace {
                Some(ns) => format!("{ns}/{}", r.name),
                None => r.name.clone(),
            }),
        })
        .collect();
    let edges: Vec<DagEdge> = (0..dag.steps.len())
        .flat_map(|target| dag.deps[target].iter().map(move |&source| (source, target)))
        .map(|(source, target)| edge(dag, source, target))
        .collect();
    let count = |phase: Phase| nodes.iter().filter(|n| n.phase == phase).count() as i64;
    let metadata = DagSummary {
        total_nodes: Some(nodes.len() as i64),
        total_edges: Some(edges.len() as i64),
        success_count: Some(count(Phase::Succeeded)),
        failure_count: Some(count(Phase::Failed)),
        running_count: Some(count(Phase::Running)),
        pending_count: Some(count(Phase::Pending)),
        skipped_count: Some(count(Phase::Skipped)),
    };
    WorkflowDag {
        nodes: Some(nodes),
        edges: Some(edges),
        metadata: Some(metadata),
    }
}

fn edge(dag: &Dag<'_>, source: usize, target: usize) -> DagEdge {
    let (from, to) = (&dag.steps[source].name, &dag.steps[target].name);
    let condition = dag.steps[target]
        .condition
        .as_ref()
        .filter(|_| dag.judged_dependency(target) == Some(source));
    let r#type = match condition.map(|c| c.when) {
        None => DagEdgeType::Dependency,
        Some(ConditionWhen::Success) => DagEdgeType::Success,
        Some(ConditionWhen::Failure) => DagEdgeType::Failure,
        Some(ConditionWhen::Always) => DagEdgeType::Always,
        Some(ConditionWhen::Completed) => DagEdgeType::Completed,
    };
    let text = condition.map(|c| {
        let mut parts = vec![format!("when {}", c.when)];
        if let Some(f) = &c.field_equals {
            parts.push(format!("{} == {:?}", f.field, f.value));
        }
        if let Some(text) = &c.output_contains {
            parts.push(format!("output contains {text:?}"));
        }
        truncate(&parts.join(" and "), NODE_TEXT_MAX)
    });
    DagEdge {
        // Step names are DNS labels, which never hold `>`: ids are unique.
        id: format!("{from}->{to}"),
        source: from.clone(),
        target: to.clone(),
        r#type,
        label: condition.map(|c| c.when.to_string()),
        condition: text,
    }
}

/// How long an ended step ran (none while it runs: the status must not change by itself).
fn duration(status: &WorkflowTaskStatus) -> Option<String> {
    let start = status.start_time.as_ref()?.0;
    let end = status.completion_time.as_ref()?.0;
    let millis = end.duration_since(start).as_millis().max(0);
    Some(format!("{}.{:03}s", millis / 1000, millis % 1000))
}

/// Sets what follows from `taskStatuses`: the `dag` (with `dag`, the checked graph; without
/// one, only the nodes' phases follow) and the done count.
pub fn refresh(s: &mut McallWorkflowStatus, dag: Option<&Dag<'_>>) {
    let Some(statuses) = s.task_statuses.as_deref() else {
        return;
    };
    let done = statuses
        .iter()
        .filter(|s| matches!(s.phase, Phase::Succeeded | Phase::Failed | Phase::Skipped))
        .count();
    s.done_count = Some(done as i64);
    s.progress = Some(format!("{done}/{}", statuses.len()));
    match dag {
        Some(dag) => s.dag = Some(dag_status(dag, statuses)),
        None => {
            let phases: Vec<(String, Phase)> = statuses
                .iter()
                .map(|st| (st.name.clone(), st.phase))
                .collect();
            let nodes = s.dag.as_mut().and_then(|d| d.nodes.as_mut());
            for node in nodes.into_iter().flatten() {
                if let Some((_, phase)) = phases.iter().find(|(name, _)| *name == node.name) {
                    node.phase = *phase;
                }
            }
        }
    }
}
