//! Planning a scheduled task: a tick (or a run-now request) at a time, exactly once. Pure: the
//! schedule's decision is `crate::schedule::decide` (and `judge_claimed` for a tick claimed by an
//! earlier result); this turns it, with what the reconcile observed, into effects and the time to
//! look again (just before the next tick: no polling).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use mcall_generated::{McallTask, McallTaskStatus, Phase, Reason};

use super::effects::{Effect, Plan};
use super::report::Note;
use super::report::conditions::{READY, reason_of};
use super::runs::{Claim, HistoryLimits, RunKind, ScheduledRun};
use super::status;
use crate::schedule::{
    self, ActiveRunAction, RunNowRequest, Schedule, ScheduleDecision, ScheduleError, ScheduleInput,
    TickVerdict,
};

mod claimed;

/// How long before a tick its claim is written: the run then starts at the tick itself instead of
/// one API round trip after it. A restart inside this window leaves the claimed tick recorded
/// as interrupted, like a restart during a run.
pub const CLAIM_LEAD: Duration = Duration::from_secs(1);

/// The shortest wait before a scheduled task is looked at again: with a run in progress (or a
/// cache that has not caught up with our own write) the same decision would come back at once.
pub const MIN_REQUEUE: Duration = Duration::from_millis(100);

/// A new task whose first tick is at most this far away writes no status until that run.
const FIRST_RUN_SOON: Duration = Duration::from_secs(30);

const RUN_INTERRUPTED: &str = "the operator stopped while this run was in progress; it is recorded as failed and not re-run, so a command never runs twice";

const RUN_ADOPTED: &str = "the operator that started this run stopped; its pods are followed to their result (none is started twice)";

/// Reasons a scheduled task is refused for as long as its spec stays as it is.
const REJECTIONS: [Reason; 4] = [
    Reason::InvalidSchedule,
    Reason::InvalidSpec,
    Reason::CommandsNotAllowed,
    Reason::InputUnavailable,
];

/// What the reconcile observed of a scheduled task.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub task: &'a McallTask,
    pub generation: i64,
    pub now: Timestamp,
    /// Why the spec cannot run at all (`InvalidSpec`, `CommandsNotAllowed`), if so.
    pub rejection: Option<(Reason, String)>,
    /// The scheduled time of the run in progress here, if any.
    pub active: Option<Timestamp>,
    /// The scheduled time of the latest run this process finished.
    pub last_ran: Option<Timestamp>,
    /// Claimed ticks at or before this may have been started by the previous operator process.
    pub previous_process_until: Timestamp,
    /// The task's dependencies with their phase (`None`: no such task).
    pub dependencies: Vec<(String, Option<Phase>)>,
    /// Whether every input is a command run in a pod, which outlives the operator process that
    /// started it: a run interrupted by a restart can be adopted.
    pub all_inputs_in_pods: bool,
}

pub fn plan(observed: &Observed<'_>) -> Plan {
    let task = observed.task;
    let parsed = Schedule::parse(
        task.spec.schedule.as_deref().unwrap_or_default(),
        task.spec.time_zone.as_deref(),
    );
    let schedule = match (parsed, &observed.rejection) {
        (Err(e), _) => return rejected(observed, ScheduleError::REASON, e.to_string()),
        (Ok(_), Some((reason, message))) => return rejected(observed, *reason, message.clone()),
        (Ok(schedule), None) => schedule.spread_by(&task.uid().unwrap_or_default()),
    };
    if let Some(s) = task.status.as_ref()
        && s.phase == Some(Phase::Running)
        && observed.active.is_none()
        && let Some(current) = s.current_run.as_ref()
    {
        // A run this process finished is not replayed: its result may not be in the cache yet
        // (the write below then conflicts), or could not be written.
        let ran_here = observed.last_ran.is_some_and(|last| last >= current.0);
        if observed.all_inputs_in_pods
            && !ran_here
            && s.observed_generation == Some(observed.generation)
        {
            return adopt(observed, s, current.0);
        }
        let interrupted = status::scheduled_interrupted(
            s,
            observed.generation,
            RUN_INTERRUPTED,
            observed.now,
            limits(task),
        );
        let note = Note::new(Reason::Interrupted, RUN_INTERRUPTED);
        return Plan::idle().then(Effect::write_onto_read(interrupted, Some(note)));
    }
    if let Some(plan) = claimed::plan(observed, &schedule) {
        return plan;
    }
    plan_due(observed, &schedule)
}

