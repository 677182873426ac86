//! A tick claimed by an earlier result (`status.claimedTick`) that no run of this process is
//! executing: run it, wait for it, or record what became of it.

use k8s_openapi::jiff::Timestamp;
use mcall_generated::Reason;

use super::{
    CLAIM_LEAD, MIN_REQUEUE, Observed, limits, missed, run_now, tick_not_run, unmet_dependency,
    until,
};
use crate::controller::effects::{Effect, Plan};
use crate::controller::report::Note;
use crate::controller::runs::{Claim, RunKind, ScheduledRun};
use crate::controller::status;
use crate::schedule::{ClaimedTick, ClaimedVerdict, Schedule, judge_claimed};

const MAY_HAVE_RUN: &str = "the operator that claimed this tick stopped around its time, so it may have run; it is recorded as failed and not run again, so a command never runs twice";

/// The plan for the claimed tick, or `None` when there is none to act on (no claim, its run is in
/// progress here, or a run-now request goes first: it does not wait for the claimed tick).
pub(super) fn plan(observed: &Observed<'_>, schedule: &Schedule) -> Option<Plan> {
    let (task, now, generation) = (observed.task, observed.now, observed.generation);
    let status = task.status.as_ref()?;
    let tick = status.claimed_tick.as_ref()?.0;
    if observed.active == Some(tick) {
        return None;
    }
    let claimed = ClaimedTick {
        tick,
        now,
        previous_process_until: observed.previous_process_until,
        ran_here: observed.last_ran.is_some_and(|ran| ran >= tick),
        // A run of an earlier tick still registered here is the one whose result made this
        // claim, finishing.
        still_valid: status.observed_generation == Some(generation)
            && !task.spec.suspend
            && observed.active.is_none_or(|run| run < tick),
        starting_deadline_seconds: task.spec.starting_deadline_seconds,
        lead: CLAIM_LEAD,
    };
    let verdict = judge_claimed(&claimed);
    tracing::debug!(?claimed, ?verdict, "claimed tick judged");
    let next = schedule.next_after(now.max(tick));
    // Look again just before the tick after this one, as for any tick.
    let at_next_tick = Plan::idle().requeue_after(next.map(|at| until(now, at, CLAIM_LEAD)));
    let plan = match verdict {
        ClaimedVerdict::WaitUntil(_) if run_now(task).pending().is_some() => return None,
        ClaimedVerdict::WaitUntil(at) => Plan::idle().requeue_after(Some(wait_until(now, at))),
        ClaimedVerdict::Interrupted => {
            let interrupted =
                status::scheduled_interrupted(status, generation, MAY_HAVE_RUN, now, limits(task));
            let note = Note::new(Reason::Interrupted, MAY_HAVE_RUN);
            Plan::idle().then(Effect::write_onto_read(interrupted, Some(note)))
        }
        ClaimedVerdict::Release => {
            let mut released = status.clone();
            released.claimed_tick = None;
            Plan::idle().then(Effect::write_onto_read(released, None))
        }
        ClaimedVerdict::Missed { late } => {
            let message = missed(late);
            let note = Note::new(Reason::Missed, format!("tick {tick}: {message}"));
            let next = tick_not_run(observed, Some(status), tick, Reason::Missed, &message, next);
            at_next_tick.then(Effect::write_onto_read(next, Some(note)))
        }
        ClaimedVerdict::Run => match unmet_dependency(&observed.dependencies) {
            Some(unmet) => {
                let skipped =
                    tick_not_run(observed, Some(status), tick, Reason::Skipped, &unmet, next);
                let note = Note::new(Reason::Skipped, unmet);
                at_next_tick.then(Effect::write_onto_read(skipped, Some(note)))
            }
            None => {
                let run = ScheduledRun {
                    scheduled: tick,
                    tick: Some(tick),
                    run_now: None,
                    next,
                    cancel_previous: false,
                    limits: limits(task),
                    claim: Claim::Chained,
                };
                at_next_tick.then(Effect::start(RunKind::Scheduled(run), None))
            }
        },
    };
    Some(plan)
}

fn wait_until(now: Timestamp, at: Timestamp) -> std::time::Duration {
    std::time::Duration::try_from(at.duration_since(now))
        .unwrap_or_default()
        .max(MIN_REQUEUE)
}
