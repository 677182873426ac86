//! A run's lifecycle, for the planner: start it, advance its steps (start the ready ones, end it
//! at its deadline or when every step has ended), end it (history, the re-run of
//! `retryPolicy`), or cancel it. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mcall_generated::{
    BackoffPolicy, ConditionStatus, McallTask, McallWorkflow, McallWorkflowStatus, Phase, Reason,
    RunRecord, StepReason, WorkflowTaskStatus,
};

use super::dag::Dag;
use super::effects::{Plan, until};
use super::observed::Observed;
use super::steps::{self, Child, StepState};
use super::{child, render, schedule};
use crate::controller::report::conditions::{READY, set_condition};
use crate::controller::report::{Note, truncate};

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

/// How long a created child may stay out of the task cache before its creation is repeated.
const RECREATE_AFTER: SignedDuration = SignedDuration::from_secs(5);

/// Digest of `spec.tasks`: whether a spec edit changed the steps.
pub fn tasks_digest(wf: &McallWorkflow) -> String {
    let tasks = serde_json::to_string(&wf.spec.tasks).expect("steps serialize");
    format!("{:08x}", child::digest(&tasks))
}

/// Starts a run: a new run id, recorded before any of its children exists.
pub fn start_run(
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
    s.run_tasks_digest = Some(tasks_digest(wf));
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
    plan.starts_run = true;
}

pub fn max_retries(wf: &McallWorkflow) -> i64 {
    wf.spec.retry_policy.as_ref().map_or(0, |p| p.max_retries)
}

/// Cancels the active run: its children are deleted and it is recorded as failed. A run that
/// already failed and waits for its re-run is recorded already: only the re-run is called off.
pub fn supersede(
    o: &Observed<'_>,
    s: &mut McallWorkflowStatus,
    plan: &mut Plan,
    run: &str,
    why: &str,
) {
    if s.completion_time.is_some() {
        s.next_retry_time = None;
        let message = format!("the re-run of run {run} is called off: {why}");
        let generation = o.workflow.metadata.generation.unwrap_or_default();
        s.phase = Some(Phase::Failed);
        s.reason = Some(Reason::Superseded.to_string());
        s.message = Some(message.clone());
        set_condition(
            &mut s.conditions,
            READY,
            ConditionStatus::False,
            Reason::Superseded,
            &message,
            generation,
            o.now,
        );
        plan.events.push(Note::new(Reason::Superseded, message));
        return;
    }
    for c in o.children.iter().filter(|c| c.run == run && !c.deleting) {
        plan.delete.push(c.name.clone());
    }
    plan.create.retain(|task| {
        let labels = task.metadata.labels.as_ref();
        labels
            .and_then(|l| l.get(child::RUN_LABEL))
            .map(String::as_str)
            != Some(run)
    });
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
/// has ended (whenever that is noticed) or, before that, when the deadline passed.
pub fn advance(
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
    let mut states = steps::evaluate(dag, &children, &previous, None);
    let all_ended = |states: &[StepState]| states.iter().all(|st| st.ended().is_some());
    if !all_ended(&states) && o.now >= deadline {
        return at_deadline(o, dag, s, plan, run, &children, states);
    }
    if wf.spec.fail_fast && !steps::unhandled_failures(dag, &states, false).is_empty() {
        states = steps::evaluate(dag, &children, &previous, Some(StepReason::FailFast));
    }
    if let Err(problem) = start_ready(o, dag, &mut states, &previous, &mut plan.create, run) {
        // The template changed since the run started, into something the step cannot use.
        s.task_statuses = Some(render::task_statuses(
            dag, &states, &children, &previous, o.now,
        ));
        let message = format!("run {run}: {}", problem.0);
        return end_run(o, s, plan, Phase::Failed, Reason::InvalidSpec, &message);
    }
    let statuses = render::task_statuses(dag, &states, &children, &previous, o.now);
    announce_step_failures(&statuses, &previous, plan);
    s.task_statuses = Some(statuses);
    if all_ended(&states) {
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

/// The deadline passed with steps not ended: running ones are cancelled (their children
/// deleted), the rest skipped, and the run fails.
fn at_deadline(
    o: &Observed<'_>,
    dag: &Dag<'_>,
    s: &mut McallWorkflowStatus,
    plan: &mut Plan,
    run: &str,
    children: &[Option<&Child>],
    mut states: Vec<StepState>,
) {
    for (i, state) in states.iter_mut().enumerate() {
        match state {
            StepState::Running | StepState::Creating => {
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
    let previous = s.task_statuses.clone().unwrap_or_default();
    s.task_statuses = Some(render::task_statuses(
        dag, &states, children, &previous, o.now,
    ));
    let message = format!(
        "run {run} exceeded its timeout of {}s",
        o.workflow.spec.timeout
    );
    end_run(
        o,
        s,
        plan,
        Phase::Failed,
        Reason::DeadlineExceeded,
        &message,
    );
}

/// Creates the children of the ready steps, in order, while `concurrency` allows, and again
/// those of steps being created for a while that the cache still does not show (their creation
/// may have failed; an existing child makes it a no-op).
fn start_ready(
    o: &Observed<'_>,
    dag: &Dag<'_>,
    states: &mut [StepState],
    previous: &[WorkflowTaskStatus],
    create: &mut Vec<McallTask>,
    run: &str,
) -> Result<(), child::ChildProblem> {
    let wf = o.workflow;
    let occupied = states
        .iter()
        .filter(|st| matches!(st, StepState::Running | StepState::Creating))
        .count() as i64;
    let mut free = (wf.spec.concurrency - occupied).max(0);
    let overdue = |name: &str| {
        let since = previous
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.start_time.as_ref());
        since.is_none_or(|t| o.now.duration_since(t.0) >= RECREATE_AFTER)
    };
    for &i in &dag.order {
        let again = states[i] == StepState::Creating;
        if again && !overdue(&dag.steps[i].name) {
            continue;
        }
        if !again && (free == 0 || states[i] != StepState::Ready) {
            continue;
        }
        let step = &dag.steps[i];
        let template = o.template_of(step);
        create.push(child::build(wf, run, step, template.as_ref())?);
        if !again {
            states[i] = StepState::Creating;
            free -= 1;
        }
    }
    Ok(())
}

fn announce_step_failures(
    statuses: &[WorkflowTaskStatus],
    previous: &[WorkflowTaskStatus],
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
        output: Some(truncate(message, 256)),
    };
    let history = s.history.get_or_insert_with(Vec::new);
    history.push(record);
    schedule::trim(wf, history);
    let status = if phase == Phase::Succeeded {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    let retries = s.retry_count.unwrap_or(0);
    let retried = !matches!(reason, Reason::Superseded | Reason::InvalidSpec);
    if phase == Phase::Failed && retried && retries < max_retries(wf) {
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