/// The run a stopped operator process recorded `Running`, replayed here over its pods: the same
/// run (its scheduled time names the pods), with its claim already written.
fn adopt(observed: &Observed<'_>, status: &McallTaskStatus, scheduled: Timestamp) -> Plan {
    let tick = status
        .last_schedule_time
        .as_ref()
        .filter(|last| last.0 == scheduled)
        .map(|_| scheduled);
    let run = ScheduledRun {
        scheduled,
        tick,
        run_now: None,
        next: status.next_schedule_time.as_ref().map(|t| t.0),
        cancel_previous: false,
        limits: limits(observed.task),
        claim: Claim::Adopted,
    };
    let wake = status
        .next_schedule_time
        .as_ref()
        .map(|next| until(observed.now, next.0, CLAIM_LEAD));
    Plan::idle()
        .requeue_after(wake)
        .then(Effect::Announce(Note::new(Reason::Adopted, RUN_ADOPTED)))
        .then(Effect::start(RunKind::Scheduled(run), None))
}

/// Failed for `reason`, once per generation (no repeated writes).
fn rejected(observed: &Observed<'_>, reason: Reason, message: String) -> Plan {
    let status = observed.task.status.as_ref();
    let already = status.is_some_and(|s| {
        s.observed_generation == Some(observed.generation)
            && s.phase == Some(Phase::Failed)
            && reason_of(s.conditions.as_deref(), READY) == Some(reason)
    });
    if already {
        return Plan::idle();
    }
    Plan::idle().then(Effect::reject(
        status,
        observed.generation,
        reason,
        &message,
        observed.now,
    ))
}

fn limits(task: &McallTask) -> HistoryLimits {
    HistoryLimits {
        successful: task.spec.successful_runs_history_limit,
        failed: task.spec.failed_runs_history_limit,
    }
}

/// The run-now request not handled yet, if any.
fn run_now(task: &McallTask) -> RunNowRequest<'_> {
    RunNowRequest {
        requested: task
            .annotations()
            .get(schedule::RUN_NOW_ANNOTATION)
            .map(String::as_str),
        handled: task
            .status
            .as_ref()
            .and_then(|s| s.run_now_handled.as_deref()),
    }
}

/// The status the plan builds on: a claimed tick whose run is in progress here is decided, so
/// every status written from here on records it as the last scheduled tick (a run-now's claim
/// would otherwise leave it due).
fn decided_status(observed: &Observed<'_>) -> Option<McallTaskStatus> {
    let mut status = observed.task.status.clone()?;
    let claimed = status.claimed_tick.as_ref().map(|t| t.0);
    if let Some(tick) = claimed.filter(|tick| {
        observed.active == Some(*tick)
            && status
                .last_schedule_time
                .as_ref()
                .is_none_or(|last| last.0 < *tick)
    }) {
        status.last_schedule_time = Some(MicroTime(tick));
    }
    Some(status)
}

/// The schedule's decision now, or, for a tick due within [`CLAIM_LEAD`] with nothing running,
/// the decision as of that tick, claimed now (the run then waits for it).
fn decide_with_lead(input: &ScheduleInput<'_>) -> (ScheduleDecision, Claim) {
    let decision = schedule::decide(input);
    if decision.run.is_none()
        && decision.tick.is_none()
        && input.active_run.is_none()
        && let Some(at) = decision.requeue_at
        && at > input.now
        && Duration::try_from(at.duration_since(input.now)).is_ok_and(|d| d <= CLAIM_LEAD)
    {
        let ahead = schedule::decide(&ScheduleInput {
            now: at,
            ..input.clone()
        });
        if ahead.run.as_ref().is_some_and(|run| run.tick == Some(at)) {
            return (ahead, Claim::Ahead);
        }
    }
    (decision, Claim::Now)
}

