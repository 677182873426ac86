//! The workflow planner: a pure function of (workflow, its children, the templates, now) that
//! says which status to write, which child tasks to create or delete, which Events to record
//! and when to look again. Run lifecycle:
//!
//! - a run starts once per generation (no `schedule`) or per due tick; its id (`r<n>`) and, for a
//!   tick, `lastScheduleTime` are written before any child exists, so a tick never runs twice;
//! - each reconcile judges the steps from the run's children ([`steps`]) and creates the ready
//!   ones up to `concurrency`; at `timeout` the running children are deleted (their runs are
//!   cancelled) and the run fails;
//! - a finished run is recorded in `history`; a failed one is re-run by `retryPolicy`; the
//!   children of runs no longer current or in `history` are deleted.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mcall_generated::{
    BackoffPolicy, ConditionStatus, McallTask, McallTaskSpec, McallWorkflow, McallWorkflowStatus,
    Phase, Reason, RunRecord, StepReason,
};

use super::dag::{Dag, SpecProblem};
use super::steps::{self, Child, StepState};
use super::{child, render, schedule, validate};
use crate::controller::report::conditions::{READY, set_condition};
use crate::controller::report::{Note, truncate};
use crate::schedule::trim_history;

/// What the planner sees.
pub struct Observed<'a> {
    pub workflow: &'a McallWorkflow,
    /// The workflow's children (owned by its uid), of every run.
    pub children: Vec<Child>,
    /// The spec of a template (namespace, name) as cached, `None` when there is none.
    pub template: &'a (dyn Fn(&str, &str) -> Option<McallTaskSpec> + Sync),
    pub cross_namespace_templates: bool,
    pub now: Timestamp,
}

/// What to do.
#[derive(Debug, Default)]
pub struct Plan {
    /// The status to write (onto the version read), when it changed.
    pub status: Option<McallWorkflowStatus>,
    /// The status must land before the children are created: it starts a run.
    pub status_first: bool,
    pub create: Vec<McallTask>,
    /// Child tasks to delete (cancelled steps, children of trimmed runs).
    pub delete: Vec<String>,
    /// Events, recorded once the status write landed.
    pub events: Vec<Note>,
    pub requeue_after: Option<Duration>,
}

/// The run in the status, if one is in progress (running, or waiting for a re-run).
fn active_run(s: &McallWorkflowStatus) -> Option<&str> {
    let run = s.run_id.as_deref()?;
    (s.completion_time.is_none() || s.next_retry_time.is_some()).then_some(run)
}

