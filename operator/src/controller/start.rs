//! Starting a run: a one-shot run waits for an execution slot and prepares then; a scheduled run
//! prepares, claims its tick (unless an earlier result claimed it) and hands over to `execute`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use mcall_generated::{McallTask, McallTaskStatus, Reason};

use super::context::{Context, Facts, RECONCILE_BACKOFF};
use super::execute::{Run, execute};
use super::executions::Execution;
use super::prepare::{Prepared, prepare};
use super::report::writes::{self, Precondition, Tracked, is_conflict};
use super::report::{Note, publish};
use super::runs::{Claim, RunKind, ScheduledRun};
use super::{scheduled, status};
use crate::Result;

/// How soon a scheduled task is decided again after its claim lost a race (409).
const AFTER_LOST_CLAIM: Duration = Duration::from_millis(50);

/// Starts a run of `kind` for the task in `facts`, whose status is `base` when the plan changed
/// it. `Some(wait)`: decide again after `wait` instead of when the plan said.
pub async fn start(
    ctx: &Arc<Context>,
    facts: &Facts,
    kind: RunKind,
    base: Option<McallTaskStatus>,
) -> Result<Option<Duration>> {
    let task = match base {
        Some(status) => {
            let mut task = (*facts.task).clone();
            task.status = Some(status);
            Arc::new(task)
        }
        None => facts.task.clone(),
    };
    match kind {
        RunKind::OneShot => {
            // Registered now, so every later reconcile sees the task as running here; the rest
            // waits for an execution slot.
            let execution = ctx
                .executions
                .start(facts.key.clone(), &facts.uid, facts.generation);
            let waiting = OneShot {
                ctx: ctx.clone(),
                facts: Facts {
                    task,
                    ..facts.clone()
                },
                execution,
            };
            tokio::spawn(waiting.run());
            Ok(None)
        }
        RunKind::Scheduled(run) => start_scheduled(ctx, facts, task, run).await,
    }
}

