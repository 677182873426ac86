//! The status the operator writes: pure builders from the previous status, the decision or the
//! engine's outcome, and the time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use mcall_engine::{TaskOutcome, Verdict};
use mcall_generated::{
    ConditionStatus, InputResult, McallTaskStatus, Phase, Reason, RunRecord, TaskResult,
};

use super::report::conditions::{DEPENDENCIES_READY, READY, set_condition};
use super::report::truncate;
use super::runs::{HistoryLimits, ScheduledRun};

fn base(
    previous: Option<&McallTaskStatus>,
    generation: i64,
    phase: Phase,
    message: &str,
) -> McallTaskStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.phase = Some(phase);
    status.message = Some(truncate(message, 1024));
    status.observed_generation = Some(generation);
    status
}

/// A one-shot run that could not be prepared because the API server failed (reading a Secret of
/// `environmentFrom`, say) and is retried: Pending, with `Ready` False saying why.
pub fn preparing_failed(
    previous: Option<&McallTaskStatus>,
    generation: i64,
    message: &str,
    now: Timestamp,
) -> McallTaskStatus {
    let mut s = base(previous, generation, Phase::Pending, message);
    set_condition(
        &mut s.conditions,
        READY,
        ConditionStatus::False,
        Reason::PrepareFailed,
        message,
        generation,
        now,
    );
    s
}

pub fn waiting(
    previous: Option<&McallTaskStatus>,
    generation: i64,
    message: &str,
    since: Timestamp,
    now: Timestamp,
) -> McallTaskStatus {
    let mut s = base(previous, generation, Phase::Pending, message);
    // The wait (and its grace period) starts afresh with each generation: drop a condition left
    // by an earlier one, so `since` becomes its transition time.
    if let Some(conditions) = s.conditions.as_mut() {
        conditions.retain(|c| {
            c.r#type != DEPENDENCIES_READY.as_str() || c.observed_generation == Some(generation)
        });
    }
    set_condition(
        &mut s.conditions,
        DEPENDENCIES_READY,
        ConditionStatus::False,
        Reason::WaitingForDependencies,
        message,
        generation,
        since,
    );
    set_condition(
        &mut s.conditions,
        READY,
        ConditionStatus::False,
        Reason::WaitingForDependencies,
        message,
        generation,
        now,
    );
    s
}

pub fn skipped(
    previous: Option<&McallTaskStatus>,
    generation: i64,
    message: &str,
    now: Timestamp,
) -> McallTaskStatus {
    let mut s = base(previous, generation, Phase::Skipped, message);
    s.completion_time = Some(Time(now));
    set_condition(
        &mut s.conditions,
        DEPENDENCIES_READY,
        ConditionStatus::False,
        Reason::DependencyNotSatisfied,
        message,
        generation,
        now,
    );
    set_condition(
        &mut s.conditions,
        READY,
        ConditionStatus::False,
        Reason::Skipped,
        message,
        generation,
        now,
    );
    s
}

/// A task that cannot run (`InvalidSpec`, `CommandsNotAllowed`) or whose run was lost
/// (`Interrupted`).
pub fn failed(
    previous: Option<&McallTaskStatus>,
    generation: i64,
    reason: Reason,
    message: &str,
    now: Timestamp,
) -> McallTaskStatus {
    let mut s = base(
        previous,
        generation,
        Phase::Failed,
        &format!("{reason}: {message}"),
    );
    s.completion_time = Some(Time(now));
    s.result = Some(TaskResult {
        output: None,
        error_code: Some(reason.to_string()),
        error_message: Some(truncate(message, 1024)),
    });
    set_condition(
        &mut s.conditions,
        READY,
        ConditionStatus::False,
        reason,
        message,
        generation,
        now,
    );
    s
}