pub fn plan(o: &Observed<'_>) -> Plan {
    let wf = o.workflow;
    let generation = wf.metadata.generation.unwrap_or_default();
    let before = wf.status.clone().unwrap_or_default();
    let mut s = before.clone();
    s.task_count = Some(wf.spec.tasks.len() as i64);
    s.observed_generation = Some(generation);
    let mut plan = Plan::default();
    let dag = match validate::check(o) {
        Ok(dag) => dag,
        Err(problem) => {
            invalid(o, &mut s, &mut plan, &problem);
            render::refresh(&mut s, None);
            return finish_plan(plan, &before, s);
        }
    };
    let tick = schedule::due(wf, &s, o.now);
    if let Some(next) = tick.next {
        s.next_schedule_time = Some(MicroTime(next));
    } else {
        s.next_schedule_time = None;
    }
    let mut start = match &wf.spec.schedule {
        None => s.run_generation != Some(generation),
        Some(_) => false,
    };
    if let Some(run) = active_run(&s).map(str::to_owned) {
        if s.run_generation != Some(generation) {
            supersede(o, &mut s, &mut plan, &run, "the spec changed");
        } else if let Some(due) = tick.due {
            if wf.spec.concurrency_policy == mcall_generated::ScheduleConcurrencyPolicy::Replace {
                supersede(o, &mut s, &mut plan, &run, "a scheduled tick replaced it");
                start = true;
            } else {
                schedule::skip_tick(
                    wf,
                    &mut s,
                    due,
                    "the previous run is still running (concurrencyPolicy Forbid)",
                );
            }
            s.last_schedule_time = Some(MicroTime(due));
        }
    } else if let Some(due) = tick.due {
        s.last_schedule_time = Some(MicroTime(due));
        start = true;
    }
    if let Some(missed) = tick.missed {
        schedule::skip_tick(
            wf,
            &mut s,
            missed,
            "missed by more than startingDeadlineSeconds",
        );
        s.last_schedule_time = Some(MicroTime(
            missed.max(s.last_schedule_time.as_ref().map_or(missed, |t| t.0)),
        ));
    }
    if start {
        start_run(o, &mut s, &mut plan, tick.due, 0);
    } else if let Some(retry_at) = s.next_retry_time.as_ref().map(|t| t.0) {
        if retry_at <= o.now {
            let attempt = s.retry_count.unwrap_or(0) + 1;
            let tick = s.current_run.as_ref().map(|t| t.0);
            start_run(o, &mut s, &mut plan, tick, attempt);
        } else {
            plan.requeue_after = Some(until(retry_at, o.now));
        }
    }
    if let Some(run) = s.run_id.clone().filter(|_| s.completion_time.is_none()) {
        advance(o, &dag, &mut s, &mut plan, &run);
    }
    collect_garbage(o, &s, &mut plan);
    render::refresh(&mut s, Some(&dag));
    if let Some(next) = tick.next {
        let wait = until(next, o.now);
        plan.requeue_after = Some(plan.requeue_after.map_or(wait, |w| w.min(wait)));
    }
    finish_plan(plan, &before, s)
}

fn finish_plan(mut plan: Plan, before: &McallWorkflowStatus, s: McallWorkflowStatus) -> Plan {
    if s != *before {
        plan.status = Some(s);
    } else {
        plan.status_first = false;
    }
    plan
}

fn until(t: Timestamp, now: Timestamp) -> Duration {
    let wait = t.duration_since(now);
    Duration::try_from(wait).unwrap_or(Duration::ZERO) + Duration::from_millis(5)
}

/// An invalid spec: the run (if any) is cancelled and nothing is created.
fn invalid(o: &Observed<'_>, s: &mut McallWorkflowStatus, plan: &mut Plan, problem: &SpecProblem) {
    let generation = o.workflow.metadata.generation.unwrap_or_default();
    if let Some(run) = active_run(s).map(str::to_owned) {
        supersede(o, s, plan, &run, "the spec became invalid");
    }
    let message = truncate(&problem.to_string(), 1024);
    let already = s.reason.as_deref() == Some(Reason::InvalidSpec.as_str())
        && s.message.as_deref() == Some(message.as_str())
        && s.run_generation == Some(generation);
    if already {
        return;
    }
    s.phase = Some(Phase::Failed);
    s.reason = Some(Reason::InvalidSpec.to_string());
    s.message = Some(message.clone());
    s.run_generation = Some(generation);
    s.next_retry_time = None;
    set_condition(
        &mut s.conditions,
        READY,
        ConditionStatus::False,
        Reason::InvalidSpec,
        &message,
        generation,
        o.now,
    );
    plan.events.push(Note::new(Reason::InvalidSpec, message));
}

/// The next run id: one above every run id seen in the status, its history and the children.
fn next_run_id(o: &Observed<'_>, s: &McallWorkflowStatus) -> String {
    let history = s
        .history
        .iter()
        .flatten()
        .filter_map(|r| r.run_id.as_deref());
    let children = o.children.iter().map(|c| c.run.as_str());
    let highest = s
        .run_id
        .as_deref()
        .into_iter()
        .chain(history)
        .chain(children)
        .filter_map(run_number)
        .max()
        .unwrap_or(0);
    format!("r{}", highest + 1)
}

/// `r7` → 7.
pub fn run_number(run: &str) -> Option<u64> {
    run.strip_prefix('r')?.parse().ok()
}

