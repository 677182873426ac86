//! The reconcile entry point: observe (the cached task, what this process runs of it, now) →
//! plan (pure: [`one_shot`], [`scheduled`], or a deletion) → apply (the one interpreter).
//! Also the error policy: a failed reconcile is retried with the reconcile backoff.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use mcall_generated::{ConditionStatus, McallTask, McallTaskStatus, Phase, Reason};
use tracing::Instrument as _;

use super::FINALIZER;
use super::apply::apply;
use super::context::{Context, Facts, RECONCILE_BACKOFF, count_failure};
use super::decide::Policy;
use super::effects::{Effect, Plan};
use super::executions::TaskKey;
use super::report::conditions::{READY, reason_of, set_condition};
use super::{observe, one_shot, scheduled};
use crate::Result;
use crate::workflow::child::TEMPLATE_LABEL;

/// The `kind` label of this controller's reconcile metrics.
const KIND: &str = "McallTask";

pub async fn reconcile(task: Arc<McallTask>, ctx: Arc<Context>) -> Result<Action> {
    if task.metadata.deletion_timestamp.is_some() {
        let facts = Facts::new(task, &ctx.client, Timestamp::now())?;
        return apply(&ctx, &facts, deletion(&facts.task)).await;
    }
    // Dependencies are looked up in the cache; before it is complete a present task would look
    // missing.
    let _ = ctx.store.wait_until_ready().await;
    let facts = Facts::new(task, &ctx.client, Timestamp::now())?;
    let plan = if is_template(&facts.task) {
        template(&facts)
    } else if was_template(&facts.task) {
        no_longer_template()
    } else if facts.task.spec.schedule.is_none() {
        plan_one_shot(&ctx, &facts)
    } else {
        scheduled::plan(&observe::scheduled(&ctx, &facts))
    };
    tracing::debug!(
        namespace = facts.key.namespace,
        name = facts.key.name,
        ?plan,
        "planned"
    );
    apply(&ctx, &facts, plan).await
}

/// Most reconciles of a one-shot task (its own status writes) end at the prelude, without
/// compiling the spec.
fn plan_one_shot(ctx: &Context, facts: &Facts) -> Plan {
    let status = facts.task.status.as_ref();
    let runs = ctx.executions.runs_here(&facts.key, &facts.uid);
    let prelude = one_shot::prelude(facts.generation, status, runs);
    if let Some(plan) = one_shot::plan_settled(&prelude, facts.generation, status) {
        return plan;
    }
    let observed = observe::one_shot(ctx, facts, prelude.running_here);
    let policy = Policy {
        dependency_grace: ctx.config.dependency_grace,
    };
    one_shot::plan(prelude, &observed, policy)
}

/// Whether the task is marked as a template of workflow steps.
fn is_template(task: &McallTask) -> bool {
    task.labels().get(TEMPLATE_LABEL).map(String::as_str) == Some("true")
}

/// A template does not run by itself: its status says so, once per generation.
fn template(facts: &Facts) -> Plan {
    let previous = facts.task.status.as_ref();
    let marked = previous.is_some_and(|s| {
        s.observed_generation == Some(facts.generation)
            && reason_of(s.conditions.as_deref(), READY) == Some(Reason::Template)
    });
    if marked {
        return Plan::idle();
    }
    let message =
        format!("a template of workflow steps (label {TEMPLATE_LABEL}); it does not run by itself");
    let mut status = previous.cloned().unwrap_or_default();
    status.phase = Some(Phase::Skipped);
    status.message = Some(message.clone());
    status.observed_generation = Some(facts.generation);
    set_condition(
        &mut status.conditions,
        READY,
        ConditionStatus::False,
        Reason::Template,
        &message,
        facts.generation,
        facts.now,
    );
    Plan::idle().then(Effect::write_onto_read(status, None))
}

/// Whether the status still says the task is a template (its label has just gone).
fn was_template(task: &McallTask) -> bool {
    let conditions = task.status.as_ref().and_then(|s| s.conditions.as_deref());
    reason_of(conditions, READY) == Some(Reason::Template)
}

/// A former template starts afresh, as a new task would: its status is cleared, and the
/// reconcile that write triggers runs it.
fn no_longer_template() -> Plan {
    let status = McallTaskStatus {
        phase: Some(Phase::Pending),
        message: Some("no longer a template".to_owned()),
        ..McallTaskStatus::default()
    };
    Plan::idle().then(Effect::write_onto_read(status, None))
}

/// A deleted task's runs are cancelled; a finalizer of earlier versions is released.
fn deletion(task: &McallTask) -> Plan {
    let plan = Plan::idle().then(Effect::CancelDeleted);
    if task.finalizers().iter().any(|f| f == FINALIZER) {
        plan.then(Effect::ReleaseFinalizer)
    } else {
        plan
    }
}

/// Reconciles, and forgets the task's earlier failures once a reconcile succeeds; counted and
/// timed in the metrics, and a `reconcile` span in the traces (the logs leave it out unless
/// traces are on).
pub async fn reconcile_counting_failures(
    task: Arc<McallTask>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let _timer = ctx.metrics.reconcile.count_and_measure(KIND);
    let key = TaskKey::of(task.as_ref());
    let span = tracing::info_span!(target: crate::telemetry::TRACES, "reconcile",
        kind = KIND, namespace = %key.namespace, task = %key.name,
        otel.status_code = tracing::field::Empty, otel.status_message = tracing::field::Empty);
    let result = reconcile(task, ctx.clone()).instrument(span.clone()).await;
    match &result {
        Ok(_) => {
            ctx.failures.lock().expect("not poisoned").remove(&key);
        }
        Err(e) => {
            span.record("otel.status_code", "error");
            span.record("otel.status_message", tracing::field::display(e));
        }
    }
    result
}

/// Retries a failed reconcile with a per-task backoff, so an unreachable API server is not asked
/// about every task every few seconds.
pub fn error_policy(task: Arc<McallTask>, error: &crate::Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile
        .count_error(KIND, error.metric_label());
    let failures = count_failure(&ctx.failures, TaskKey::of(task.as_ref()));
    let delay = RECONCILE_BACKOFF.delay(failures);
    tracing::warn!(namespace = task.namespace().unwrap_or_default(), name = task.name_any(), error = %error, kind = error.metric_label(), failures, retry_in_secs = delay.as_secs(), "reconcile failed; retrying");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(finalizers: &[&str]) -> McallTask {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mcall.tz.io/v1", "kind": "McallTask",
            "metadata": {"name": "t", "namespace": "ns", "finalizers": finalizers},
            "spec": {"type": "cmd", "input": "true"}
        }))
        .unwrap()
    }

    #[test]
    fn a_deletion_cancels_the_runs_and_releases_only_our_old_finalizer() {
        assert_eq!(deletion(&task(&[])).effects, [Effect::CancelDeleted]);
        assert_eq!(
            deletion(&task(&["other", FINALIZER])).effects,
            [Effect::CancelDeleted, Effect::ReleaseFinalizer]
        );
        assert_eq!(deletion(&task(&[])).requeue_after, None);
    }
}