/// When to look again: just before the next tick (its claim is written [`CLAIM_LEAD`] early),
/// never sooner than [`MIN_REQUEUE`]; a run-now request deferred by Forbid within a second (the
/// end of the active run is reported before this process forgets it, so that report's own
/// reconcile still sees it active).
fn wake(decision: &ScheduleDecision, now: Timestamp) -> Option<Duration> {
    let until_next_tick = decision.requeue_at.map(|at| until(now, at, CLAIM_LEAD));
    match (until_next_tick, decision.run_now_deferred) {
        (Some(d), true) => Some(d.min(Duration::from_secs(1))),
        (None, true) => Some(Duration::from_secs(1)),
        (d, false) => d,
    }
}

/// From `now` to `lead` before `at`, at least [`MIN_REQUEUE`].
fn until(now: Timestamp, at: Timestamp, lead: Duration) -> Duration {
    Duration::try_from(at.duration_since(now))
        .unwrap_or_default()
        .saturating_sub(lead)
        .max(MIN_REQUEUE)
}

/// Ticks due now, or nothing due: what `crate::schedule::decide` says.
fn plan_due(observed: &Observed<'_>, schedule: &Schedule) -> Plan {
    let task = observed.task;
    let status = decided_status(observed);
    let input = ScheduleInput {
        schedule,
        now: observed.now,
        created: task
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(observed.now, |t| t.0),
        suspend: task.spec.suspend,
        concurrency_policy: task.spec.concurrency_policy,
        starting_deadline_seconds: task.spec.starting_deadline_seconds,
        last_schedule_time: status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .map(|t| t.0),
        active_run: observed.active,
        run_now: run_now(task),
    };
    let (decision, claim) = decide_with_lead(&input);
    tracing::debug!(?decision, "schedule decided");
    let next_plan = Plan::idle().requeue_after(wake(&decision, observed.now));
    let status = status.as_ref();
    if let Some(run) = decision.run.clone() {
        return next_plan.then(start_or_skip(observed, status, run, &decision, claim));
    }
    if let Some(tick) = decision.tick {
        let (code, message) = match tick.verdict {
            TickVerdict::Skipped => (
                Reason::Skipped,
                "the previous run is still in progress (concurrencyPolicy Forbid)".to_owned(),
            ),
            TickVerdict::Missed { late } => (Reason::Missed, missed(late)),
            TickVerdict::Run => unreachable!("a tick to run comes with a run"),
        };
        let next = tick_not_run(
            observed,
            status,
            tick.time,
            code,
            &message,
            decision.next_schedule_time,
        );
        let note = Note::new(code, format!("tick {}: {message}", tick.time));
        return next_plan.then(Effect::write_onto_read(next, Some(note)));
    }
    match nothing_due(observed, status, &decision) {
        Some(next) => next_plan.then(Effect::write_onto_read(next, None)),
        None => next_plan,
    }
}

/// A due run starts, unless a dependency has not Succeeded: then its tick is recorded skipped.
fn start_or_skip(
    observed: &Observed<'_>,
    status: Option<&McallTaskStatus>,
    run: schedule::Run,
    decision: &ScheduleDecision,
    claim: Claim,
) -> Effect {
    let next = decision.next_schedule_time;
    if run.active == ActiveRunAction::Cancel {
        tracing::info!("replacing the run in progress");
    }
    if let Some(unmet) = unmet_dependency(&observed.dependencies) {
        let mut skipped = tick_not_run(
            observed,
            status,
            run.scheduled_time,
            Reason::Skipped,
            &unmet,
            next,
        );
        skipped.run_now_handled = run.run_now.or(skipped.run_now_handled);
        return Effect::write_onto_read(skipped, Some(Note::new(Reason::Skipped, unmet)));
    }
    let scheduled = ScheduledRun {
        scheduled: run.scheduled_time,
        tick: run.tick,
        run_now: run.run_now,
        next,
        cancel_previous: run.active != ActiveRunAction::LeaveRunning,
        limits: limits(observed.task),
        claim,
    };
    // The run builds on the status as planned when a claimed tick was decided here.
    let decided = status
        .filter(|s| Some(*s) != observed.task.status.as_ref())
        .cloned();
    Effect::start(RunKind::Scheduled(scheduled), decided)
}

