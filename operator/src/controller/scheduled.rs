//! Scheduled tasks: a tick (or a run-now request) at a time, exactly once. The decision is the
//! pure `crate::schedule::decide`; this module acts on it and sleeps until the next tick.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use mcall_generated::{McallTask, Phase};

use super::reconcile::reject;
use super::run::{Claim, RunKind, publish, start};
use super::status::{self, HistoryLimits, READY};
use super::writes::write_onto_read;
use super::{Context, TaskKey};
use crate::Result;
use crate::schedule::{
    self, ActiveRunAction, ClaimedTick, ClaimedVerdict, RunNowRequest, Schedule, ScheduleInput,
    TickVerdict,
};

/// How long before a tick its claim is written: the run then starts at the tick itself instead of
/// one API round trip after it. A restart inside this window leaves the claimed tick recorded
/// as interrupted, like a restart during a run.
const CLAIM_LEAD: Duration = Duration::from_secs(1);

/// The shortest wait before a scheduled task is looked at again.
const MIN_REQUEUE: Duration = Duration::from_millis(100);

/// A new task whose first tick is at most this far away writes no status until that run.
const FIRST_RUN_SOON: Duration = Duration::from_secs(30);

const INTERRUPTED: &str = "the operator stopped while this run was in progress; it is recorded as failed and not re-run, so a command never runs twice";

