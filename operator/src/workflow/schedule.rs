//! A scheduled workflow's ticks: which one is due, which was missed, and when the next comes.
//! Pure; the tick a run starts for is recorded in the status before any of its children exist.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mcall_generated::{McallWorkflow, McallWorkflowStatus, Phase, RunRecord};

use crate::controller::report::truncate;
use crate::schedule::{Schedule, trim_history};

/// The ticks that matter now.
#[derive(Debug, Default, PartialEq)]
pub struct Ticks {
    /// The latest tick not yet handled, if it may still run.
    pub due: Option<Timestamp>,
    /// The latest tick not yet handled, if it is later than `startingDeadlineSeconds` allows.
    pub missed: Option<Timestamp>,
    /// The next tick after now.
    pub next: Option<Timestamp>,
}

pub fn due(wf: &McallWorkflow, s: &McallWorkflowStatus, now: Timestamp) -> Ticks {
    let Some(expr) = wf.spec.schedule.as_deref().filter(|_| !wf.spec.suspend) else {
        return Ticks::default();
    };
    let Ok(schedule) = Schedule::parse(expr, wf.spec.time_zone.as_deref()) else {
        return Ticks::default();
    };
    let created = wf.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let last = s.last_schedule_time.as_ref().map_or(created, |t| t.0);
    let next = schedule.next_after(now.max(last));
    let Some(latest) = schedule.latest_at_or_before(now).filter(|t| *t > last) else {
        return Ticks {
            next,
            ..Ticks::default()
        };
    };
    let late = now.duration_since(latest);
    let too_late = wf
        .spec
        .starting_deadline_seconds
        .is_some_and(|d| late > SignedDuration::from_secs(d));
    if too_late {
        Ticks {
            due: None,
            missed: Some(latest),
            next,
        }
    } else {
        Ticks {
            due: Some(latest),
            missed: None,
            next,
        }
    }
}

/// Records a tick that does not run, in `history` as Skipped.
pub fn skip_tick(wf: &McallWorkflow, s: &mut McallWorkflowStatus, tick: Timestamp, why: &str) {
    let history = s.history.get_or_insert_with(Vec::new);
    history.push(RunRecord {
        run_id: None,
        scheduled_time: MicroTime(tick),
        start_time: None,
        completion_time: None,
        phase: Phase::Skipped,
        error_code: Some("Skipped".to_owned()),
        output: Some(truncate(&format!("tick {tick} not run: {why}"), 256)),
    });
    trim(wf, history);
}

/// Keeps the newest runs per the history limits, and as many records of ticks not run as failed
/// runs: a skipped tick does not push a failed run's record (and so its child tasks) out.
pub fn trim(wf: &McallWorkflow, history: &mut Vec<RunRecord>) {
    let spec = &wf.spec;
    let (mut runs, mut ticks): (Vec<RunRecord>, Vec<RunRecord>) =
        history.drain(..).partition(|r| r.run_id.is_some());
    trim_history(
        &mut runs,
        spec.successful_runs_history_limit,
        spec.failed_runs_history_limit,
    );
    trim_history(&mut ticks, 0, spec.failed_runs_history_limit);
    runs.extend(ticks);
    // Newest first, as trim_history orders them.
    trim_history(&mut runs, i64::MAX, i64::MAX);
    *history = runs;
}

/// `10s`, `1m30s`: a whole number of seconds, at least one.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    Schedule::parse(&format!("@every {text}"), None)
        .map_err(|e| {
            e.to_string()
                .replace("@every ", "")
                .replace("interval", "delay")
        })?
        .interval()
        .ok_or_else(|| format!("{text:?} is not a duration"))
}
