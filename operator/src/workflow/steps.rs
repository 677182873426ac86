//! Where each step of a run stands, from its child task's status and its dependencies' ends:
//! pure, judged again on every reconcile, so a restarted operator resumes from the children.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mcall_generated::{
    ConditionWhen, McallTask, Phase, ResultField, StepCondition, StepReason, WorkflowTaskStatus,
};

use super::dag::Dag;

/// What the workflow reads of a child task.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Child {
    pub name: String,
    /// Its run (label `mcall.tz.io/run`) and step (`mcall.tz.io/step`).
    pub run: String,
    pub step: String,
    pub phase: Option<Phase>,
    pub message: Option<String>,
    pub start_time: Option<Time>,
    pub completion_time: Option<Time>,
    pub output: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub retry_count: Option<i64>,
    /// Being deleted (a cancelled step).
    pub deleting: bool,
}

impl Child {
    /// The child's view, or `None` for a task without the run and step labels.
    pub fn of(task: &McallTask) -> Option<Child> {
        let labels = task.metadata.labels.as_ref()?;
        let status = task.status.as_ref();
        let result = status.and_then(|s| s.result.as_ref());
        Some(Child {
            name: task.metadata.name.clone()?,
            run: labels.get(super::child::RUN_LABEL)?.clone(),
            step: labels.get(super::child::STEP_LABEL)?.clone(),
            phase: status.and_then(|s| s.phase),
            message: status.and_then(|s| s.message.clone()),
            start_time: status.and_then(|s| s.start_time.clone()),
            completion_time: status.and_then(|s| s.completion_time.clone()),
            output: result.and_then(|r| r.output.clone()),
            error_code: result.and_then(|r| r.error_code.clone()),
            error_message: result.and_then(|r| r.error_message.clone()),
            retry_count: status.and_then(|s| s.retry_count),
            deleting: task.metadata.deletion_timestamp.is_some(),
        })
    }

    fn ended(&self) -> Option<Phase> {
        match self.phase {
            Some(p @ (Phase::Succeeded | Phase::Failed | Phase::Skipped)) => Some(p),
            _ => None,
        }
    }

    /// The value of a result field, as a condition compares it.
    fn field(&self, field: ResultField) -> String {
        let time = |t: &Option<Time>| t.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
        match field {
            ResultField::Output => self.output.clone().unwrap_or_default().trim().to_owned(),
            ResultField::ErrorCode => self.error_code.clone().unwrap_or_default(),
            ResultField::Phase => self.phase.map(|p| p.to_string()).unwrap_or_default(),
            ResultField::ErrorMessage => self.error_message.clone().unwrap_or_default(),
            ResultField::StartTime => time(&self.start_time),
            ResultField::CompletionTime => time(&self.completion_time),
        }
    }
}

/// Where a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepState {
    /// A dependency has not ended.
    Waiting,
    /// Free to start (when a slot is free).
    Ready,
    /// Its child exists and has not ended.
    Running,
    /// Its child was created (the status says so) but the task cache does not show it yet: it
    /// holds its slot, and its creation is repeated (an existing child makes that a no-op).
    Creating,
    /// Ended: Succeeded, Failed or Skipped, and why.
    Ended(Phase, StepReason),
}

impl StepState {
    pub fn ended(self) -> Option<Phase> {
        match self {
            StepState::Ended(phase, _) => Some(phase),
            _ => None,
        }
    }
}