#[allow(
    clippy::too_many_arguments,
    reason = "the reconcile's facts, passed through"
)]
pub(super) async fn apply(
    ctx: &Arc<Context>,
    api: &Api<McallTask>,
    task: Arc<McallTask>,
    key: TaskKey,
    uid: String,
    generation: i64,
    now: Timestamp,
    rejection: Option<(&'static str, String)>,
) -> Result<Action> {
    let spec = &task.spec;
    let expression = spec.schedule.as_deref().unwrap_or_default();
    let parsed = Schedule::parse(expression, spec.time_zone.as_deref());
    let rejection = match &parsed {
        Err(e) => Some(("InvalidSchedule", e.to_string())),
        Ok(_) => rejection,
    };
    if let Some((reason, message)) = rejection {
        if !already_rejected(&task, generation, reason) {
            reject(ctx, api, &task, reason, &message).await?;
        }
        return Ok(Action::await_change());
    }
    let schedule = parsed.expect("checked above").spread_by(&uid);
    let limits = HistoryLimits {
        successful: spec.successful_runs_history_limit,
        failed: spec.failed_runs_history_limit,
    };
    let status = task.status.as_ref();
    let active = ctx.executions.scheduled_run_of(&key, &uid);

    if let Some(s) = status
        && s.phase == Some(Phase::Running)
        && active.is_none()
        && s.current_run.is_some()
    {
        // Conditional on the version read, so a stale cached copy never overwrites a result.
        let interrupted = status::scheduled_interrupted(s, generation, INTERRUPTED, now, limits);
        if write_onto_read(api, &task, &interrupted).await? {
            publish(ctx, &task, EventType::Warning, "Interrupted", INTERRUPTED);
        }
        return Ok(Action::await_change());
    }

    let annotation = task
        .annotations()
        .get(schedule::RUN_NOW_ANNOTATION)
        .map(String::as_str);
    let run_now_pending = RunNowRequest {
        requested: annotation,
        handled: status.and_then(|s| s.run_now_handled.as_deref()),
    }
    .pending()
    .is_some();
    let claimed_tick = status.and_then(|s| s.claimed_tick.as_ref()).map(|t| t.0);
    if let (Some(s), Some(tick)) = (status, claimed_tick)
        && active != Some(tick)
    {
        let claimed = ClaimedTick {
            tick,
            now,
            previous_process_until: ctx.liveness.previous_until,
            ran_here: ctx
                .executions
                .last_ran(&key, &uid)
                .is_some_and(|ran| ran >= tick),
            // A run of an earlier tick still registered here is the one whose result made
            // this claim, finishing.
            still_valid: s.observed_generation == Some(generation)
                && !spec.suspend
                && active.is_none_or(|run| run < tick),
            starting_deadline_seconds: spec.starting_deadline_seconds,
            lead: CLAIM_LEAD,
        };
        let facts = ClaimFacts {
            ctx,
            api,
            task: &task,
            generation,
            limits,
            schedule: &schedule,
        };
        let verdict = schedule::judge_claimed(&claimed);
        tracing::debug!(
            namespace = key.namespace,
            name = key.name,
            ?claimed,
            ?verdict,
            "claimed tick judged"
        );
        match verdict {
            // A run-now request does not wait for the claimed tick.
            ClaimedVerdict::WaitUntil(_) if run_now_pending => {}
            verdict => return act_on_claim(facts, key, uid, tick, verdict, now).await,
        }
    }
    // A claimed tick whose run is in progress here is decided: every status written from here on
    // records it as the last scheduled tick (a run-now's claim would otherwise leave it due).
    let decided = claimed_tick.filter(|tick| {
        active == Some(*tick)
            && status
                .and_then(|s| s.last_schedule_time.as_ref())
                .is_none_or(|last| last.0 < *tick)
    });
    let task = match decided {
        Some(tick) => {
            let mut decided = (*task).clone();
            if let Some(s) = decided.status.as_mut() {
                s.last_schedule_time = Some(MicroTime(tick));
            }
            Arc::new(decided)
        }
        None => task.clone(),
    };
    let status = task.status.as_ref();
    let input = ScheduleInput {
        schedule: &schedule,
        now,
        created: task
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0),
        suspend: spec.suspend,
        concurrency_policy: spec.concurrency_policy,
        starting_deadline_seconds: spec.starting_deadline_seconds,
        last_schedule_time: status
            .and_then(|s| s.last_schedule_time.as_ref())
            .map(|t| t.0),
        active_run: active,
        run_now: RunNowRequest {
            requested: annotation,
            handled: status.and_then(|s| s.run_now_handled.as_deref()),
        },
    };
    let mut decision = schedule::decide(&input);
    let mut claim_kind = Claim::Now;
    // A tick due within CLAIM_LEAD, with nothing running: decide as of the tick, claim it now,
    // and let the run wait for it.
    if decision.run.is_none()
        && decision.tick.is_none()
        && active.is_none()
        && let Some(at) = decision.requeue_at
        && at > now
        && Duration::try_from(at.duration_since(now)).is_ok_and(|d| d <= CLAIM_LEAD)
    {
        let ahead = schedule::decide(&ScheduleInput {
            now: at,
            ..input.clone()
        });
        if ahead.run.as_ref().is_some_and(|run| run.tick == Some(at)) {
            decision = ahead;
            claim_kind = Claim::Ahead;
        }
    }
    tracing::debug!(
        namespace = key.namespace,
        name = key.name,
        ?decision,
        "schedule decided"
    );
    // Sleep until just before the next tick (its claim is written CLAIM_LEAD early): no polling.
    let until_next_tick = decision.requeue_at.map(|at| {
        // Never sooner than MIN_REQUEUE: with a run in progress (or a cache that has not caught
        // up with our own write) the same decision would come back at once, again and again.
        Duration::try_from(at.duration_since(now))
            .unwrap_or_default()
            .saturating_sub(CLAIM_LEAD)
            .max(MIN_REQUEUE)
    });
    // A run-now request deferred by Forbid is looked at again shortly: the end of the active run
    // is reported before this process forgets the run, so that report's own reconcile still
    // sees it active.
    let wake = match (until_next_tick, decision.run_now_deferred) {
        (Some(d), true) => Some(d.min(Duration::from_secs(1))),
        (None, true) => Some(Duration::from_secs(1)),
        (d, false) => d,
    };
    let action = wake.map_or_else(Action::await_change, Action::requeue);

    if let Some(run) = decision.run {
        if let Some(unmet) = unmet_dependency(ctx, &task) {
            let next = status::tick_not_run(
                status,
                generation,
                run.scheduled_time,
                "Skipped",
                &unmet,
                decision.next_schedule_time,
                limits,
            );
            let mut next = next;
            if let Some(value) = &run.run_now {
                next.run_now_handled = Some(value.clone());
            }
            if write_onto_read(api, &task, &next).await? {
                publish(ctx, &task, EventType::Warning, "Skipped", &unmet);
            }
            return Ok(action);
        }
        if run.active == ActiveRunAction::Cancel {
            tracing::info!(
                namespace = key.namespace,
                name = key.name,
                "replacing the run in progress"
            );
        }
        let kind = RunKind::Scheduled {
            scheduled: run.scheduled_time,
            tick: run.tick,
            run_now: run.run_now,
            next: decision.next_schedule_time,
            cancel_previous: run.active != ActiveRunAction::LeaveRunning,
            limits,
            claim: claim_kind,
        };
        let started = start(ctx, api, task, key, uid, generation, kind).await?;
        // A lost claim (409) asks to decide again soon; otherwise wake at the next tick.
        return Ok(if started == Action::await_change() {
            action
        } else {
            started
        });
    }

    if let Some(tick) = decision.tick {
        let (code, message) = match tick.verdict {
            TickVerdict::Skipped => (
                "Skipped",
                "the previous run is still in progress (concurrencyPolicy Forbid)".to_owned(),
            ),
            TickVerdict::Missed { late } => (
                "Missed",
                format!(
                    "started {}s late, past startingDeadlineSeconds",
                    late.as_secs()
                ),
            ),
            TickVerdict::Run => unreachable!("a tick to run comes with a run"),
        };
        let next = status::tick_not_run(
            status,
            generation,
            tick.time,
            code,
            &message,
            decision.next_schedule_time,
            limits,
        );
        if write_onto_read(api, &task, &next).await? {
            publish(
                ctx,
                &task,
                EventType::Warning,
                code,
                &format!("tick {}: {message}", tick.time),
            );
        }
        return Ok(action);
    }

    // Nothing due: keep nextScheduleTime current, and say when the first run comes; a new task
    // whose first run is at most FIRST_RUN_SOON away gets its first status with that run (when
    // a thousand checks are created at once, that is a thousand writes fewer).
    // (The API server shows a new task as `phase: Pending` before anything is written.)
    if status.is_none_or(|s| s.observed_generation.is_none())
        && decision.next_schedule_time.is_some_and(|at| {
            Duration::try_from(at.duration_since(now)).is_ok_and(|d| d <= FIRST_RUN_SOON)
        })
    {
        return Ok(action);
    }
    // A run in progress here (or waiting for its claimed tick) writes the schedule with its
    // result.
    if active.is_some() {
        return Ok(action);
    }
    let mut next = status.cloned().unwrap_or_default();
    next.next_schedule_time = decision.next_schedule_time.map(MicroTime);
    // A rejection of an earlier generation (e.g. InvalidSchedule, since fixed) no longer holds.
    let rejected_before = next.observed_generation != Some(generation)
        && next.phase == Some(Phase::Failed)
        && next.conditions.iter().flatten().any(|c| {
            c.r#type == READY
                && [
                    "InvalidSchedule",
                    "InvalidSpec",
                    "CommandsNotAllowed",
                    "InputUnavailable",
                ]
                .contains(&c.reason.as_str())
        });
    next.observed_generation = Some(generation);
    if next.phase.is_none() || next.phase == Some(Phase::Pending) || rejected_before {
        next.phase = Some(Phase::Pending);
        next.message = Some(match (spec.suspend, decision.next_schedule_time) {
            (true, _) => "suspended".to_owned(),
            (false, Some(at)) => format!("scheduled; next run at {at}"),
            (false, None) => "the schedule has no further ticks".to_owned(),
        });
    }
    if status != Some(&next) {
        // Onto the version read: a result written meanwhile must not be overwritten.
        write_onto_read(api, &task, &next).await?;
    }
    Ok(action)
}