pub fn running(
    previous: Option<&McallTaskStatus>,
    generation: i64,
    now: Timestamp,
) -> McallTaskStatus {
    let mut s = base(previous, generation, Phase::Running, "running");
    s.start_time = Some(Time(now));
    s.completion_time = None;
    s.retry_count = Some(0);
    s.last_retry_time = None;
    if s.conditions
        .as_ref()
        .is_some_and(|cs| cs.iter().any(|c| c.r#type == DEPENDENCIES_READY.as_str()))
    {
        set_condition(
            &mut s.conditions,
            DEPENDENCIES_READY,
            ConditionStatus::True,
            Reason::DependenciesSucceeded,
            "every dependency succeeded",
            generation,
            now,
        );
    }
    set_condition(
        &mut s.conditions,
        READY,
        ConditionStatus::False,
        Reason::Running,
        "the task is running",
        generation,
        now,
    );
    s
}

pub fn retrying(
    previous: &McallTaskStatus,
    attempt: u32,
    at: Timestamp,
    reason: &str,
) -> McallTaskStatus {
    let mut s = previous.clone();
    s.retry_count = Some(i64::from(attempt));
    s.last_retry_time = Some(Time(at));
    s.message = Some(truncate(&format!("retry {attempt}: {reason}"), 1024));
    s
}

/// Bytes of `result.errorMessage` and of `message` at most (the Ready condition cuts its own at 1 KiB).
const ERROR_MESSAGE_MAX: usize = 4096;

/// The status after an execution finished (or was cancelled by a shutdown).
pub fn finished(
    previous: Option<&McallTaskStatus>,
    generation: i64,
    outcome: &TaskOutcome,
    now: Timestamp,
) -> McallTaskStatus {
    let (phase, reason) = match outcome.verdict {
        Verdict::Succeeded => (Phase::Succeeded, Reason::Succeeded),
        Verdict::Cancelled => (Phase::Failed, Reason::Cancelled),
        Verdict::Failed | Verdict::Skipped => (Phase::Failed, Reason::Failed),
    };
    let message = match (&outcome.verdict, &outcome.error_message) {
        (Verdict::Succeeded, _) => "succeeded".to_owned(),
        (_, Some(m)) => truncate(m, ERROR_MESSAGE_MAX),
        (_, None) => reason.as_str().to_lowercase(),
    };
    let mut s = base(previous, generation, phase, &message);
    s.completion_time = Some(Time(now));
    s.execution_time_ms = Some(i64::try_from(outcome.duration.as_millis()).unwrap_or(i64::MAX));
    s.http_status_code = outcome.http_status.map(i64::from);
    s.response_time_ms = outcome.response_time.map(millis);
    s.retry_count = Some(i64::from(outcome.retries));
    s.last_retry_time = outcome
        .last_retry_at
        .and_then(|t| Timestamp::try_from(t).ok())
        .map(Time);
    // A success has no error, but the Code column still tells the exit code or HTTP status.
    let code = outcome.error_code.clone().or_else(|| {
        (outcome.verdict == Verdict::Succeeded).then(|| {
            outcome
                .http_status
                .map_or_else(|| "0".to_owned(), |s| s.to_string())
        })
    });
    s.result = Some(TaskResult {
        output: Some(outcome.output.clone()),
        error_code: code,
        // A failed run of 256 inputs names each failure: bounded, like the output.
        error_message: outcome
            .error_message
            .as_deref()
            .map(|m| truncate(m, ERROR_MESSAGE_MAX)),
    });
    s.input_results = (!outcome.inputs.is_empty()).then(|| {
        outcome
            .inputs
            .iter()
            .map(|i| InputResult {
                name: i.name.clone(),
                phase: match i.verdict {
                    Verdict::Succeeded => Phase::Succeeded,
                    Verdict::Skipped => Phase::Skipped,
                    Verdict::Failed | Verdict::Cancelled => Phase::Failed,
                },
                error_code: i.error_code.clone(),
                duration_ms: Some(millis(i.duration)),
                response_time_ms: i.response_time.map(millis),
                output: Some(i.output.clone()),
            })
            .collect()
    });
    let ready = if phase == Phase::Succeeded {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    set_condition(
        &mut s.conditions,
        READY,
        ready,
        reason,
        &message,
        generation,
        now,
    );
    s
}

fn push_history(status: &mut McallTaskStatus, record: RunRecord, limits: HistoryLimits) {
    let mut history = status.history.take().unwrap_or_default();
    history.push(record);
    crate::schedule::trim_history(&mut history, limits.successful, limits.failed);
    status.history = (!history.is_empty()).then_some(history);
}

/// A scheduled run starts: its tick (and the run-now value it answers) is recorded with it, in
/// the same write, so the tick never runs twice.
pub fn scheduled_running(
    previous: Option<&McallTaskStatus>,
    generation: i64,
    now: Timestamp,
    run: &ScheduledRun,
) -> McallTaskStatus {
    let mut s = running(previous, generation, now);
    if let Some(tick) = run.tick {
        s.last_schedule_time = Some(MicroTime(tick));
    }
    if let Some(value) = &run.run_now {
        s.run_now_handled = Some(value.clone());
    }
    s.current_run = Some(MicroTime(run.scheduled));
    s.claimed_tick = None;
    s.next_schedule_time = run.next.map(MicroTime);
    s.message = Some(format!("running the run scheduled for {}", run.scheduled));
    s
}

/// A due tick that does not run: `Skipped` (Forbid while a run is active, or a dependency not
/// Succeeded) or `Missed` (later than startingDeadlineSeconds). Recorded in the history.
#[allow(
    clippy::too_many_arguments,
    reason = "each is a distinct part of the record"
)]
pub fn tick_not_run(
    previous: Option<&McallTaskStatus>,
    generation: i64,
    tick: Timestamp,
    code: Reason,
    message: &str,
    next: Option<Timestamp>,
    limits: HistoryLimits,
) -> McallTaskStatus {
    let mut s = previous.cloned().unwrap_or_default();
    s.observed_generation = Some(generation);
    // Never backwards: a run-now request's time can be earlier than a tick already claimed.
    let last = s.last_schedule_time.as_ref().map(|t| t.0);
    s.last_schedule_time = Some(MicroTime(last.map_or(tick, |last| last.max(tick))));
    s.claimed_tick = None;
    s.next_schedule_time = next.map(MicroTime);
    if s.phase.is_none() {
        s.phase = Some(Phase::Pending);
    }
    s.message = Some(truncate(&format!("tick {tick} not run: {message}"), 1024));
    let record = RunRecord {
        run_id: None,
        scheduled_time: MicroTime(tick),
        start_time: None,
        completion_time: None,
        phase: Phase::Skipped,
        error_code: Some(code.to_string()),
        output: Some(truncate(message, 1024)),
    };
    push_history(&mut s, record, limits);
    s
}

/// The record of a finished scheduled run.
pub fn run_record(
    scheduled: Timestamp,
    outcome: &TaskOutcome,
    code: Option<String>,
    now: Timestamp,
) -> RunRecord {
    RunRecord {
        run_id: None,
        scheduled_time: MicroTime(scheduled),
        start_time: Timestamp::try_from(outcome.started_at).ok().map(Time),
        completion_time: Some(Time(now)),
        phase: match outcome.verdict {
            Verdict::Succeeded => Phase::Succeeded,
            _ => Phase::Failed,
        },
        error_code: code,
        output: Some(truncate(&outcome.output, 1024)),
    }
}

/// A scheduled run finished: the status of `finished`, the run in the history, and, on success,
/// `lastSuccessfulTime`. `phase` reflects the last run; the task keeps running on schedule.
pub fn scheduled_finished(
    previous: Option<&McallTaskStatus>,
    generation: i64,
    outcome: &TaskOutcome,
    now: Timestamp,
    scheduled: Timestamp,
    limits: HistoryLimits,
) -> McallTaskStatus {
    let mut s = finished(previous, generation, outcome, now);
    if outcome.verdict == Verdict::Succeeded {
        s.last_successful_time = Some(Time(now));
    }
    s.current_run = None;
    s.claimed_tick = None;
    let code = s.result.as_ref().and_then(|r| r.error_code.clone());
    push_history(&mut s, run_record(scheduled, outcome, code, now), limits);
    s
}

/// A run of `Allow` that was overtaken by a newer one: only its history record is added.
pub fn overtaken_run_finished(
    previous: &McallTaskStatus,
    outcome: &TaskOutcome,
    now: Timestamp,
    scheduled: Timestamp,
    limits: HistoryLimits,
) -> McallTaskStatus {
    let mut s = previous.clone();
    push_history(
        &mut s,
        run_record(scheduled, outcome, outcome.error_code.clone(), now),
        limits,
    );
    s
}

/// A scheduled run was interrupted by an operator restart: recorded as failed; the schedule goes on.
pub fn scheduled_interrupted(
    previous: &McallTaskStatus,
    generation: i64,
    message: &str,
    now: Timestamp,
    limits: HistoryLimits,
) -> McallTaskStatus {
    let mut s = failed(
        Some(previous),
        generation,
        Reason::Interrupted,
        message,
        now,
    );
    // The run in progress, or else a tick claimed ahead that may have started.
    let interrupted = match (&previous.current_run, &previous.claimed_tick) {
        (Some(run), _) => Some((run.clone(), previous.start_time.clone())),
        (None, Some(tick)) => {
            s.last_schedule_time = Some(tick.clone());
            Some((tick.clone(), None))
        }
        (None, None) => None,
    };
    if let Some((scheduled, start_time)) = interrupted {
        let record = RunRecord {
            run_id: None,
            scheduled_time: scheduled,
            start_time,
            completion_time: Some(Time(now)),
            phase: Phase::Failed,
            error_code: Some(Reason::Interrupted.to_string()),
            output: None,
        };
        push_history(&mut s, record, limits);
    }
    s.current_run = None;
    s.claimed_tick = None;
    s
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_new_generation_restarts_the_dependency_wait() {
        let old = waiting(None, 1, "waiting", at(0), at(0));
        let again = waiting(Some(&old), 1, "waiting", at(50), at(50));
        let since = |s: &McallTaskStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.r#type == DEPENDENCIES_READY.as_str())
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(
            since(&again),
            Time(at(0)),
            "the same generation keeps waiting since the start"
        );
        let next_generation = waiting(Some(&again), 2, "waiting", at(100), at(100));
        assert_eq!(since(&next_generation), Time(at(100)));
    }

    #[test]
    fn failed_records_the_reason_as_error_code() {
        let s = failed(None, 3, Reason::InvalidSpec, "spec.expect: bad", at(5));
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.result.unwrap().error_code.as_deref(), Some("InvalidSpec"));
        assert_eq!(s.conditions.unwrap()[0].reason, "InvalidSpec");
    }

    #[test]
    fn truncation_is_bounded_and_marked() {
        let long = "é".repeat(5000);
        let t = truncate(&long, 1024);
        assert!(t.len() <= 1024 + "…[truncated]".len());
        assert!(t.ends_with("…[truncated]"));
        assert_eq!(truncate("short", 1024), "short");
    }
}
