//! Start an execution and report its outcome: status, history, Events. Shared by one-shot and
//! scheduled tasks.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use mcall_engine::{EngineEvent, TaskPlan, Verdict};
use mcall_generated::{McallTask, McallTaskStatus, Phase};
use serde_json::json;

use super::environment::{self, ResolveError};
use super::executions::Execution;
use super::reconcile::{reject, rendered_spec};
use super::status::HistoryLimits;
use super::{Context, FIELD_MANAGER, TaskKey, status};
use crate::request::task_request;
use crate::{Error, Result};

/// How long a one-shot run goes before it records a `Started` Event.
const STARTED_EVENT_AFTER: Duration = Duration::from_secs(1);

/// What a run is for.
#[derive(Clone, Debug)]
pub(super) enum RunKind {
    /// A one-shot task's run for its current generation.
    OneShot,
    /// A scheduled task's run for a tick or a run-now request.
    Scheduled {
        scheduled: Timestamp,
        tick: Option<Timestamp>,
        run_now: Option<String>,
        next: Option<Timestamp>,
        /// False for `Allow`: the run in progress keeps going.
        cancel_previous: bool,
        limits: HistoryLimits,
        /// The tick was claimed ahead of time: the run waits for `scheduled`.
        claimed_ahead: bool,
    },
}

pub(super) async fn start(
    ctx: &Arc<Context>,
    api: &Api<McallTask>,
    task: Arc<McallTask>,
    key: TaskKey,
    uid: String,
    generation: i64,
    kind: RunKind,
) -> Result<Action> {
    let (spec, input_unavailable) = rendered_spec(ctx, &task);
    if let Some(message) = input_unavailable {
        return cannot_run(
            ctx,
            api,
            &task,
            generation,
            &kind,
            "InputUnavailable",
            &message,
        )
        .await;
    }
    let resolved = match environment::resolve(&ctx.client, &key.namespace, &spec).await {
        Ok(resolved) => resolved,
        Err(ResolveError::Spec(message)) => {
            return cannot_run(ctx, api, &task, generation, &kind, "InvalidSpec", &message).await;
        }
        Err(ResolveError::Api(source)) => {
            return Err(Error::Kube {
                op: "reading environmentFrom",
                source,
            });
        }
    };
    let plan = match TaskPlan::compile(task_request(&spec, resolved)) {
        Ok(plan) => plan,
        Err(e) => {
            return cannot_run(
                ctx,
                api,
                &task,
                generation,
                &kind,
                "InvalidSpec",
                &e.to_string(),
            )
            .await;
        }
    };
    // Registered before the Running status is written, so the reconcile that write triggers
    // sees the execution as ours and leaves it alone.
    let now = Timestamp::now();
    let (execution, running, precondition) = match &kind {
        RunKind::OneShot => {
            let running = status::running(task.status.as_ref(), generation, now);
            (
                ctx.executions.start(key.clone(), &uid, generation),
                running,
                None,
            )
        }
        RunKind::Scheduled {
            scheduled,
            tick,
            run_now,
            next,
            claimed_ahead,
            ..
        } => {
            let running = status::scheduled_running(
                task.status.as_ref(),
                generation,
                if *claimed_ahead { *scheduled } else { now },
                *scheduled,
                *tick,
                run_now.as_deref(),
                *next,
            );
            let execution =
                ctx.executions
                    .start_scheduled(key.clone(), &uid, generation, *scheduled);
            // The tick is claimed with optimistic concurrency: if the object changed since we read
            // it (another replica, or our own earlier write), the claim fails and we decide again.
            (execution, running, task.resource_version())
        }
    };
    let claimed = write_status_if(api, &key.name, &running, precondition.as_deref()).await;
    let cancel_previous = matches!(
        kind,
        RunKind::Scheduled {
            cancel_previous: true,
            ..
        }
    );
    // The task as the claim left it: the outcome is written onto this version without reading
    // the task again, unless something else wrote in between.
    let claimed_task = match claimed {
        Ok(version) => {
            ctx.executions.confirm_scheduled(&key, cancel_previous);
            version.map(|version| {
                let mut claimed_task = (*task).clone();
                claimed_task.metadata.resource_version = Some(version);
                claimed_task.status = Some(running);
                claimed_task
            })
        }
        Err(e) => {
            // Not claimed: the run it would have overtaken stays the current one.
            match &kind {
                RunKind::OneShot => ctx.executions.finish(&key, &execution),
                RunKind::Scheduled { .. } => ctx.executions.abort_scheduled(&key, &execution),
            }
            return match e {
                Error::Kube {
                    source: kube::Error::Api(status),
                    ..
                } if status.code == 409 => {
                    Ok(Action::requeue(std::time::Duration::from_millis(50)))
                }
                e => Err(e),
            };
        }
    };
    tracing::info!(
        namespace = key.namespace,
        name = key.name,
        generation,
        "execution started"
    );
    tokio::spawn(execute(
        ctx.clone(),
        api.clone(),
        task,
        key,
        uid,
        generation,
        plan,
        execution,
        kind,
        claimed_task,
    ));
    Ok(Action::await_change())
}

