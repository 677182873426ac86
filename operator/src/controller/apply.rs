//! The one interpreter of plans: a reconcile touches the API server and the run registry only
//! here (and in the run a `StartRun` effect hands over to: `start`, then `execute`). Effects run
//! in the order planned; a status write that did not land (its precondition failed) drops the
//! Event that goes with it.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use mcall_generated::McallTask;

use super::FINALIZER;
use super::context::{Context, Facts};
use super::effects::{Effect, Plan};
use super::report::{publish, writes};
use super::start::start;
use crate::{Error, Result};

pub async fn apply(ctx: &Arc<Context>, facts: &Facts, plan: Plan) -> Result<Action> {
    let mut requeue_after = plan.requeue_after;
    let (key, uid, generation) = (&facts.key, facts.uid.as_str(), facts.generation);
    for effect in plan.effects {
        match effect {
            Effect::Settle => ctx.executions.settle(key, uid, generation),
            Effect::CancelOlderRun => ctx.executions.cancel_older_one_shot(key, uid, generation),
            // The engine kills the run's process group.
            Effect::CancelDeleted => ctx.executions.cancel_deleted(key, uid),
            Effect::ReleaseFinalizer => release_finalizer(facts).await?,
            Effect::WriteStatus {
                status,
                precondition,
                then,
            } => {
                let task = facts.task.as_ref();
                let written = writes::write(&facts.api, task, &status, precondition).await?;
                if let (true, Some(note)) = (written, then) {
                    publish(&ctx.events, task, &note);
                }
            }
            Effect::Announce(note) => publish(&ctx.events, facts.task.as_ref(), &note),
            Effect::StartRun { kind, status } => {
                if let Some(sooner) = start(ctx, facts, *kind, status.map(|s| *s)).await? {
                    requeue_after = Some(sooner);
                }
            }
        }
    }
    Ok(requeue_after.map_or_else(Action::await_change, Action::requeue))
}

/// Removes the finalizer of earlier versions, only from the version read (other finalizers stay).
async fn release_finalizer(facts: &Facts) -> Result<()> {
    let task: &McallTask = &facts.task;
    let rest: Vec<&String> = task
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = serde_json::json!({
        "metadata": {"finalizers": rest, "resourceVersion": task.resource_version()}
    });
    let name = task.name_any();
    match facts
        .api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
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