fn start_run(
    o: &Observed<'_>,
    s: &mut McallWorkflowStatus,
    plan: &mut Plan,
    tick: Option<Timestamp>,
    attempt: i64,
) {
    let wf = o.workflow;
    let generation = wf.metadata.generation.unwrap_or_default();
    let run = next_run_id(o, s);
    s.run_id = Some(run.clone());
    s.run_generation = Some(generation);
    s.current_run = tick.map(MicroTime);
    s.start_time = Some(Time(o.now));
    s.last_run_time = Some(Time(o.now));
    s.completion_time = None;
    s.next_retry_time = None;
    s.retry_count = Some(attempt);
    if attempt > 0 {
        s.last_retry_time = Some(Time(o.now));
    }
    s.task_statuses = None;
    s.phase = Some(Phase::Running);
    s.reason = Some(Reason::Running.to_string());
    let what = if attempt > 0 {
        format!(
            "run {run} started (re-run {attempt} of {})",
            max_retries(wf)
        )
    } else {
        format!("run {run} started")
    };
    s.message = Some(what.clone());
    set_condition(
        &mut s.conditions,
        READY,
        ConditionStatus::False,
        Reason::Running,
        &what,
        generation,
        o.now,
    );
    plan.events.push(Note::new(Reason::Started, what));
    plan.status_first = true;
}

fn max_retries(wf: &McallWorkflow) -> i64 {
    wf.spec.retry_policy.as_ref().map_or(0, |p| p.max_retries)
}

/// Cancels the active run: its children are deleted and it is recorded as failed.
fn supersede(o: &Observed<'_>, s: &mut McallWorkflowStatus, plan: &mut Plan, run: &str, why: &str) {
    for c in o.children.iter().filter(|c| c.run == run && !c.deleting) {
        plan.delete.push(c.name.clone());
    }
    let message = format!("run {run} cancelled: {why}");
    let mut statuses = s.task_statuses.take().unwrap_or_default();
    for st in &mut statuses {
        if !matches!(st.phase, Phase::Succeeded | Phase::Failed | Phase::Skipped) {
            st.phase = if st.phase == Phase::Running {
                Phase::Failed
            } else {
                Phase::Skipped
            };
            st.reason = Some(StepReason::Cancelled);
        }
    }
    s.task_statuses = Some(statuses);
    s.next_retry_time = None;
    end_run(o, s, plan, Phase::Failed, Reason::Superseded, &message);
}

/// Judges the steps of the active run, starts the ready ones, and ends the run when every step
/// has ended or the deadline passed.
fn advance(
    o: &Observed<'_>,
    dag: &Dag<'_>,
    s: &mut McallWorkflowStatus,
    plan: &mut Plan,
    run: &str,
) {
    let wf = o.workflow;
    let children: Vec<Option<&Child>> = dag
        .steps
        .iter()
        .map(|step| {
            o.children
                .iter()
                .find(|c| c.run == run && c.step == step.name)
        })
        .collect();
    let started = s.start_time.as_ref().map_or(o.now, |t| t.0);
    let deadline = started + SignedDuration::from_secs(wf.spec.timeout);
    let previous = s.task_statuses.clone().unwrap_or_default();
    if o.now >= deadline {
        let mut states = steps::evaluate(dag, &children, Some(StepReason::DeadlineExceeded));
        for (i, state) in states.iter_mut().enumerate() {
            match state {
                StepState::Running => {
                    *state = StepState::Ended(Phase::Failed, StepReason::DeadlineExceeded);
                    if let Some(c) = children[i].filter(|c| !c.deleting) {
                        plan.delete.push(c.name.clone());
                    }
                }
                StepState::Waiting | StepState::Ready => {
                    *state = StepState::Ended(Phase::Skipped, StepReason::DeadlineExceeded);
                }
                StepState::Ended(..) => {}
            }
        }
        s.task_statuses = Some(render::task_statuses(dag, &states, &children, &previous));
        let message = format!("run {run} exceeded its timeout of {}s", wf.spec.timeout);
        return end_run(
            o,
            s,
            plan,
            Phase::Failed,
            Reason::DeadlineExceeded,
            &message,
        );
    }
    let mut states = steps::evaluate(dag, &children, None);
    if wf.spec.fail_fast && !steps::unhandled_failures(dag, &states, false).is_empty() {
        states = steps::evaluate(dag, &children, Some(StepReason::FailFast));
    }
    start_ready(o, dag, &mut states, &mut plan.create, run);
    let statuses = render::task_statuses(dag, &states, &children, &previous);
    announce_step_failures(&statuses, &previous, plan);
    s.task_statuses = Some(statuses);
    if states.iter().all(|st| st.ended().is_some()) {
        let unhandled = steps::unhandled_failures(dag, &states, true);
        let (phase, reason) = match unhandled.first() {
            None => (Phase::Succeeded, Reason::Succeeded),
            Some(_) => (Phase::Failed, Reason::Failed),
        };
        let message = summary(run, dag, &states, &unhandled);
        return end_run(o, s, plan, phase, reason, &message);
    }
    s.message = Some(progress_message(run, &states));
    plan.requeue_after = Some(until(deadline, o.now));
}

