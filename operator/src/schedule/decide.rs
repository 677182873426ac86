//! The scheduling decision: a pure function of the schedule, what status recorded, whether a run is
//! active, the run-now annotation and the time. The controller acts on the result.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mcall_generated::ScheduleConcurrencyPolicy;

use super::Schedule;

/// Setting this annotation to a new value runs the task once, now.
pub const RUN_NOW_ANNOTATION: &str = "mcall.tz.io/run-now";

/// At most this many older ticks are counted as missed in one decision (Kubernetes CronJob gives
/// up counting at 100 too); the count saturates.
pub const MISSED_COUNT_LIMIT: usize = 100;

/// What the controller knows about a scheduled task when it decides.
#[derive(Clone, Debug)]
pub struct ScheduleInput<'a> {
    pub schedule: &'a Schedule,
    pub now: Timestamp,
    /// `metadata.creationTimestamp`: no tick at or before it is due.
    pub created: Timestamp,
    /// `spec.suspend`.
    pub suspend: bool,
    /// `spec.concurrencyPolicy`.
    pub concurrency_policy: ScheduleConcurrencyPolicy,
    /// `spec.startingDeadlineSeconds`: how late (in whole seconds) a tick may still start; no
    /// limit when `None`.
    pub starting_deadline_seconds: Option<i64>,
    /// `status.lastScheduleTime`: the latest tick already decided (run, skipped or missed). A
    /// tick at or before it is never due again, which makes the decision idempotent.
    pub last_schedule_time: Option<Timestamp>,
    /// The scheduled time of the run in progress, if one is.
    pub active_run: Option<Timestamp>,
    pub run_now: RunNowRequest<'a>,
}

/// The run-now annotation and the value the controller last acted on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunNowRequest<'a> {
    /// The value of [`RUN_NOW_ANNOTATION`], if set.
    pub requested: Option<&'a str>,
    /// The value the controller last started a run for.
    pub handled: Option<&'a str>,
}

impl RunNowRequest<'_> {
    /// The request not handled yet (set, not empty, and different from the handled one), as
    /// [`handled_token`] records it.
    pub fn pending(&self) -> Option<String> {
        self.requested
            .filter(|value| !value.is_empty())
            .map(handled_token)
            .filter(|token| Some(token.as_str()) != self.handled)
    }
}

/// Longest request recorded as it is: `status.runNowHandled` holds at most 256 bytes.
const HANDLED_MAX: usize = 256;

/// How a run-now request is recorded in `status.runNowHandled`: as it is, or, when longer than
/// the field allows, its start and a hash of the whole (the API server would refuse the status).
pub fn handled_token(requested: &str) -> String {
    if requested.len() <= HANDLED_MAX {
        return requested.to_owned();
    }
    // FNV-1a: stable across versions and machines, which std's hasher does not promise.
    let hash = requested.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut start = 200;
    while !requested.is_char_boundary(start) {
        start -= 1;
    }
    format!("{}…#{hash:016x}", &requested[..start])
}

/// What to do now, and when to look again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleDecision {
    /// The latest due tick, if one is not decided yet, and what happens to it. Whatever the
    /// verdict, write its time to `status.lastScheduleTime` (with optimistic concurrency) before
    /// starting anything: that write is what makes a tick run at most once.
    pub tick: Option<DueTick>,
    /// A run to start now.
    pub run: Option<Run>,
    /// A run-now request waits because `Forbid` and a run is active. It stays pending (do not
    /// mark it handled); the end of the active run triggers the next decision.
    pub run_now_deferred: bool,
    /// For `status.nextScheduleTime`: the first tick after now (`None` while suspended or when
    /// the schedule never fires again).
    pub next_schedule_time: Option<Timestamp>,
    /// When to decide again: the next tick, so no polling. `None` while suspended (editing the
    /// spec or the annotation wakes the controller) or when the schedule never fires again.
    pub requeue_at: Option<Timestamp>,
}

/// The latest due tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueTick {
    /// The tick; the identity of its run.
    pub time: Timestamp,
    pub verdict: TickVerdict,
    /// Older ticks after `lastScheduleTime` (or creation) that will never run, e.g. while the
    /// operator was down or the task suspended. Only the latest due tick is considered for a
    /// run, so a resumed task or a restarted operator runs once, not once per missed tick.
    /// Saturates at [`MISSED_COUNT_LIMIT`].
    pub older_missed: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickVerdict {
    /// Run it: [`ScheduleDecision::run`] carries the run.
    Run,
    /// `Forbid` and a run is active: record the tick as skipped.
    Skipped,
    /// Later than `startingDeadlineSeconds`: record the tick as missed; do not run it.
    Missed { late: SignedDuration },
}