/// What acting on a claimed tick needs.
struct ClaimFacts<'a> {
    ctx: &'a Arc<Context>,
    api: &'a Api<McallTask>,
    task: &'a Arc<McallTask>,
    generation: i64,
    limits: HistoryLimits,
    schedule: &'a Schedule,
}

/// Acts on the verdict about a tick claimed by an earlier result (`status.claimedTick`).
async fn act_on_claim(
    facts: ClaimFacts<'_>,
    key: TaskKey,
    uid: String,
    tick: Timestamp,
    verdict: ClaimedVerdict,
    now: Timestamp,
) -> Result<Action> {
    let ClaimFacts {
        ctx,
        api,
        task,
        generation,
        limits,
        schedule,
    } = facts;
    let status = task.status.clone().unwrap_or_default();
    let next = schedule.next_after(now.max(tick));
    // Look again just before the tick after this one, as for any tick.
    let at_next_tick = next.map_or_else(Action::await_change, |at| {
        let until = Duration::try_from(at.duration_since(now)).unwrap_or_default();
        Action::requeue(until.saturating_sub(CLAIM_LEAD).max(MIN_REQUEUE))
    });
    match verdict {
        ClaimedVerdict::Interrupted => {
            let message = "the operator that claimed this tick stopped around its time, so it may have run; it is recorded as failed and not run again, so a command never runs twice";
            let next = status::scheduled_interrupted(&status, generation, message, now, limits);
            if write_onto_read(api, task, &next).await? {
                publish(ctx, task, EventType::Warning, "Interrupted", message);
            }
            Ok(Action::await_change())
        }
        ClaimedVerdict::Release => {
            let mut next = status;
            next.claimed_tick = None;
            write_onto_read(api, task, &next).await?;
            Ok(Action::await_change())
        }
        ClaimedVerdict::WaitUntil(at) => Ok(Action::requeue(
            Duration::try_from(at.duration_since(now))
                .unwrap_or_default()
                .max(MIN_REQUEUE),
        )),
        ClaimedVerdict::Missed { late } => {
            let message = format!(
                "started {}s late, past startingDeadlineSeconds",
                late.as_secs()
            );
            let next = status::tick_not_run(
                Some(&status),
                generation,
                tick,
                "Missed",
                &message,
                next,
                limits,
            );
            if write_onto_read(api, task, &next).await? {
                let note = format!("tick {tick}: {message}");
                publish(ctx, task, EventType::Warning, "Missed", &note);
            }
            Ok(at_next_tick)
        }
        ClaimedVerdict::Run => {
            if let Some(unmet) = unmet_dependency(ctx, task) {
                let next = status::tick_not_run(
                    Some(&status),
                    generation,
                    tick,
                    "Skipped",
                    &unmet,
                    next,
                    limits,
                );
                if write_onto_read(api, task, &next).await? {
                    publish(ctx, task, EventType::Warning, "Skipped", &unmet);
                }
                return Ok(at_next_tick);
            }
            let kind = RunKind::Scheduled {
                scheduled: tick,
                tick: Some(tick),
                run_now: None,
                next,
                cancel_previous: false,
                limits,
                claim: Claim::Chained,
            };
            start(ctx, api, task.clone(), key, uid, generation, kind).await?;
            Ok(at_next_tick)
        }
    }
}

/// Whether the task was already failed for this generation for `reason` (no repeated writes).
fn already_rejected(task: &McallTask, generation: i64, reason: &str) -> bool {
    task.status.as_ref().is_some_and(|s| {
        s.observed_generation == Some(generation)
            && s.phase == Some(Phase::Failed)
            && s.conditions
                .iter()
                .flatten()
                .any(|c| c.r#type == READY && c.reason == reason)
    })
}

/// The first dependency that has not Succeeded, for a scheduled run (dependencies gate each run).
fn unmet_dependency(ctx: &Context, task: &McallTask) -> Option<String> {
    super::dependencies::phases(&ctx.store, task)
        .into_iter()
        .find_map(|(name, phase)| match phase {
            Some(Phase::Succeeded) => None,
            Some(p) => Some(format!("dependency {name} is {p}")),
            None => Some(format!("dependency {name} does not exist")),
        })
}