/// The run cannot start (a Secret or ConfigMap of `environmentFrom` is missing, say). A one-shot
/// task fails; a scheduled run is recorded as failed with its tick claimed, so the next tick
/// tries again instead of this one being retried in a loop.
async fn cannot_run(
    ctx: &Context,
    api: &Api<McallTask>,
    task: &McallTask,
    generation: i64,
    kind: &RunKind,
    reason: &'static str,
    message: &str,
) -> Result<Action> {
    let RunKind::Scheduled {
        scheduled,
        tick,
        run_now,
        next,
        limits,
        ..
    } = kind
    else {
        reject(ctx, api, task, reason, message).await?;
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    let failed = status::failed(task.status.as_ref(), generation, reason, message, now);
    let mut claimed = status::tick_not_run(
        Some(&failed),
        generation,
        *scheduled,
        reason,
        message,
        *next,
        *limits,
    );
    claimed.last_schedule_time = tick.map(MicroTime).or(task
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.clone()));
    if let Some(value) = run_now {
        claimed.run_now_handled = Some(value.clone());
    }
    match write_status_if(
        api,
        &task.name_any(),
        &claimed,
        task.resource_version().as_deref(),
    )
    .await
    .map(drop)
    {
        Err(Error::Kube {
            source: kube::Error::Api(status),
            ..
        }) if status.code == 409 => {}
        other => other?,
    }
    publish(ctx, task, EventType::Warning, reason, message).await;
    Ok(Action::await_change())
}