/// A run to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The run's identity, for `RunRecord.scheduledTime`: the tick, or `now` for a run-now
    /// request alone.
    pub scheduled_time: Timestamp,
    /// The tick this run is for, if any.
    pub tick: Option<Timestamp>,
    /// The run-now value this run satisfies, if any: record it as handled together with the
    /// tick, before starting. A tick and a request due together share one run.
    pub run_now: Option<String>,
    /// What happens to the run in progress.
    pub active: ActiveRunAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActiveRunAction {
    /// No run is in progress.
    NoneActive,
    /// `Replace`: cancel the run in progress, then start this one.
    Cancel,
    /// `Allow`: start this one and let the one in progress finish. The task tracks one active
    /// run, the newest; the older one's result still lands in the history.
    LeaveRunning,
}

/// Decides what a scheduled task does now.
///
/// - Only the latest tick in `(max(lastScheduleTime, creation), now]` is considered; older ones
///   are counted in [`DueTick::older_missed`].
/// - It runs unless more than `startingDeadlineSeconds` late (then missed) or `Forbid` and a
///   run is active (then skipped). `Replace` cancels the active run; `Allow` leaves it running.
/// - While suspended, no tick is due and nothing is requeued; on resume the latest tick runs if
///   still within the deadline (with no deadline: whatever its age, as in Kubernetes CronJob),
///   so there is no catch-up storm.
/// - A pending run-now request runs even while suspended, under the same concurrency policy (a
///   `Forbid` request waits for the active run to end, instead of being dropped).
pub fn decide(input: &ScheduleInput<'_>) -> ScheduleDecision {
    let now = input.now;
    let decided_up_to = input
        .last_schedule_time
        .map_or(input.created, |last| last.max(input.created));

    let (tick, next) = if input.suspend {
        (None, None)
    } else {
        let next = input.schedule.next_after(now.max(decided_up_to));
        (due_tick(input, decided_up_to), next)
    };

    let active = |policy| match (input.active_run, policy) {
        (None, _) => Some(ActiveRunAction::NoneActive),
        (Some(_), ScheduleConcurrencyPolicy::Allow) => Some(ActiveRunAction::LeaveRunning),
        (Some(_), ScheduleConcurrencyPolicy::Replace) => Some(ActiveRunAction::Cancel),
        (Some(_), ScheduleConcurrencyPolicy::Forbid) => None,
    };
    let run_now = input.run_now.pending();
    let mut run_now_deferred = false;
    let run = match tick {
        Some(DueTick {
            time,
            verdict: TickVerdict::Run,
            ..
        }) => Some(Run {
            scheduled_time: time,
            tick: Some(time),
            run_now: run_now.clone(),
            active: active(input.concurrency_policy).unwrap_or(ActiveRunAction::NoneActive),
        }),
        _ => run_now.and_then(|value| match active(input.concurrency_policy) {
            Some(action) => Some(Run {
                scheduled_time: now,
                tick: None,
                run_now: Some(value),
                active: action,
            }),
            None => {
                run_now_deferred = true;
                None
            }
        }),
    };

    ScheduleDecision {
        tick,
        run,
        run_now_deferred,
        next_schedule_time: next,
        requeue_at: next,
    }
}

fn due_tick(input: &ScheduleInput<'_>, decided_up_to: Timestamp) -> Option<DueTick> {
    let time = input
        .schedule
        .latest_at_or_before(input.now)
        .filter(|tick| *tick > decided_up_to)?;
    let older = input
        .schedule
        .ticks_between(decided_up_to, time, MISSED_COUNT_LIMIT + 1);
    let older_missed = match older.last() {
        Some(last) if *last == time => older.len() - 1,
        _ => MISSED_COUNT_LIMIT,
    };
    let late = input.now.duration_since(time);
    let verdict = match input.starting_deadline_seconds {
        Some(deadline) if late.as_secs() > deadline.max(0) => TickVerdict::Missed { late },
        _ if input.active_run.is_some()
            && input.concurrency_policy == ScheduleConcurrencyPolicy::Forbid =>
        {
            TickVerdict::Skipped
        }
        _ => TickVerdict::Run,
    };
    Some(DueTick {
        time,
        verdict,
        older_missed,
    })
}

#[cfg(test)]
mod tests;