/// Nothing due: keep `nextScheduleTime` current, and say when the first run comes. `None`: no
/// write needed.
fn nothing_due(
    observed: &Observed<'_>,
    status: Option<&McallTaskStatus>,
    decision: &ScheduleDecision,
) -> Option<McallTaskStatus> {
    let (task, now, generation) = (observed.task, observed.now, observed.generation);
    // A new task whose first run is at most FIRST_RUN_SOON away gets its first status with that
    // run (a thousand checks created at once: a thousand writes fewer). The API server shows a
    // new task as `phase: Pending` before anything is written.
    let first_run_soon = decision.next_schedule_time.is_some_and(|at| {
        Duration::try_from(at.duration_since(now)).is_ok_and(|d| d <= FIRST_RUN_SOON)
    });
    if status.is_none_or(|s| s.observed_generation.is_none()) && first_run_soon {
        return None;
    }
    // A run in progress here (or waiting for its claimed tick) writes the schedule with its
    // result.
    if observed.active.is_some() {
        return None;
    }
    let mut next = status.cloned().unwrap_or_default();
    next.next_schedule_time = decision.next_schedule_time.map(MicroTime);
    // A rejection of an earlier generation (e.g. InvalidSchedule, since fixed) no longer holds.
    let rejected_before = next.observed_generation != Some(generation)
        && next.phase == Some(Phase::Failed)
        && reason_of(next.conditions.as_deref(), READY).is_some_and(|r| REJECTIONS.contains(&r));
    next.observed_generation = Some(generation);
    if next.phase.is_none() || next.phase == Some(Phase::Pending) || rejected_before {
        next.phase = Some(Phase::Pending);
        next.message = Some(match (task.spec.suspend, decision.next_schedule_time) {
            (true, _) => "suspended".to_owned(),
            (false, Some(at)) => format!("scheduled; next run at {at}"),
            (false, None) => "the schedule has no further ticks".to_owned(),
        });
    }
    (status != Some(&next)).then_some(next)
}

/// A due tick recorded as not run, with its history record.
fn tick_not_run(
    observed: &Observed<'_>,
    status: Option<&McallTaskStatus>,
    tick: Timestamp,
    code: Reason,
    message: &str,
    next: Option<Timestamp>,
) -> McallTaskStatus {
    let limits = limits(observed.task);
    status::tick_not_run(
        status,
        observed.generation,
        tick,
        code,
        message,
        next,
        limits,
    )
}

fn missed(late: k8s_openapi::jiff::SignedDuration) -> String {
    format!(
        "started {}s late, past startingDeadlineSeconds",
        late.as_secs()
    )
}

/// The first dependency that has not Succeeded, for a scheduled run (dependencies gate each run).
fn unmet_dependency(dependencies: &[(String, Option<Phase>)]) -> Option<String> {
    dependencies.iter().find_map(|(name, phase)| match phase {
        Some(Phase::Succeeded) => None,
        Some(p) => Some(format!("dependency {name} is {p}")),
        None => Some(format!("dependency {name} does not exist")),
    })
}

/// The status of a scheduled run that cannot start (a Secret of `environmentFrom` is missing,
/// say): failed, with its tick recorded, so the next tick tries again instead of this one being
/// retried in a loop.
pub fn cannot_run(
    previous: Option<&McallTaskStatus>,
    generation: i64,
    run: &ScheduledRun,
    reason: Reason,
    message: &str,
    now: Timestamp,
) -> McallTaskStatus {
    let failed = status::failed(previous, generation, reason, message, now);
    let mut claimed = status::tick_not_run(
        Some(&failed),
        generation,
        run.scheduled,
        reason,
        message,
        run.next,
        run.limits,
    );
    claimed.last_schedule_time = run
        .tick
        .map(MicroTime)
        .or(previous.and_then(|s| s.last_schedule_time.clone()));
    if let Some(value) = &run.run_now {
        claimed.run_now_handled = Some(value.clone());
    }
    claimed
}

#[cfg(test)]
mod tests;
