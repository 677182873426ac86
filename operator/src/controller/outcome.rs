//! What a finished run leaves: the status it writes and the Event it announces. Pure functions of
//! the latest task, the run and its outcome.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use mcall_engine::{TaskOutcome, Verdict};
use mcall_generated::{McallTask, McallTaskStatus, Phase, Reason};

use super::report::{Note, truncate};
use super::runs::{RunKind, ScheduledRun};
use super::status;

/// Whether a finished run reports as the task's current run: it is the current one here, or the
/// status still records it as the run in progress. The latter is a run overtaken here by a newer
/// one whose claim has not landed yet (that claim then conflicts, and the task is decided again):
/// reported as merely overtaken it would add only a history record and leave the task `Running`
/// for a run that is over, which a later reconcile records as `Interrupted` — the same tick twice.
pub fn reports_as_current(latest: &McallTask, kind: &RunKind, registered_current: bool) -> bool {
    registered_current
        || matches!(kind, RunKind::Scheduled(run) if latest.status.as_ref().is_some_and(|s| {
            s.phase == Some(Phase::Running)
                && s.current_run.as_ref().map(|t| t.0) == Some(run.scheduled)
        }))
}

/// The status a finished run leaves on `latest`, or `None` when it leaves nothing. `current`:
/// the run is still the task's current one (not replaced, not overtaken).
pub fn outcome_status(
    latest: &McallTask,
    generation: i64,
    kind: &RunKind,
    current: bool,
    outcome: &TaskOutcome,
    now: Timestamp,
) -> Option<McallTaskStatus> {
    let previous = latest.status.as_ref();
    match (kind, current) {
        (RunKind::OneShot, false) => None,
        (RunKind::OneShot, true) => {
            // A run that never wrote `Running` is reported as if it had, so its start time (and
            // a dependency condition) are those of this run.
            let started = Timestamp::try_from(outcome.started_at).unwrap_or(now);
            let claimed = previous.filter(|s| {
                s.phase == Some(Phase::Running) && s.observed_generation == Some(generation)
            });
            let running = claimed
                .cloned()
                .unwrap_or_else(|| status::running(previous, generation, started));
            Some(status::finished(Some(&running), generation, outcome, now))
        }
        (RunKind::Scheduled(run), false) => Some(status::overtaken_run_finished(
            &previous.cloned().unwrap_or_default(),
            outcome,
            now,
            run.scheduled,
            run.limits,
        )),
        (RunKind::Scheduled(run), true) => {
            Some(scheduled_outcome(latest, generation, run, outcome, now))
        }
    }
}

/// The current scheduled run's result, which also claims the next tick (one status write per
/// tick) unless the spec changed meanwhile.
fn scheduled_outcome(
    latest: &McallTask,
    generation: i64,
    run: &ScheduledRun,
    outcome: &TaskOutcome,
    now: Timestamp,
) -> McallTaskStatus {
    let previous = latest.status.as_ref();
    let claimed = previous.filter(|s| {
        s.phase == Some(Phase::Running)
            && s.current_run.as_ref().map(|t| t.0) == Some(run.scheduled)
    });
    // A run claimed by an earlier result that ended within a second wrote nothing yet.
    let started = Timestamp::try_from(outcome.started_at).unwrap_or(now);
    let running = claimed
        .cloned()
        .unwrap_or_else(|| status::scheduled_running(previous, generation, started, run));
    let mut finished = status::scheduled_finished(
        Some(&running),
        generation,
        outcome,
        now,
        run.scheduled,
        run.limits,
    );
    let unchanged = latest.metadata.generation == Some(generation) && !latest.spec.suspend;
    finished.claimed_tick = run.next.filter(|at| unchanged && *at > now).map(MicroTime);
    finished
}

/// The outcome's Event: always for a one-shot task; for a scheduled one only when a run fails or
/// the task recovers, so a busy schedule does not flood the API server. `latest`: the task before
/// the result was written; `next`: the status written.
pub fn announcement(
    latest: &McallTask,
    kind: &RunKind,
    outcome: &TaskOutcome,
    next: &McallTaskStatus,
) -> Option<Note> {
    // The newest history record before this run tells what the previous run did.
    let previous_phase = latest
        .status
        .as_ref()
        .and_then(|s| s.history.as_ref())
        .and_then(|h| h.first())
        .map(|r| r.phase);
    let changed = match kind {
        RunKind::OneShot => true,
        RunKind::Scheduled(_) => {
            outcome.verdict != Verdict::Succeeded || previous_phase != Some(Phase::Succeeded)
        }
    };
    if !changed {
        return None;
    }
    let message = format!(
        "{} (started {}, ran {} ms)",
        next.message.as_deref().unwrap_or_default(),
        Timestamp::try_from(outcome.started_at).unwrap_or_else(|_| Timestamp::now()),
        outcome.duration.as_millis()
    );
    Some(match outcome.verdict {
        Verdict::Succeeded => Note::new(Reason::Succeeded, message),
        _ => Note::new(Reason::Failed, message),
    })
}

/// What is reported of `outcome` when the API server refused its status as invalid.
pub fn refused_outcome(outcome: &TaskOutcome, refusal: &str) -> TaskOutcome {
    TaskOutcome {
        verdict: Verdict::Failed,
        output: String::new(),
        error_code: Some("ResultRefused".into()),
        error_message: Some(truncate(
            &format!("the API server refused this run's result: {refusal}"),
            1000,
        )),
        inputs: Vec::new(),
        ..outcome.clone()
    }
}

/// The outcome of an execution cancelled while it waited for a slot.
pub fn cancelled_before_start() -> TaskOutcome {
    TaskOutcome {
        verdict: Verdict::Cancelled,
        output: String::new(),
        error_code: Some("Cancelled".into()),
        error_message: Some("cancelled before it started".into()),
        http_status: None,
        response_time: None,
        started_at: std::time::SystemTime::now(),
        duration: std::time::Duration::ZERO,
        retries: 0,
        last_retry_at: None,
        inputs: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