async fn start_scheduled(
    ctx: &Arc<Context>,
    facts: &Facts,
    task: Arc<McallTask>,
    run: ScheduledRun,
) -> Result<Option<Duration>> {
    let (key, generation) = (&facts.key, facts.generation);
    let plan = match prepare(ctx, &task).await? {
        Prepared::Ready(plan) => plan,
        Prepared::CannotRun { reason, message } => {
            let previous = task.status.as_ref();
            let now = Timestamp::now();
            let failed = scheduled::cannot_run(previous, generation, &run, reason, &message, now);
            if writes::write(&facts.api, &task, &failed, Precondition::OnRead).await? {
                publish(&ctx.events, task.as_ref(), &Note::new(reason, message));
            }
            return Ok(None);
        }
    };
    // Registered before the claim is written, so the reconcile that write triggers sees the
    // execution as ours and leaves it alone.
    let execution =
        ctx.executions
            .start_scheduled(key.clone(), &facts.uid, generation, run.scheduled);
    let known = if run.claim == Claim::Chained {
        // Claimed already: nothing to write before the run. Its result goes onto the version
        // the run was decided on (read again on a conflict).
        Some(task.clone())
    } else {
        match claim(ctx, facts, &task, &run).await {
            Ok(claimed) => claimed,
            Err(e) => {
                // Not claimed: the run it would have overtaken stays the current one.
                ctx.executions.forget_unstarted(key, &execution);
                return if is_conflict(&e) {
                    Ok(Some(AFTER_LOST_CLAIM))
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
    let tracked = Tracked::new(
        facts.api.clone(),
        key.name.clone(),
        facts.uid.clone(),
        known,
    );
    let run = Run {
        ctx: ctx.clone(),
        task,
        key: key.clone(),
        generation,
        plan: *plan,
        execution,
        kind: RunKind::Scheduled(run),
    };
    tokio::spawn(execute(run, tracked, None));
    Ok(None)
}

/// Claims the run's tick as `Running`, with optimistic concurrency: if the task changed since it
/// was read (another writer, or our own earlier write), the claim fails with a conflict and the
/// task is decided again. Returns the task as the claim left it, so the outcome is written onto
/// that version without reading the task again.
async fn claim(
    ctx: &Context,
    facts: &Facts,
    task: &Arc<McallTask>,
    run: &ScheduledRun,
) -> Result<Option<Arc<McallTask>>> {
    let running = match run.claim {
        // Recorded Running already, by the process it is adopted from: written again as it
        // is, on the version it was decided on, so a cache that had not seen this run's
        // result yet cannot replay it.
        Claim::Adopted => task.status.clone().unwrap_or_default(),
        Claim::Ahead => {
            status::scheduled_running(task.status.as_ref(), facts.generation, run.scheduled, run)
        }
        Claim::Now | Claim::Chained => status::scheduled_running(
            task.status.as_ref(),
            facts.generation,
            Timestamp::now(),
            run,
        ),
    };
    let precondition = task.resource_version();
    let name = &facts.key.name;
    let version =
        writes::write_status_if(&facts.api, name, &running, precondition.as_deref()).await?;
    ctx.executions
        .confirm_scheduled(&facts.key, run.cancel_previous);
    Ok(version.map(|version| {
        let mut claimed = (**task).clone();
        claimed.metadata.resource_version = Some(version);
        claimed.status = Some(running);
        Arc::new(claimed)
    }))
}

/// A one-shot run waiting for an execution slot: it holds its task and nothing else, so a
/// thousand tasks created at once cost a thousand small futures. With the slot it prepares (the
/// environment's Secrets are read now, not when the task was created), runs, and keeps the slot
/// until its result is written, which bounds the results queued for the API server too.
struct OneShot {
    ctx: Arc<Context>,
    facts: Facts,
    execution: Execution,
}

/// What waiting for a slot and preparing came to.
enum Ready {
    /// Run `plan` in the slot.
    Run(
        tokio::sync::OwnedSemaphorePermit,
        Box<mcall_engine::TaskPlan>,
    ),
    /// Nothing more to do (replaced, deleted, shutting down, or reported as unable to run).
    Done,
}

impl OneShot {
    async fn run(self) {
        // The result goes onto the version the run was decided on (read again on a conflict).
        // Made when first needed: a thousand waiting runs hold only their task.
        let mut tracked: Option<Box<Tracked<McallTask>>> = None;
        let ready = Box::pin(self.wait_and_prepare(&mut tracked)).await;
        let Ready::Run(slot, plan) = ready else {
            return;
        };
        let OneShot {
            ctx,
            facts,
            execution,
        } = self;
        tracing::info!(
            namespace = facts.key.namespace,
            name = facts.key.name,
            generation = facts.generation,
            "execution started"
        );
        let tracked = match tracked {
            Some(tracked) => *tracked,
            None => new_tracked(&facts),
        };
        let run = Run {
            ctx,
            task: facts.task,
            key: facts.key,
            generation: facts.generation,
            plan: *plan,
            execution,
            kind: RunKind::OneShot,
        };
        // Boxed: the waiting future stays small (a spawned future is allocated at its largest).
        Box::pin(execute(run, tracked, Some(slot))).await;
    }

    /// Waits for a slot and prepares; the API server's failures are retried with the reconcile
    /// backoff, without holding a slot, and shown on the task once per distinct failure.
    async fn wait_and_prepare(&self, tracked: &mut Option<Box<Tracked<McallTask>>>) -> Ready {
        let (ctx, key, execution) = (&self.ctx, &self.facts.key, &self.execution);
        let mut failure_shown: Option<String> = None;
        for delay in RECONCILE_BACKOFF.delays() {
            let slot = tokio::select! {
                biased;
                () = execution.token.cancelled() => None,
                () = ctx.shutdown.cancelled() => None,
                permit = ctx.slots.clone().acquire_owned() => permit.ok(),
            };
            // Replaced by a newer generation or deleted while it waited: nothing to report. Not
            // started during a shutdown either: nothing was written, so it runs after the restart.
            let Some(slot) = slot.filter(|_| {
                ctx.executions.is_current(key, execution) && !ctx.shutdown.is_cancelled()
            }) else {
                ctx.executions.finish(key, execution);
                return Ready::Done;
            };
            let failure = match Box::pin(prepare(ctx, &self.facts.task)).await {
                Ok(Prepared::Ready(plan)) => return Ready::Run(slot, plan),
                Ok(Prepared::CannotRun { reason, message }) => {
                    let tracked = tracked.get_or_insert_with(|| Box::new(new_tracked(&self.facts)));
                    match Box::pin(self.report_cannot_run(tracked, reason, &message)).await {
                        Ok(()) => return Ready::Done,
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            drop(slot);
            tracing::warn!(namespace = key.namespace, name = key.name, error = %failure, retry_in_secs = delay.as_secs(), "preparing the run failed; retrying");
            // Shown on the task, so `kubectl get` tells why it (and whatever depends on it) waits.
            let message = format!("preparing the run failed, retrying: {failure}");
            if failure_shown.as_deref() != Some(message.as_str()) {
                let tracked = tracked.get_or_insert_with(|| Box::new(new_tracked(&self.facts)));
                let generation = self.facts.generation;
                let shown = |previous: Option<&McallTaskStatus>| {
                    status::preparing_failed(previous, generation, &message, Timestamp::now())
                };
                if let Ok(Some(_)) = Box::pin(self.write_if_current(tracked, shown)).await {
                    failure_shown = Some(message);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = execution.token.cancelled() => {}
                () = ctx.shutdown.cancelled() => {}
            }
        }
        unreachable!("the backoff has no end")
    }

    /// Records that the run cannot start (written through its own `Tracked`, so this write
    /// cannot make its report conflict), and forgets the run.
    async fn report_cannot_run(
        &self,
        tracked: &mut Tracked<McallTask>,
        reason: Reason,
        message: &str,
    ) -> Result<()> {
        let (ctx, key, execution) = (&self.ctx, &self.facts.key, &self.execution);
        let generation = self.facts.generation;
        let failed = |previous: Option<&McallTaskStatus>| {
            status::failed(previous, generation, reason, message, Timestamp::now())
        };
        match self.write_if_current(tracked, failed).await? {
            Some(before) => {
                publish(&ctx.events, before.as_ref(), &Note::new(reason, message));
                ctx.executions.finish_reported(key, execution);
            }
            // Replaced by a newer generation or deleted: nothing to report.
            None => ctx.executions.finish(key, execution),
        }
        Ok(())
    }

    /// Writes the status `build` makes from the latest task's, while this run is the task's
    /// current one and the task is still at its generation. Returns the task as it was before the
    /// write, if written.
    async fn write_if_current(
        &self,
        tracked: &mut Tracked<McallTask>,
        build: impl Fn(Option<&McallTaskStatus>) -> McallTaskStatus,
    ) -> Result<Option<Arc<McallTask>>> {
        let (ctx, key, execution) = (&self.ctx, &self.facts.key, &self.execution);
        let generation = self.facts.generation;
        let written = tracked
            .write(|latest| {
                (ctx.executions.is_current(key, execution)
                    && latest.metadata.generation == Some(generation))
                .then(|| build(latest.status.as_ref()))
            })
            .await?;
        Ok(written.map(|(before, _)| before))
    }
}

fn new_tracked(facts: &Facts) -> Tracked<McallTask> {
    Tracked::new(
        facts.api.clone(),
        facts.key.name.clone(),
        facts.uid.clone(),
        Some(facts.task.clone()),
    )
}
