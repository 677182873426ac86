//! One execution, from waiting for its slot to its reported outcome.
//!
//! A one-shot run writes nothing before it starts. A run that ends within [`CLAIM_AFTER`] makes a
//! single status write, its result; a longer one is recorded as `Running` when it gets there (with
//! a `Started` Event), so a restart finds it and fails it as `Interrupted` instead of running it
//! again. A scheduled run's tick was claimed before it started (see `start`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use mcall_engine::{Backoff, EngineEvent, TaskOutcome, TaskPlan, Verdict};
use mcall_generated::{McallTask, Phase};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::context::Context;
use super::executions::{Execution, TaskKey};
use super::outcome::{
    announcement, cancelled_before_start, outcome_status, refused_outcome, reports_as_current,
};
use super::report::publish;
use super::report::writes::{Tracked, refused_as_invalid};
use super::runs::{Claim, RunKind, ScheduledRun};
use crate::Result;

mod progress;

use progress::{announce_retry, status_writes};

/// Tries to write a result: 400 ms after the first failure, doubling, at most 20 s apart (10 s
/// with up to as much again of jitter), until it lands.
const REPORT_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(400),
    max: Duration::from_secs(10),
};
/// During a shutdown the tries come quickly: the drain waits 5 s for them.
const REPORT_RETRY_STOPPING: Duration = Duration::from_millis(250);

/// How long a one-shot run goes before it is recorded as `Running`.
pub const CLAIM_AFTER: Duration = Duration::from_secs(1);

/// What one execution reports with.
pub struct Run {
    pub ctx: Arc<Context>,
    pub task: Arc<McallTask>,
    pub key: TaskKey,
    pub generation: i64,
    pub plan: TaskPlan,
    pub execution: Execution,
    pub kind: RunKind,
}

/// Runs `run` in `slot` (taken here when `None`) and writes its result before freeing the slot;
/// `tracked` is where its status writes go and knows the version it started from.
pub async fn execute(
    run: Run,
    mut tracked: Tracked<McallTask>,
    slot: Option<OwnedSemaphorePermit>,
) {
    if !may_start(&run).await {
        run.ctx
            .executions
            .forget_unstarted(&run.key, &run.execution);
        return;
    }
    let permit = match slot {
        Some(slot) => Some(slot),
        // A cancelled run does not start, even if a slot is free at the same moment.
        None => tokio::select! {
            biased;
            () = run.execution.token.cancelled() => None,
            permit = run.ctx.slots.clone().acquire_owned() => permit.ok(),
        },
    };
    // Leadership may have ended while the run waited for its slot.
    if permit.is_some() && !run.ctx.leading.now() {
        run.ctx
            .executions
            .forget_unstarted(&run.key, &run.execution);
        return;
    }
    // A one-shot run, or a scheduled one claimed by an earlier result, records `Running` only
    // once it lasts; other scheduled runs wrote their claim as `Running`.
    let claimed = Arc::new(AtomicBool::new(!run.kind.writes_running_late()));
    if permit.is_none() && !claimed.load(Ordering::Relaxed) {
        // Cancelled before it started and nothing was written: a replaced or deleted task has
        // nothing to report, and after a shutdown the task simply runs on the next start.
        run.ctx.executions.finish(&run.key, &run.execution);
        return;
    }
    let commands = commands(&run, &claimed);
    // Boxed, like the report below: a spawned future is allocated at its largest, and a thousand
    // runs waiting for a slot should each hold a few hundred bytes, not the engine's state.
    let (mut outcome, handed_over) = match permit {
        Some(_) => {
            let outcome = Box::pin(run_engine(&run, &commands, &mut tracked, &claimed)).await;
            // Asked once: a run handed over is counted, and reported, by its successor alone.
            let handed_over = commands.handed_over();
            if !handed_over {
                record_execution(&run, &outcome);
            }
            (outcome, handed_over)
        }
        None => (cancelled_before_start(), false),
    };
    if handed_over {
        // Its pods run on; the next leader adopts them and records the result.
        run.ctx.executions.finish(&run.key, &run.execution);
        return;
    }
    if outcome.verdict == Verdict::Cancelled && run.ctx.shutdown.is_cancelled() {
        outcome.error_message =
            Some("cancelled: the operator shut down before the execution finished".into());
    }
    let reported = Box::pin(report(&run, &mut tracked, &outcome)).await;
    finish(&run, &commands, reported).await;
    drop(permit);
}