/// Creates the ready steps' children, in order, while `concurrency` allows.
fn start_ready(
    o: &Observed<'_>,
    dag: &Dag<'_>,
    states: &mut [StepState],
    create: &mut Vec<McallTask>,
    run: &str,
) {
    let wf = o.workflow;
    let running = states
        .iter()
        .filter(|st| **st == StepState::Running)
        .count() as i64;
    let mut free = (wf.spec.concurrency - running).max(0);
    for &i in &dag.order {
        if free == 0 {
            break;
        }
        if states[i] != StepState::Ready {
            continue;
        }
        let step = &dag.steps[i];
        let template = step.task_ref.as_ref().and_then(|r| {
            let ns = r
                .namespace
                .clone()
                .or_else(|| wf.metadata.namespace.clone())
                .unwrap_or_default();
            (o.template)(&ns, &r.name)
        });
        match child::build(wf, run, step, template.as_ref()) {
            Ok(task) => {
                create.push(task);
                states[i] = StepState::Running;
                free -= 1;
            }
            Err(problem) => {
                tracing::warn!(
                    step = step.name,
                    problem = problem.0,
                    "a step's task cannot be built"
                );
                states[i] = StepState::Ended(Phase::Failed, StepReason::Failed);
            }
        }
    }
}

fn announce_step_failures(
    statuses: &[mcall_generated::WorkflowTaskStatus],
    previous: &[mcall_generated::WorkflowTaskStatus],
    plan: &mut Plan,
) {
    for st in statuses.iter().filter(|st| st.phase == Phase::Failed) {
        let was_failed = previous
            .iter()
            .any(|p| p.name == st.name && p.phase == Phase::Failed);
        if !was_failed {
            let why = st
                .error_message
                .as_deref()
                .or(st.message.as_deref())
                .unwrap_or("failed");
            let code = st
                .error_code
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            plan.events.push(Note::new(
                Reason::StepFailed,
                format!("step {} failed{code}: {why}", st.name),
            ));
        }
    }
}

fn progress_message(run: &str, states: &[StepState]) -> String {
    let ended = states.iter().filter(|s| s.ended().is_some()).count();
    let running = states.iter().filter(|s| **s == StepState::Running).count();
    format!(
        "run {run}: {ended}/{} steps ended, {running} running",
        states.len()
    )
}

fn summary(run: &str, dag: &Dag<'_>, states: &[StepState], unhandled: &[usize]) -> String {
    let count = |phase: Phase| states.iter().filter(|s| s.ended() == Some(phase)).count();
    let counts = format!(
        "{} succeeded, {} failed, {} skipped",
        count(Phase::Succeeded),
        count(Phase::Failed),
        count(Phase::Skipped)
    );
    match unhandled.first() {
        None => format!("run {run} succeeded: {counts}"),
        Some(&i) => format!(
            "run {run} failed: step {} failed ({counts})",
            dag.steps[i].name
        ),
    }
}

