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

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use mcall_generated::{ConditionStatus, McallWorkflow, McallWorkflowStatus, Phase, Reason};

use super::dag::SpecProblem;
use super::effects::{Plan, until};
use super::observed::Observed;
use super::run::{advance, run_number, start_run, supersede, tasks_digest};
use super::{render, schedule, validate};
use crate::controller::report::conditions::{READY, set_condition};
use crate::controller::report::{Note, truncate};

/// The run in the status, if its steps are going on (not ended, not waiting for a re-run).
fn running(s: &McallWorkflowStatus) -> Option<String> {
    s.run_id.clone().filter(|_| s.completion_time.is_none())
}

/// Whether the spec changed under the run in progress so that it must stop: for a one-shot
/// workflow any new generation (a run per generation); for a scheduled one, only new steps (an
/// edit of `suspend` or the history limits lets it go on).
fn outdated(wf: &McallWorkflow, s: &McallWorkflowStatus) -> bool {
    let generation = wf.metadata.generation.unwrap_or_default();
    match wf.spec.schedule {
        None => s.run_generation != Some(generation),
        Some(_) => s.run_tasks_digest.as_deref() != Some(tasks_digest(wf).as_str()),
    }
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
        // A one-shot workflow whose run of this generation is over has nothing left to check
        // (its template may go now).
        Err(_)
            if wf.spec.schedule.is_none()
                && active_run(&s).is_none()
                && s.run_generation == Some(generation) =>
        {
            return finish_plan(plan, &before, s);
        }
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
    // The run in progress goes on first: one that ended before a tick came must not make the
    // tick look skipped.
    if let Some(run) = running(&s).filter(|_| !outdated(wf, &s)) {
        advance(o, &dag, &mut s, &mut plan, &run);
    }
    if let Some((tick, attempt)) = triggers(o, &tick, &mut s, &mut plan) {
        if let Err(problem) = validate::steps_compile(o) {
            s.next_retry_time = None;
            invalid(o, &mut s, &mut plan, &problem);
            render::refresh(&mut s, Some(&dag));
            return finish_plan(plan, &before, s);
        }
        start_run(o, &mut s, &mut plan, tick, attempt);
        let run = s.run_id.clone().expect("a run started");
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

/// Whether a run starts now, and with which tick and attempt: a new generation (no schedule), a
/// due tick (a run in progress is superseded, or the tick skipped under Forbid), or a re-run whose
/// time has come. Records the ticks handled.
fn triggers(
    o: &Observed<'_>,
    tick: &schedule::Ticks,
    s: &mut McallWorkflowStatus,
    plan: &mut Plan,
) -> Option<(Option<Timestamp>, i64)> {
    let wf = o.workflow;
    let generation = wf.metadata.generation.unwrap_or_default();
    let mut start = match &wf.spec.schedule {
        None => s.run_generation != Some(generation),
        Some(_) => false,
    };
    if let Some(run) = active_run(s).map(str::to_owned) {
        if outdated(wf, s) {
            supersede(o, s, plan, &run, "the spec changed");
        } else if let Some(due) = tick.due {
            if wf.spec.concurrency_policy == mcall_generated::ScheduleConcurrencyPolicy::Replace {
                supersede(o, s, plan, &run, "a scheduled tick replaced it");
                start = true;
            } else {
                schedule::skip_tick(
                    wf,
                    s,
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
        schedule::skip_tick(wf, s, missed, "missed by more than startingDeadlineSeconds");
        s.last_schedule_time = Some(MicroTime(
            missed.max(s.last_schedule_time.as_ref().map_or(missed, |t| t.0)),
        ));
    }
    if start {
        Some((tick.due, 0))
    } else {
        match s.next_retry_time.as_ref().map(|t| t.0) {
            Some(at) if at <= o.now => Some((
                s.current_run.as_ref().map(|t| t.0),
                s.retry_count.unwrap_or(0) + 1,
            )),
            Some(at) => {
                plan.requeue_after = Some(until(at, o.now));
                None
            }
            None => None,
        }
    }
}

fn finish_plan(mut plan: Plan, before: &McallWorkflowStatus, s: McallWorkflowStatus) -> Plan {
    if s != *before {
        plan.status = Some(s);
    }
    plan
}

/// An invalid spec: the run (if any) is cancelled and nothing is created.
fn invalid(o: &Observed<'_>, s: &mut McallWorkflowStatus, plan: &mut Plan, problem: &SpecProblem) {
    let generation = o.workflow.metadata.generation.unwrap_or_default();
    if let Some(run) = active_run(s).map(str::to_owned) {
        supersede(o, s, plan, &run, "the spec became invalid");
    }
    let message = truncate(&problem.to_string(), 1024);
    if problem.transient {
        // Not marked as this generation's run: once the problem goes, the run starts.
        plan.requeue_after = Some(validate::MISSING_TEMPLATE_RECHECK);
    }
    let already = s.reason.as_deref() == Some(Reason::InvalidSpec.as_str())
        && s.message.as_deref() == Some(message.as_str())
        && (problem.transient || s.run_generation == Some(generation));
    if already {
        return;
    }
    s.phase = Some(Phase::Failed);
    s.reason = Some(Reason::InvalidSpec.to_string());
    s.message = Some(message.clone());
    if !problem.transient {
        s.run_generation = Some(generation);
    }
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

/// Deletes the children of runs older than the current one that are not kept in `history`, and
/// every child still executing that no run in progress needs (one that survived a cancellation,
/// or was created as its run ended). A child of a newer run than a stale cache shows is kept.
fn collect_garbage(o: &Observed<'_>, s: &McallWorkflowStatus, plan: &mut Plan) {
    let current = s.run_id.as_deref().and_then(run_number).unwrap_or(0);
    let current_ended = s.completion_time.is_some();
    let kept: Vec<&str> = s
        .history
        .iter()
        .flatten()
        .filter_map(|r| r.run_id.as_deref())
        .collect();
    for c in o.children.iter().filter(|c| !c.deleting) {
        let Some(n) = run_number(&c.run) else {
            continue;
        };
        let executing = !matches!(
            c.phase,
            Some(Phase::Succeeded | Phase::Failed | Phase::Skipped)
        );
        let unneeded = if executing {
            n < current || (n == current && current_ended)
        } else {
            n < current && !kept.contains(&c.run.as_str())
        };
        if unneeded && !plan.delete.contains(&c.name) {
            plan.delete.push(c.name.clone());
        }
    }
}

#[cfg(test)]
mod tests;
