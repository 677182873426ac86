//! Act on a decision: write status, publish Events, start or cancel executions.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use mcall_engine::{EngineEvent, TaskPlan, Verdict};
use mcall_generated::{McallTask, McallTaskSpec, McallTaskStatus, Phase};
use serde_json::json;

use super::decide::{Decision, Observed, Policy, decide};
use super::executions::Execution;
use super::{Context, FIELD_MANAGER, FINALIZER, TaskKey, environment, status};
use crate::request::{ResolvedEnvironment, task_request};
use crate::{Error, Result};

pub async fn reconcile(task: Arc<McallTask>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = task
        .namespace()
        .ok_or(Error::MissingObjectKey("namespace"))?;
    let api: Api<McallTask> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, task, |event| async {
        match event {
            Event::Apply(task) => apply(task, &ctx, &api).await,
            Event::Cleanup(task) => {
                // Deleting a task cancels its execution; the process group is killed by the engine.
                ctx.executions.cancel(&key(&task));
                tracing::info!(
                    namespace,
                    name = task.name_any(),
                    "task deleted; execution cancelled"
                );
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn key(task: &McallTask) -> TaskKey {
    TaskKey {
        namespace: task.namespace().unwrap_or_default(),
        name: task.name_any(),
    }
}

async fn apply(task: Arc<McallTask>, ctx: &Arc<Context>, api: &Api<McallTask>) -> Result<Action> {
    // Dependencies are looked up in the cache; before it is complete a present task would look missing.
    let _ = ctx.store.wait_until_ready().await;
    let key = key(&task);
    let uid = task.uid().unwrap_or_default();
    let generation = task.metadata.generation.unwrap_or(0);
    let now = Timestamp::now();

    let (spec, input_unavailable) = rendered_spec(ctx, &task);
    let plan = TaskPlan::compile(task_request(&spec, ResolvedEnvironment::default()));
    let (invalid_spec, uses_commands) = match &plan {
        // Until the template is filled the input is not known, so it cannot be judged yet.
        Err(_) if input_unavailable.is_some() => {
            (None, task.spec.r#type == mcall_generated::TaskType::Cmd)
        }
        Ok(p) => (None, p.uses_commands()),
        Err(e) => (Some(e.to_string()), false),
    };
    let observed = Observed {
        generation,
        status: task.status.as_ref(),
        running_here: ctx.executions.generation_of(&key, &uid),
        dependencies: dependency_phases(ctx, &task),
        invalid_spec,
        input_unavailable,
        commands_forbidden: uses_commands && !ctx.config.commands.allows(&key.namespace),
        now,
    };
    let decision = decide(
        &observed,
        Policy {
            dependency_grace: ctx.config.dependency_grace,
        },
    );
    tracing::debug!(
        namespace = key.namespace,
        name = key.name,
        ?decision,
        "decided"
    );
    let previous = task.status.as_ref();
    match decision {
        Decision::Idle => Ok(Action::await_change()),
        Decision::Wait {
            message,
            since,
            recheck_after,
        } => {
            let next = status::waiting(previous, generation, &message, since, now);
            if previous != Some(&next) {
                write_status(api, &key.name, &next).await?;
            }
            Ok(recheck_after.map_or_else(Action::await_change, Action::requeue))
        }
        Decision::Skip { message } => {
            write_status(
                api,
                &key.name,
                &status::skipped(previous, generation, &message, now),
            )
            .await?;
            publish(ctx, &task, EventType::Warning, "Skipped", &message).await;
            Ok(Action::await_change())
        }
        Decision::Reject { reason, message } => {
            reject(ctx, api, &task, reason, &message).await?;
            Ok(Action::await_change())
        }
        Decision::Interrupted => {
            let message = "the operator stopped while this execution ran; it was not re-run, so a command never runs twice (change the spec to run it again)";
            write_status(
                api,
                &key.name,
                &status::failed(previous, generation, "Interrupted", message, now),
            )
            .await?;
            publish(ctx, &task, EventType::Warning, "Interrupted", message).await;
            Ok(Action::await_change())
        }
        Decision::Start => start(ctx, api, task, key, uid, generation).await,
    }
}

async fn reject(
    ctx: &Context,
    api: &Api<McallTask>,
    task: &McallTask,
    reason: &str,
    message: &str,
) -> Result<()> {
    let generation = task.metadata.generation.unwrap_or(0);
    let next = status::failed(
        task.status.as_ref(),
        generation,
        reason,
        message,
        Timestamp::now(),
    );
    write_status(api, &task.name_any(), &next).await?;
    publish(ctx, task, EventType::Warning, reason, message).await;
    Ok(())
}

async fn start(
    ctx: &Arc<Context>,
    api: &Api<McallTask>,
    task: Arc<McallTask>,
    key: TaskKey,
    uid: String,
    generation: i64,
) -> Result<Action> {
    let (spec, _) = rendered_spec(ctx, &task);
    let resolved = match environment::resolve(&ctx.client, &key.namespace, &spec).await {
        Ok(resolved) => resolved,
        Err(message) => {
            reject(ctx, api, &task, "InvalidSpec", &message).await?;
            return Ok(Action::await_change());
        }
    };
    let plan = match TaskPlan::compile(task_request(&spec, resolved)) {
        Ok(plan) => plan,
        Err(e) => {
            reject(ctx, api, &task, "InvalidSpec", &e.to_string()).await?;
            return Ok(Action::await_change());
        }
    };
    // Registered before the Running status is written, so the reconcile that write triggers
    // sees the execution as ours and leaves it alone.
    let execution = ctx.executions.start(key.clone(), &uid, generation);
    let running = status::running(task.status.as_ref(), generation, Timestamp::now());
    if let Err(e) = write_status(api, &key.name, &running).await {
        ctx.executions.finish(&key, &execution);
        return Err(e);
    }
    publish(
        ctx,
        &task,
        EventType::Normal,
        "Started",
        &format!("running {} input(s)", plan.inputs().len()),
    )
    .await;
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
    ));
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
) {
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
                    let _ = write_status(
                        &api,
                        &key.name,
                        &status::retrying(current, attempt, at, &reason),
                    )
                    .await;
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
        mcall_engine::execute(&plan, &ctx.limits, execution.token.clone(), &observer).await
    } else {
        cancelled_before_start()
    };
    drop(observer);
    let _ = retry_reporter.await;
    drop(permit);

    // A newer execution (spec changed) or a deletion took over: this outcome is stale.
    if !ctx.executions.is_current(&key, &execution) {
        return;
    }
    let report = async {
        let latest = api.get_opt(&key.name).await.map_err(|source| Error::Kube {
            op: "reading the task",
            source,
        })?;
        let Some(latest) = latest.filter(|t| t.uid().as_deref() == Some(uid.as_str())) else {
            return Ok(());
        };
        let mut outcome = outcome;
        if outcome.verdict == Verdict::Cancelled && ctx.shutdown.is_cancelled() {
            outcome.error_message =
                Some("cancelled: the operator shut down before the execution finished".into());
        }
        let next = status::finished(
            latest.status.as_ref(),
            generation,
            &outcome,
            Timestamp::now(),
        );
        write_status(&api, &key.name, &next).await?;
        let (kind, reason) = match outcome.verdict {
            Verdict::Succeeded => (EventType::Normal, "Succeeded"),
            _ => (EventType::Warning, "Failed"),
        };
        let note = next.message.clone().unwrap_or_default();
        publish(&ctx, &latest, kind, reason, &note).await;
        tracing::info!(namespace = key.namespace, name = key.name, generation, verdict = ?outcome.verdict, "execution finished");
        Ok::<_, Error>(())
    };
    if let Err(e) = report.await {
        tracing::warn!(namespace = key.namespace, name = key.name, error = %e, "reporting the outcome failed");
    }
    ctx.executions.finish(&key, &execution);
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

/// The spec with `inputTemplate` filled from `inputSources` (read from the cache), or the spec
/// as written and why it could not be filled.
fn rendered_spec(ctx: &Context, task: &McallTask) -> (McallTaskSpec, Option<String>) {
    let mut spec = task.spec.clone();
    let Some(template) = &task.spec.input_template else {
        return (spec, None);
    };
    let namespace = task.namespace().unwrap_or_default();
    let sources = task.spec.input_sources.clone().unwrap_or_default();
    let found: Vec<(String, Option<Arc<McallTask>>)> = sources
        .iter()
        .map(|s| {
            (
                s.task_ref.clone(),
                ctx.store
                    .get(&ObjectRef::new(&s.task_ref).within(&namespace)),
            )
        })
        .collect();
    let lookup = |name: &str| {
        found
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, t)| t.as_ref())
            .map(|t| t.status.as_ref())
    };
    match crate::inputs::render(template, &sources, lookup) {
        Ok(input) => {
            spec.input = Some(input);
            (spec, None)
        }
        Err(e) => (spec, Some(e.to_string())),
    }
}

fn dependency_phases(ctx: &Context, task: &McallTask) -> Vec<(String, Option<Phase>)> {
    let namespace = task.namespace().unwrap_or_default();
    task.spec
        .dependencies
        .iter()
        .flatten()
        .map(|name| {
            let phase = ctx
                .store
                .get(&ObjectRef::new(name).within(&namespace))
                .map(|dep| {
                    dep.status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .unwrap_or(Phase::Pending)
                });
            (name.clone(), phase)
        })
        .collect()
}

async fn write_status(api: &Api<McallTask>, name: &str, status: &McallTaskStatus) -> Result<()> {
    let patch = json!({ "apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "status": status });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Kube {
        op: "writing the task status",
        source,
    })?;
    Ok(())
}

/// Events are best effort: a failure to record one is logged, never fails the reconcile.
async fn publish(ctx: &Context, task: &McallTask, type_: EventType, reason: &str, note: &str) {
    let event = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(status::truncate(note, 1000)),
        action: "Execute".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &task.object_ref(&())).await {
        tracing::debug!(name = task.name_any(), error = %e, "recording an Event failed");
    }
}
