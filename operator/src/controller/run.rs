//! Start an execution: compile its plan, claim a scheduled tick, hand it to `execute`. Shared by
//! one-shot and scheduled tasks.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use mcall_engine::TaskPlan;
use mcall_generated::{McallTask, McallTaskStatus};

use super::environment::{self, ResolveError};
use super::execute::{Run, execute};
use super::executions::Execution;
use super::reconcile::rendered_spec;
use super::status::HistoryLimits;
use super::writes::{Tracked, is_conflict, write_onto_read, write_status_if};
use super::{Context, TaskKey, status};
use crate::request::task_request;
use crate::{Error, Result};

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
        claim: Claim,
    },
}

/// How a scheduled run's tick is recorded before the run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// Claimed now, for a run that starts now.
    Now,
    /// Claimed now, up to a second early; the run waits for its tick.
    Ahead,
    /// Claimed already, by the previous run's result (`status.claimedTick`); the run waits for
    /// its tick and for this process's Lease to vouch for it.
    Chained,
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
    let RunKind::Scheduled {
        scheduled,
        tick,
        run_now,
        next,
        claim,
        cancel_previous,
        ..
    } = &kind
    else {
        // Registered now, so every later reconcile sees the task as running here; the rest
        // waits for an execution slot.
        let execution = ctx.executions.start(key.clone(), &uid, generation);
        let waiting = OneShot {
            ctx: ctx.clone(),
            api: api.clone(),
            task,
            key,
            uid,
            generation,
            execution,
        };
        tokio::spawn(waiting.run());
        return Ok(Action::await_change());
    };
    let plan = match prepare(ctx, &task).await? {
        Prepared::Ready(plan) => plan,
        Prepared::CannotRun { reason, message } => {
            cannot_run_scheduled(ctx, api, &task, generation, &kind, reason, &message).await?;
            return Ok(Action::await_change());
        }
    };
    // Registered before the claim is written, so the reconcile that write triggers sees the
    // execution as ours and leaves it alone.
    let execution = ctx
        .executions
        .start_scheduled(key.clone(), &uid, generation, *scheduled);
    let known = if *claim == Claim::Chained {
        // Claimed already: nothing to write before the run. Its result goes onto the version
        // the run was decided on (read again on a conflict).
        Some(task.clone())
    } else {
        let started = if *claim == Claim::Ahead {
            *scheduled
        } else {
            Timestamp::now()
        };
        let running = status::scheduled_running(
            task.status.as_ref(),
            generation,
            started,
            *scheduled,
            *tick,
            run_now.as_deref(),
            *next,
        );
        // The tick is claimed with optimistic concurrency: if the object changed since we read
        // it (another replica, or our own earlier write), the claim fails and we decide again.
        let precondition = task.resource_version();
        match write_status_if(api, &key.name, &running, precondition.as_deref()).await {
            Ok(version) => {
                ctx.executions.confirm_scheduled(&key, *cancel_previous);
                // The task as the claim left it: the outcome is written onto this version
                // without reading the task again, unless something else wrote in between.
                version.map(|version| {
                    let mut claimed = (*task).clone();
                    claimed.metadata.resource_version = Some(version);
                    claimed.status = Some(running);
                    Arc::new(claimed)
                })
            }
            Err(e) => {
                // Not claimed: the run it would have overtaken stays the current one.
                ctx.executions.abort_scheduled(&key, &execution);
                return if is_conflict(&e) {
                    Ok(Action::requeue(Duration::from_millis(50)))
                } else {
                    Err(e)
                };
            }
        }
    };
    tracing::info!(
        namespace = key.namespace,
        name = key.name,
        generation,
        "execution started"
    );
    let tracked = Tracked::new(api.clone(), key.clone(), uid, known);
    let run = Run {
        ctx: ctx.clone(),
        task,
        key,
        generation,
        plan: *plan,
        execution,
        kind,
    };
    tokio::spawn(execute(run, tracked, None));
    Ok(Action::await_change())
}

/// What preparing a run came to.
enum Prepared {
    Ready(Box<TaskPlan>),
    /// The run cannot start: a condition reason and why.
    CannotRun {
        reason: &'static str,
        message: String,
    },
}

/// Fills the template, resolves the environment, compiles the plan. Writes nothing: what cannot
/// run is reported by the caller, which knows the version to write onto.
async fn prepare(ctx: &Context, task: &McallTask) -> Result<Prepared> {
    let (spec, input_unavailable) = rendered_spec(ctx, task);
    let cannot_run = |reason, message: String| Ok(Prepared::CannotRun { reason, message });
    if let Some(message) = input_unavailable {
        return cannot_run("InputUnavailable", message);
    }
    let namespace = task.namespace().unwrap_or_default();
    let resolved = match environment::resolve(&ctx.client, &namespace, &spec).await {
        Ok(resolved) => resolved,
        Err(ResolveError::Spec(message)) => return cannot_run("InvalidSpec", message),
        Err(ResolveError::Api(source)) => {
            return Err(Error::Kube {
                op: "reading environmentFrom",
                source,
            });
        }
    };
    match TaskPlan::compile(task_request(&spec, resolved)) {
        Ok(plan) => Ok(Prepared::Ready(Box::new(plan))),
        Err(e) => cannot_run("InvalidSpec", e.to_string()),
    }
}

/// A one-shot run waiting for an execution slot: it holds its task and nothing else, so a
/// thousand tasks created at once cost a thousand small futures. With the slot it prepares (the
/// environment's Secrets are read now, not when the task was created), runs, and keeps the slot
/// until its result is written, which bounds the results queued for the API server too.
struct OneShot {
    ctx: Arc<Context>,
    api: Api<McallTask>,
    task: Arc<McallTask>,
    key: TaskKey,
    uid: String,
    generation: i64,
    execution: Execution,
}