#[allow(
    clippy::too_many_arguments,
    reason = "the spawned execution owns everything it reports with"
)]
async fn execute(
    ctx: Arc<Context>,
    api: Api<McallTask>,
    task: Arc<McallTask>,
    key: TaskKey,
    uid: String,
    generation: i64,
    plan: TaskPlan,
    execution: Execution,
    kind: RunKind,
    claimed_task: Option<McallTask>,
) {
    if let RunKind::Scheduled {
        scheduled,
        claimed_ahead: true,
        ..
    } = &kind
    {
        let wait =
            Duration::try_from(scheduled.duration_since(Timestamp::now())).unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = execution.token.cancelled() => {}
        }
    }
    let permit = tokio::select! {
        permit = ctx.slots.clone().acquire_owned() => permit.ok(),
        () = execution.token.cancelled() => None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<EngineEvent>();
    let retry_reporter = {
        let (ctx, api, task, key) = (ctx.clone(), api.clone(), task.clone(), key.clone());
        tokio::spawn(async move {
            while let Some(EngineEvent::Retrying {
                attempt,
                at,
                reason,
            }) = rx.recv().await
            {
                let at = Timestamp::try_from(at).unwrap_or_else(|_| Timestamp::now());
                if let Ok(Some(latest)) = api.get_opt(&key.name).await
                    && let Some(current) = latest
                        .status
                        .as_ref()
                        .filter(|s| s.phase == Some(Phase::Running))
                {
                    // Only onto the version read: never over a newer run's status.
                    let version = latest.resource_version();
                    let retrying = status::retrying(current, attempt, at, &reason);
                    let _ = write_status_if(&api, &key.name, &retrying, version.as_deref()).await;
                }
                publish(
                    &ctx,
                    &task,
                    EventType::Warning,
                    "Retrying",
                    &format!("attempt {attempt} after: {reason}"),
                )
                .await;
            }
        })
    };
    let observer = move |event: EngineEvent| {
        let _ = tx.send(event);
    };
    let outcome = if permit.is_some() {
        let run = mcall_engine::execute(&plan, &ctx.limits, execution.token.clone(), &observer);
        if matches!(kind, RunKind::OneShot) {
            // A run that ends within STARTED_EVENT_AFTER is told by its outcome Event alone
            // (which gives its duration); a longer one announces itself when it gets there. A
            // scheduled task's Events say what changed (a failure, a recovery, a retry), not
            // every start, so a busy schedule does not flood the API server.
            let mut run = std::pin::pin!(run);
            tokio::select! {
                outcome = &mut run => outcome,
                () = tokio::time::sleep(STARTED_EVENT_AFTER) => {
                    let note = format!("running {} input(s)", plan.inputs().len());
                    publish(&ctx, &task, EventType::Normal, "Started", &note).await;
                    run.await
                }
            }
        } else {
            run.await
        }
    } else {
        cancelled_before_start()
    };
    drop(observer);
    let _ = retry_reporter.await;
    drop(permit);
    // Retries wrote the status since the claim: read it again rather than lose a conflict.
    let claimed_task = claimed_task.filter(|_| outcome.retries == 0);

    let mut outcome = outcome;
    if outcome.verdict == Verdict::Cancelled && ctx.shutdown.is_cancelled() {
        outcome.error_message =
            Some("cancelled: the operator shut down before the execution finished".into());
    }
    if let Err(e) = report(
        &ctx,
        &api,
        &key,
        &uid,
        generation,
        &kind,
        &execution,
        &outcome,
        claimed_task,
    )
    .await
    {
        tracing::warn!(namespace = key.namespace, name = key.name, error = %e, "reporting the outcome failed");
    }
    ctx.executions.finish(&key, &execution);
}

