//! The reconcile entry point and the one-shot path: decide (pure), then act on the decision.
//! Scheduled tasks branch off to `scheduled`; starting and reporting runs lives in `run`.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use mcall_engine::TaskPlan;
use mcall_generated::{McallTask, McallTaskSpec, Phase};

use super::decide::{Decision, Observed, Policy, decide};
use super::run::{RunKind, publish, start};
use super::writes::{write_onto_read, write_status};
use super::{Context, FINALIZER, TaskKey, dependencies, scheduled, status};
use crate::request::{ResolvedEnvironment, task_request};
use crate::{Error, Result};

pub async fn reconcile(task: Arc<McallTask>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = task
        .namespace()
        .ok_or(Error::MissingObjectKey("namespace"))?;
    let api: Api<McallTask> = Api::namespaced(ctx.client.clone(), &namespace);
    if task.metadata.deletion_timestamp.is_some() {
        // Deleting a task cancels its execution; the process group is killed by the engine.
        if let Some(uid) = task.uid() {
            ctx.executions.cancel_deleted(&key(&task), &uid);
        }
        if task.finalizers().iter().any(|f| f == FINALIZER) {
            release_finalizer(&api, &task).await?;
        }
        return Ok(Action::await_change());
    }
    apply(task, &ctx, &api).await
}

/// Removes the finalizer of earlier versions, only from the version read (other finalizers stay).
async fn release_finalizer(api: &Api<McallTask>, task: &McallTask) -> Result<()> {
    let rest: Vec<&String> = task
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = serde_json::json!({
        "metadata": {"finalizers": rest, "resourceVersion": task.resource_version()}
    });
    match api
        .patch(
            &task.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        // Gone already, or changed since read (the change triggers another reconcile).
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(source) => Err(Error::Kube {
            op: "releasing the finalizer",
            source,
        }),
        Ok(_) => Ok(()),
    }
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

    // A one-shot task: what this process runs of it (a run of an older generation is cancelled,
    // whatever the new one decides). Most of its reconciles (its own status writes) end here,
    // without compiling the spec.
    let running_here = if task.spec.schedule.is_none() {
        let finished = task.status.as_ref().is_some_and(|s| {
            s.observed_generation == Some(generation)
                && matches!(
                    s.phase,
                    Some(Phase::Succeeded | Phase::Failed | Phase::Skipped)
                )
        });
        if finished {
            ctx.executions.settle(&key, &uid, generation);
        }
        ctx.executions.cancel_older_one_shot(&key, &uid, generation);
        let running_here = ctx.executions.generation_of(&key, &uid);
        if super::decide::settled(generation, task.status.as_ref(), running_here)
            == Some(Decision::Idle)
        {
            return Ok(Action::await_change());
        }
        running_here
    } else {
        None
    };

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
    if task.spec.schedule.is_some() {
        let rejection = match (
            &invalid_spec,
            uses_commands && !ctx.config.commands.allows(&key.namespace),
        ) {
            (Some(message), _) => Some(("InvalidSpec", message.clone())),
            (None, true) => Some((
                "CommandsNotAllowed",
                super::decide::COMMANDS_NOT_ALLOWED.to_owned(),
            )),
            (None, false) => None,
        };
        return scheduled::apply(ctx, api, task, key, uid, generation, now, rejection).await;
    }
    let dependencies = dependencies::phases(&ctx.store, &task);
    let observed = Observed {
        generation,
        status: task.status.as_ref(),
        running_here,
        dependency_cycle: dependencies
            .iter()
            .any(|(_, phase)| *phase == Some(Phase::Pending))
            .then(|| dependencies::cycle(&ctx.store, &task))
            .flatten(),
        dependencies,
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
            publish(ctx, &task, EventType::Warning, "Skipped", &message);
            Ok(Action::await_change())
        }
        Decision::Reject { reason, message } => {
            reject(ctx, api, &task, reason, &message).await?;
            Ok(Action::await_change())
        }
        Decision::Interrupted => {
            let message = "the operator stopped while this execution ran; it was not re-run, so a command never runs twice (change the spec to run it again)";
            // Conditional on the version read: if the execution's own result landed meanwhile,
            // this stale view must not overwrite it.
            let interrupted = status::failed(previous, generation, "Interrupted", message, now);
            if write_onto_read(api, &task, &interrupted).await? {
                publish(ctx, &task, EventType::Warning, "Interrupted", message);
            }
            Ok(Action::await_change())
        }
        Decision::Start => start(ctx, api, task, key, uid, generation, RunKind::OneShot).await,
    }
}

pub(super) async fn reject(
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
    // Onto the version read: a result that landed meanwhile is not overwritten; the reconcile
    // its write triggers decides again.
    if write_onto_read(api, task, &next).await? {
        publish(ctx, task, EventType::Warning, reason, message);
    }
    Ok(())
}

/// The spec with `inputTemplate` filled from `inputSources` (read from the cache), or the spec
/// as written and why it could not be filled.
pub(super) fn rendered_spec(ctx: &Context, task: &McallTask) -> (McallTaskSpec, Option<String>) {
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