/// Records the end of the run, and schedules its re-run when it failed and `retryPolicy` allows.
fn end_run(
    o: &Observed<'_>,
    s: &mut McallWorkflowStatus,
    plan: &mut Plan,
    phase: Phase,
    reason: Reason,
    message: &str,
) {
    let wf = o.workflow;
    let generation = wf.metadata.generation.unwrap_or_default();
    s.phase = Some(phase);
    s.reason = Some(reason.to_string());
    s.message = Some(truncate(message, 1024));
    s.completion_time = Some(Time(o.now));
    let started = s.start_time.clone();
    let record = RunRecord {
        run_id: s.run_id.clone(),
        scheduled_time: s
            .current_run
            .clone()
            .unwrap_or_else(|| MicroTime(started.as_ref().map_or(o.now, |t| t.0))),
        start_time: started,
        completion_time: Some(Time(o.now)),
        phase,
        error_code: (phase != Phase::Succeeded).then(|| reason.to_string()),
        output: Some(truncate(message, 1024)),
    };
    let history = s.history.get_or_insert_with(Vec::new);
    history.push(record);
    trim_history(
        history,
        wf.spec.successful_runs_history_limit,
        wf.spec.failed_runs_history_limit,
    );
    let status = if phase == Phase::Succeeded {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    let retries = s.retry_count.unwrap_or(0);
    if phase == Phase::Failed && reason != Reason::Superseded && retries < max_retries(wf) {
        let delay = retry_delay(wf, retries);
        let at = o.now + delay;
        s.next_retry_time = Some(Time(at));
        s.phase = Some(Phase::Running);
        s.reason = Some(Reason::RetryScheduled.to_string());
        let note = format!(
            "{message}; re-run {} of {} at {at}",
            retries + 1,
            max_retries(wf)
        );
        s.message = Some(truncate(&note, 1024));
        set_condition(
            &mut s.conditions,
            READY,
            ConditionStatus::False,
            Reason::RetryScheduled,
            &note,
            generation,
            o.now,
        );
        plan.events.push(Note::new(Reason::RetryScheduled, note));
        plan.requeue_after = Some(until(at, o.now));
        return;
    }
    set_condition(
        &mut s.conditions,
        READY,
        status,
        reason,
        message,
        generation,
        o.now,
    );
    plan.events.push(Note::new(reason, message));
}

/// `retryDelay`, doubled after each re-run when `backoffPolicy` is exponential (at most an hour).
fn retry_delay(wf: &McallWorkflow, retries_made: i64) -> SignedDuration {
    let Some(policy) = &wf.spec.retry_policy else {
        return SignedDuration::ZERO;
    };
    let base =
        schedule::parse_duration(&policy.retry_delay).unwrap_or(SignedDuration::from_secs(10));
    let factor = match policy.backoff_policy {
        BackoffPolicy::Fixed => 1,
        BackoffPolicy::Exponential => 1_i32
            .checked_shl(retries_made.clamp(0, 20) as u32)
            .unwrap_or(i32::MAX),
    };
    base.checked_mul(factor)
        .unwrap_or(SignedDuration::MAX)
        .min(SignedDuration::from_hours(1))
}

/// Deletes the children of runs that are neither the current one nor kept in `history`, and
/// older than the current run (a child of a newer run than a stale cache shows is kept).
fn collect_garbage(o: &Observed<'_>, s: &McallWorkflowStatus, plan: &mut Plan) {
    let current = s.run_id.as_deref().and_then(run_number).unwrap_or(0);
    let kept: Vec<&str> = s
        .history
        .iter()
        .flatten()
        .filter_map(|r| r.run_id.as_deref())
        .collect();
    for c in &o.children {
        let older = run_number(&c.run).is_some_and(|n| n < current);
        let in_history = kept.contains(&c.run.as_str());
        if older && !in_history && !c.deleting && !plan.delete.contains(&c.name) {
            plan.delete.push(c.name.clone());
        }
    }
}

#[cfg(test)]
mod tests;