/// Writes the outcome: read the task, build its status from what was read, write it only if the
/// task is still at that version; on a conflict (another write came first) read again. Other
/// failures are retried with a short backoff, so a result is not lost to one failed request.
/// A run that is no longer current (spec changed, Replace, Allow) leaves only its history record
/// of a scheduled run; a deleted task gets nothing.
#[allow(
    clippy::too_many_arguments,
    reason = "everything the report needs, borrowed"
)]
async fn report(
    ctx: &Context,
    api: &Api<McallTask>,
    key: &TaskKey,
    uid: &str,
    generation: i64,
    kind: &RunKind,
    execution: &Execution,
    outcome: &mcall_engine::TaskOutcome,
    claimed_task: Option<McallTask>,
) -> Result<()> {
    let mut failures = 0u32;
    let mut known = claimed_task;
    loop {
        let known = known.take();
        let attempt = async {
            let latest = match known {
                Some(task) => Some(task),
                None => api.get_opt(&key.name).await.map_err(|source| Error::Kube {
                    op: "reading the task",
                    source,
                })?,
            };
            let Some(latest) = latest.filter(|t| {
                t.uid().as_deref() == Some(uid) && t.metadata.deletion_timestamp.is_none()
            }) else {
                return Ok(None);
            };
            let current = ctx.executions.is_current(key, execution);
            let now = Timestamp::now();
            let next = match (kind, current) {
                (
                    RunKind::Scheduled {
                        scheduled, limits, ..
                    },
                    false,
                ) => {
                    let previous = latest.status.clone().unwrap_or_default();
                    status::overtaken_run_finished(&previous, outcome, now, *scheduled, *limits)
                }
                (RunKind::OneShot, false) => return Ok(None),
                (RunKind::OneShot, true) => {
                    status::finished(latest.status.as_ref(), generation, outcome, now)
                }
                (
                    RunKind::Scheduled {
                        scheduled, limits, ..
                    },
                    true,
                ) => status::scheduled_finished(
                    latest.status.as_ref(),
                    generation,
                    outcome,
                    now,
                    *scheduled,
                    *limits,
                ),
            };
            write_status_if(api, &key.name, &next, latest.resource_version().as_deref()).await?;
            Ok::<_, Error>(Some((latest, next, current)))
        };
        match attempt.await {
            Ok(None) => return Ok(()),
            Ok(Some((latest, next, current))) => {
                if current {
                    announce(ctx, &latest, kind, outcome, &next).await;
                    tracing::info!(namespace = key.namespace, name = key.name, generation, verdict = ?outcome.verdict, "execution finished");
                }
                return Ok(());
            }
            Err(Error::Kube {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 409 => continue,
            Err(e) if failures < 5 => {
                failures += 1;
                tracing::debug!(namespace = key.namespace, name = key.name, error = %e, "retrying the report");
                tokio::time::sleep(std::time::Duration::from_millis(200 << failures)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The outcome's Event: always for a one-shot task; for a scheduled one only when a run fails or
/// the task recovers, so a busy schedule does not flood the API server.
async fn announce(
    ctx: &Context,
    latest: &McallTask,
    kind: &RunKind,
    outcome: &mcall_engine::TaskOutcome,
    next: &McallTaskStatus,
) {
    let (event_type, reason) = match outcome.verdict {
        Verdict::Succeeded => (EventType::Normal, "Succeeded"),
        _ => (EventType::Warning, "Failed"),
    };
    // The newest history record before this run tells what the previous run did.
    let previous_phase = latest
        .status
        .as_ref()
        .and_then(|s| s.history.as_ref())
        .and_then(|h| h.first())
        .map(|r| r.phase);
    let changed = match kind {
        RunKind::OneShot => true,
        RunKind::Scheduled { .. } => {
            outcome.verdict != Verdict::Succeeded || previous_phase != Some(Phase::Succeeded)
        }
    };
    if changed {
        let note = format!(
            "{} (started {}, ran {} ms)",
            next.message.as_deref().unwrap_or_default(),
            Timestamp::try_from(outcome.started_at).unwrap_or_else(|_| Timestamp::now()),
            outcome.duration.as_millis()
        );
        publish(ctx, latest, event_type, reason, &note).await;
    }
}

/// The outcome of an execution cancelled while it waited for a slot.
fn cancelled_before_start() -> mcall_engine::TaskOutcome {
    mcall_engine::TaskOutcome {
        verdict: Verdict::Cancelled,
        output: String::new(),
        error_code: Some("Cancelled".into()),
        error_message: Some("cancelled before it started".into()),
        http_status: None,
        started_at: std::time::SystemTime::now(),
        duration: std::time::Duration::ZERO,
        retries: 0,
        last_retry_at: None,
        inputs: Vec::new(),
    }
}

pub(super) async fn write_status(
    api: &Api<McallTask>,
    name: &str,
    status: &McallTaskStatus,
) -> Result<()> {
    write_status_if(api, name, status, None).await.map(drop)
}

/// Writes the status; with `resource_version`, only if the object is still at that version.
/// Returns the version written.
pub(super) async fn write_status_if(
    api: &Api<McallTask>,
    name: &str,
    status: &McallTaskStatus,
    resource_version: Option<&str>,
) -> Result<Option<String>> {
    let mut patch =
        json!({ "apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "status": status });
    if let Some(version) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::Kube {
            op: "writing the task status",
            source,
        })?;
    Ok(written.metadata.resource_version)
}

/// Events are best effort: a failure to record one is logged, never fails the reconcile.
pub(super) async fn publish(
    ctx: &Context,
    task: &McallTask,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let note = status::truncate(note, 1000);
    if let Err(e) = ctx.events.publish(task, type_, reason, &note).await {
        tracing::debug!(name = task.name_any(), error = %e, "recording an Event failed");
    }
}