impl OneShot {
    async fn run(self) {
        let OneShot {
            ctx,
            api,
            task,
            key,
            uid,
            generation,
            execution,
        } = self;
        let mut failures = 0u32;
        // The result goes onto the version the run was decided on (read again on a conflict).
        // Made when first needed: a thousand waiting runs hold only their task.
        let mut tracked: Option<Box<Tracked>> = None;
        let new_tracked = || {
            Box::new(Tracked::new(
                api.clone(),
                key.clone(),
                uid.clone(),
                Some(task.clone()),
            ))
        };
        let mut failure_shown: Option<String> = None;
        let (slot, plan) = loop {
            let slot = tokio::select! {
                biased;
                () = execution.token.cancelled() => None,
                () = ctx.shutdown.cancelled() => None,
                permit = ctx.slots.clone().acquire_owned() => permit.ok(),
            };
            // Replaced by a newer generation or deleted while it waited: nothing to report. Not
            // started during a shutdown either: nothing was written, so it runs after the restart.
            let Some(slot) = slot.filter(|_| {
                ctx.executions.is_current(&key, &execution) && !ctx.shutdown.is_cancelled()
            }) else {
                ctx.executions.finish(&key, &execution);
                return;
            };
            let prepared = Box::pin(prepare(&ctx, &task)).await;
            let failure = match prepared {
                Ok(Prepared::Ready(plan)) => break (slot, *plan),
                Ok(Prepared::CannotRun { reason, message }) => {
                    let tracked = tracked.get_or_insert_with(new_tracked);
                    let failed = |previous: Option<&McallTaskStatus>| {
                        status::failed(previous, generation, reason, &message, Timestamp::now())
                    };
                    // Boxed, like every request here: the waiting future stays small.
                    let written = Box::pin(write_if_current(
                        &ctx, &key, &execution, generation, tracked, failed,
                    ));
                    match written.await {
                        Ok(Some(before)) => {
                            publish(&ctx, &before, EventType::Warning, reason, &message);
                            ctx.executions.finish_reported(&key, &execution);
                            return;
                        }
                        // Replaced by a newer generation or deleted: nothing to report.
                        Ok(None) => {
                            ctx.executions.finish(&key, &execution);
                            return;
                        }
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            // The API server failed us (reading a Secret, or writing why the run cannot start):
            // retried like a failed reconcile, without holding a slot.
            drop(slot);
            failures += 1;
            let delay = super::retry_delay(failures);
            tracing::warn!(namespace = key.namespace, name = key.name, error = %failure, retry_in_secs = delay.as_secs(), "preparing the run failed; retrying");
            // Shown on the task once per distinct failure, so `kubectl get` tells why it (and
            // whatever depends on it) waits.
            let message = format!("preparing the run failed, retrying: {failure}");
            if failure_shown.as_deref() != Some(message.as_str()) {
                let tracked = tracked.get_or_insert_with(new_tracked);
                let shown = |previous: Option<&McallTaskStatus>| {
                    status::preparing_failed(previous, generation, &message, Timestamp::now())
                };
                let written = Box::pin(write_if_current(
                    &ctx, &key, &execution, generation, tracked, shown,
                ));
                if let Ok(Some(_)) = written.await {
                    failure_shown = Some(message);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = execution.token.cancelled() => {}
                () = ctx.shutdown.cancelled() => {}
            }
        };
        tracing::info!(
            namespace = key.namespace,
            name = key.name,
            generation,
            "execution started"
        );
        let tracked = tracked.map_or_else(
            || Tracked::new(api, key.clone(), uid, Some(task.clone())),
            |tracked| *tracked,
        );
        let run = Run {
            ctx,
            task,
            key,
            generation,
            plan,
            execution,
            kind: RunKind::OneShot,
        };
        // Boxed: the waiting future stays small (a spawned future is allocated at its largest).
        Box::pin(execute(run, tracked, Some(slot))).await;
    }
}

/// Writes the status `build` makes from the latest task's, while `execution` is the task's
/// current one and the task is still at `generation`. Returns the task as it was before the
/// write, if written.
async fn write_if_current(
    ctx: &Context,
    key: &TaskKey,
    execution: &Execution,
    generation: i64,
    tracked: &mut Tracked,
    build: impl Fn(Option<&McallTaskStatus>) -> McallTaskStatus,
) -> Result<Option<Arc<McallTask>>> {
    let written = tracked
        .write(|latest| {
            (ctx.executions.is_current(key, execution)
                && latest.metadata.generation == Some(generation))
            .then(|| build(latest.status.as_ref()))
        })
        .await?;
    Ok(written.map(|(before, _)| before))
}

/// A scheduled run that cannot start (a Secret or ConfigMap of `environmentFrom` is missing,
/// say) is recorded as failed with its tick claimed, so the next tick tries again instead of
/// this one being retried in a loop.
async fn cannot_run_scheduled(
    ctx: &Context,
    api: &Api<McallTask>,
    task: &McallTask,
    generation: i64,
    kind: &RunKind,
    reason: &'static str,
    message: &str,
) -> Result<()> {
    let RunKind::Scheduled {
        scheduled,
        tick,
        run_now,
        next,
        limits,
        ..
    } = kind
    else {
        unreachable!("one-shot runs report through their own Tracked");
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
    if write_onto_read(api, task, &claimed).await? {
        publish(ctx, task, EventType::Warning, reason, message);
    }
    Ok(())
}

/// Events are best effort: a failure to record one is logged, never fails the reconcile.
pub(super) fn publish(ctx: &Context, task: &McallTask, type_: EventType, reason: &str, note: &str) {
    ctx.events
        .publish(task, type_, reason, &status::truncate(note, 1000));
}