/// Each step's state, by step index. `children[i]` is step i's child in this run; `previous`
/// is the run's `taskStatuses` as last written; `stop` says why no step starts any more
/// (fail-fast or the deadline): a step that would be ready is skipped for it instead.
pub fn evaluate(
    dag: &Dag<'_>,
    children: &[Option<&Child>],
    previous: &[WorkflowTaskStatus],
    stop: Option<StepReason>,
) -> Vec<StepState> {
    let mut states = vec![StepState::Waiting; dag.steps.len()];
    for &s in &dag.order {
        let before = previous.iter().find(|p| p.name == dag.steps[s].name);
        states[s] = match (children[s], before) {
            (Some(child), _) => of_child(child),
            // Seen before and gone now: someone deleted it, which cancelled its run.
            (None, Some(b)) if b.child_task.is_some() && !ended(b.phase) => {
                StepState::Ended(Phase::Failed, StepReason::Cancelled)
            }
            (None, Some(b)) if b.child_task.is_some() => {
                StepState::Ended(b.phase, b.reason.unwrap_or(StepReason::Cancelled))
            }
            (None, Some(b)) if b.phase == Phase::Running => StepState::Creating,
            (None, _) => match admits(dag, s, &states, children) {
                None => StepState::Waiting,
                Some(Err(reason)) => StepState::Ended(Phase::Skipped, reason),
                Some(Ok(())) => match stop {
                    Some(reason) => StepState::Ended(Phase::Skipped, reason),
                    None => StepState::Ready,
                },
            },
        };
    }
    states
}

fn ended(phase: Phase) -> bool {
    matches!(phase, Phase::Succeeded | Phase::Failed | Phase::Skipped)
}

fn of_child(child: &Child) -> StepState {
    match child.ended() {
        Some(Phase::Succeeded) => StepState::Ended(Phase::Succeeded, StepReason::Succeeded),
        Some(Phase::Skipped) => {
            StepState::Ended(Phase::Skipped, StepReason::DependencyNotSatisfied)
        }
        Some(_) => StepState::Ended(Phase::Failed, StepReason::Failed),
        // Deleted before it ended: its run is cancelled with it.
        None if child.deleting => StepState::Ended(Phase::Failed, StepReason::Cancelled),
        None => StepState::Running,
    }
}

/// `None` while a dependency has not ended; then whether the step runs, or why it is skipped.
fn admits(
    dag: &Dag<'_>,
    step: usize,
    states: &[StepState],
    children: &[Option<&Child>],
) -> Option<Result<(), StepReason>> {
    let judged = dag.judged_dependency(step);
    let mut verdict = Ok(());
    for &d in &dag.deps[step] {
        let phase = states[d].ended()?;
        let holds = match (judged == Some(d), dag.steps[step].condition.as_ref()) {
            (true, Some(condition)) => holds(condition, phase, children[d])
                .then_some(())
                .ok_or(StepReason::ConditionNotMet),
            _ => (phase == Phase::Succeeded)
                .then_some(())
                .ok_or(StepReason::DependencyNotSatisfied),
        };
        if verdict.is_ok() {
            verdict = holds;
        }
    }
    Some(verdict)
}

/// Whether a condition holds for its dependency's end.
fn holds(condition: &StepCondition, phase: Phase, child: Option<&Child>) -> bool {
    let when = match condition.when {
        ConditionWhen::Success => phase == Phase::Succeeded,
        ConditionWhen::Failure => phase == Phase::Failed,
        ConditionWhen::Completed => matches!(phase, Phase::Succeeded | Phase::Failed),
        ConditionWhen::Always => true,
    };
    let empty = Child::default();
    let child = child.unwrap_or(&empty);
    let equals = condition.field_equals.as_ref().is_none_or(|f| {
        // The phase is the step's own (a skipped step has no child to ask).
        let value = match f.field {
            ResultField::Phase => phase.to_string(),
            field => child.field(field),
        };
        value == f.value
    });
    let contains = condition.output_contains.as_ref().is_none_or(|text| {
        child
            .output
            .as_deref()
            .unwrap_or_default()
            .contains(text.as_str())
    });
    when && equals && contains
}

/// A failed step whose failure nothing handles: no step with a condition accepting the failure
/// ran (or, while the run goes on, may still run: exists and was not skipped). Such a failure
/// fails the run and, with `failFast`, stops new steps.
pub fn unhandled_failures(dag: &Dag<'_>, states: &[StepState], run_ended: bool) -> Vec<usize> {
    (0..states.len())
        .filter(|&s| states[s].ended() == Some(Phase::Failed))
        .filter(|&s| {
            !dag.handles_failure_of(s)
                .iter()
                .any(|&h| match states[h].ended() {
                    Some(phase) => phase != Phase::Skipped,
                    None => !run_ended,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests;