/// After the report: the run's pods cleaned up, and the run forgotten here (a one-shot run whose
/// result was written, or that ran and could not report, is not started again by this process).
async fn finish(run: &Run, commands: &crate::executor::Commands, reported: Result<bool>) {
    let (ctx, key, execution) = (&run.ctx, &run.key, &run.execution);
    match reported {
        Ok(true) => {
            commands.clean_up().await;
            ctx.executions.finish_reported(key, execution);
        }
        Ok(false) => {
            commands.clean_up().await;
            ctx.executions.finish(key, execution);
        }
        Err(e) => {
            tracing::warn!(namespace = key.namespace, name = key.name, error = %e, "reporting the outcome failed");
            // The run happened: this process does not start it again (a restart would).
            if matches!(run.kind, RunKind::OneShot) {
                ctx.executions.finish_reported(key, execution);
            } else {
                ctx.executions.finish(key, execution);
            }
        }
    }
}

/// Waits for a scheduled run's tick (and, for a tick claimed by an earlier result, for the
/// Lease to vouch for it: a successor then knows which claims this process may have started).
/// False when the run must not start: cancelled while it waited, not vouched for, or this process
/// no longer leads (after a pause past its lease, say).
async fn may_start(run: &Run) -> bool {
    if let RunKind::Scheduled(scheduled_run) = &run.kind
        && matches!(
            scheduled_run.claim,
            Claim::Ahead | Claim::Chained | Claim::Adopted
        )
    {
        let (scheduled, claim) = (&scheduled_run.scheduled, scheduled_run.claim);
        let wait =
            Duration::try_from(scheduled.duration_since(Timestamp::now())).unwrap_or_default();
        // A tick claimed by an earlier result, still waiting when this process stops, is left
        // to the next leader: the Lease's release gives the time this process stopped starting
        // them, so the next leader knows the tick never started. (A tick claimed ahead is
        // recorded Running already: it runs, within the drain.)
        let stopping = async {
            if claim == Claim::Chained {
                run.ctx.shutdown.cancelled().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = run.execution.token.cancelled() => {}
            () = stopping => return false,
        }
        if claim == Claim::Chained {
            let vouched = tokio::select! {
                biased;
                () = run.execution.token.cancelled() => false,
                vouched = run.ctx.liveness.vouch_for(*scheduled) => vouched,
            };
            // Not once this process stops: its release tells the next leader the tick never
            // started.
            if !vouched || run.ctx.shutdown.is_cancelled() {
                return false;
            }
        }
    }
    if !run.ctx.leading.now() {
        tracing::warn!(
            namespace = run.key.namespace,
            name = run.key.name,
            "not leading: the run does not start"
        );
        return false;
    }
    true
}

/// Counts the execution, its duration and, for a tick, how late after it the run started.
fn record_execution(run: &Run, outcome: &TaskOutcome) {
    let metrics = &run.ctx.metrics.executions;
    let task_type = run.task.spec.r#type.as_str();
    metrics.record(task_type, outcome.verdict.as_str(), outcome.duration);
    // An adopted run started in the process before: its lateness is that process's.
    if let RunKind::Scheduled(ScheduledRun {
        tick: Some(tick),
        claim: Claim::Now | Claim::Ahead | Claim::Chained,
        ..
    }) = &run.kind
    {
        let started = Timestamp::try_from(outcome.started_at).unwrap_or_else(|_| Timestamp::now());
        metrics.observe_schedule_lag(
            Duration::try_from(started.duration_since(*tick)).unwrap_or_default(),
        );
    }
}

/// Sets the task's gauges from the result just written as its current one, unless the task was
/// deleted meanwhile (its series are gone with it).
fn record_result(run: &Run, outcome: &TaskOutcome) {
    let (key, uid) = (&run.key, run.task.uid());
    let exists = || {
        let cached = run
            .ctx
            .store
            .get(&ObjectRef::new(&key.name).within(&key.namespace));
        cached.is_some_and(|task| task.uid() == uid)
    };
    let finished = outcome.started_at + outcome.duration;
    let succeeded = outcome.verdict == Verdict::Succeeded;
    let task = (key.namespace.as_str(), key.name.as_str());
    run.ctx
        .metrics
        .tasks
        .record(task, succeeded, finished, exists);
}

/// Where the run's commands run; a run's pods are named by its generation and scheduled time,
/// so a successor process finds them. A run in pods is handed to the next leader when this
/// process stops or loses the Lease, and replayed over its pods by that leader: a one-shot run
/// always (a fresh start of its generation finds its pods too), a scheduled run once it is
/// recorded `Running` (`claimed`) and is the task's current run (the successor adopts that
/// one only; others drain and are cancelled as in-process runs are).
fn commands(run: &Run, claimed: &Arc<AtomicBool>) -> crate::executor::Commands {
    let (ctx, claimed) = (run.ctx.clone(), claimed.clone());
    let (key, execution) = (run.key.clone(), run.execution.clone());
    let one_shot = matches!(run.kind, RunKind::OneShot);
    let hand_over = crate::executor::HandOver {
        stopping: run.ctx.shutdown.clone(),
        now: Arc::new(move || {
            (ctx.shutdown.is_cancelled() || !ctx.leading.now())
                && (one_shot
                    || claimed.load(Ordering::Relaxed)
                        && ctx.executions.is_current(&key, &execution))
        }),
    };
    let recorded_running = || {
        run.task.status.as_ref().is_some_and(|s| {
            s.phase == Some(Phase::Running) && s.observed_generation == Some(run.generation)
        })
    };
    let (scheduled, adopting) = match &run.kind {
        RunKind::Scheduled(scheduled) => {
            (Some(scheduled.scheduled), scheduled.claim == Claim::Adopted)
        }
        RunKind::OneShot => (None, recorded_running()),
    };
    let of = crate::executor::pod::RunOf {
        task: run.task.clone(),
        key: crate::executor::run_key(
            &run.task.uid().unwrap_or_default(),
            run.generation,
            scheduled,
        ),
        generation: run.generation,
        cancelled: run.execution.token.clone(),
        adopting,
    };
    crate::executor::commands_for(&run.ctx.client, &run.ctx.config.executor, of, hand_over)
}

/// Runs the plan, recording retries as they happen and `Running` once it has gone on for
/// [`CLAIM_AFTER`] (see [`status_writes`]).
async fn run_engine(
    run: &Run,
    commands: &crate::executor::Commands,
    tracked: &mut Tracked<McallTask>,
    claimed: &AtomicBool,
) -> TaskOutcome {
    let started_at = Timestamp::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<EngineEvent>();
    let observer = move |event: EngineEvent| {
        let _ = tx.send(event);
    };
    // A child: a run handed over at shutdown stops its engine without cancelling the run.
    let (plan, token) = (&run.plan, run.execution.token.child_token());
    // The engine's own log lines name the task through this span; in the traces it is the
    // execution's span, with its verdict.
    let span = tracing::info_span!("execution", namespace = %run.key.namespace, task = %run.key.name,
        verdict = tracing::field::Empty, otel.status_code = tracing::field::Empty);
    let engine = mcall_engine::execute_with(
        plan,
        &run.ctx.limits,
        commands.runner(),
        token.clone(),
        &observer,
    )
    .instrument(span.clone());
    let mut engine = std::pin::pin!(engine);
    // The engine is polled while its status is written: in the Pod executor it waits on API
    // requests of its own, which must not wait behind these writes for the client's slots.
    let outcome = {
        let writes = status_writes(run, tracked, claimed, &mut rx, started_at);
        let mut writes = std::pin::pin!(writes);
        let hand_over = async {
            commands.handing_over().await;
            token.cancel();
            std::future::pending::<std::convert::Infallible>().await
        };
        tokio::select! {
            outcome = &mut engine => outcome,
            never = &mut writes => match never {},
            never = hand_over => match never {},
        }
    };
    span.record("verdict", outcome.verdict.as_str());
    if outcome.verdict == Verdict::Failed {
        span.record("otel.status_code", "error");
    }
    // Retries announced at the very end: their count is in the result.
    while let Ok(EngineEvent::Retrying {
        attempt, reason, ..
    }) = rx.try_recv()
    {
        announce_retry(run, attempt, &reason);
    }
    outcome
}

/// Writes the outcome onto the latest version of the task (reading it again only after a
/// conflict); other failures are retried with a backoff (at most 20 s apart) until the write
/// lands, or a few times during a shutdown. A run that is no longer current (spec changed, Replace, Allow) leaves only its
/// history record of a scheduled run; a deleted task gets nothing. Returns whether the result of a
/// current one-shot run was written.
async fn report(
    run: &Run,
    tracked: &mut Tracked<McallTask>,
    outcome: &TaskOutcome,
) -> Result<bool> {
    let mut failures = 0u32;
    // Set when the API server refused `outcome` as invalid: what is reported instead.
    let mut refused: Option<TaskOutcome> = None;
    loop {
        let (ctx, key, execution, kind) = (&run.ctx, &run.key, &run.execution, &run.kind);
        let generation = run.generation;
        let outcome = refused.as_ref().unwrap_or(outcome);
        let mut current = false;
        let written = tracked
            .write(|latest| {
                current =
                    reports_as_current(latest, kind, ctx.executions.is_current(key, execution));
                outcome_status(latest, generation, kind, current, outcome, Timestamp::now())
            })
            .await;
        match written {
            Ok(None) => return Ok(false),
            Ok(Some((before, next))) => {
                if current {
                    if let Some(note) = announcement(&before, kind, outcome, &next) {
                        publish(&ctx.events, before.as_ref(), &note);
                    }
                    tracing::info!(namespace = key.namespace, name = key.name, generation, verdict = ?outcome.verdict, "execution finished");
                    record_result(run, outcome);
                }
                return Ok(current && matches!(kind, RunKind::OneShot));
            }
            // A result the API server refuses as invalid is not tried again as it is: the run
            // is reported failed with the server's reason instead, without output or inputs,
            // through the same path (a scheduled run keeps its history and claims).
            Err(e) if refused.is_none() && refused_as_invalid(&e).is_some() => {
                let reason = refused_as_invalid(&e).unwrap_or_default();
                tracing::warn!(namespace = key.namespace, name = key.name, error = %e, "the API server refused the result");
                refused = Some(refused_outcome(outcome, reason));
            }
            // A process that no longer leads writes nothing more.
            Err(e) if !ctx.leading.now() => return Err(e),
            // Until it lands, however long the API server is away; during a shutdown a few
            // more tries at most.
            Err(e) if failures < 5 || !ctx.shutdown.is_cancelled() => {
                failures += 1;
                let delay = if ctx.shutdown.is_cancelled() {
                    REPORT_RETRY_STOPPING
                } else {
                    REPORT_BACKOFF.delay(failures)
                };
                if failures >= 3 {
                    tracing::warn!(namespace = key.namespace, name = key.name, error = %e, retry_in_ms = delay.as_millis(), "writing the result failed; retrying");
                } else {
                    tracing::debug!(namespace = key.namespace, name = key.name, error = %e, retry_in_ms = delay.as_millis(), "retrying the report");
                }
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}
