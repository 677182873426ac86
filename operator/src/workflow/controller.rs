//! Wiring of the workflow controller: it reads children and templates from the McallTask cache
//! (one task watch serves both controllers), is woken when a child changes, and applies the
//! planner's effects: the status (first when it starts a run), the children, the Events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use mcall_generated::{McallTask, McallWorkflow, McallWorkflowStatus};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::effects::Plan;
use super::observed::Observed;
use super::plan;
use super::steps::Child;
use super::written::Written;
use crate::controller::report::writes::{FIELD_MANAGER, is_conflict, write_status_if};
use crate::controller::report::{self};
use crate::controller::{EventSink, count_failure};
use crate::metrics::Metrics;
use crate::{Error, Result};

/// The `kind` label of this controller's reconcile metrics.
const KIND: &str = "McallWorkflow";
/// Child creations and deletions in flight per reconcile.
const WRITES_IN_FLIGHT: usize = 16;
/// Workflows reconciled at once.
const RECONCILE_CONCURRENCY: u16 = 16;

/// Wake-ups of workflows whose children changed, sent by the task watch.
pub type Wakeups = futures::channel::mpsc::UnboundedReceiver<ObjectRef<McallWorkflow>>;

/// What the workflow controller takes from the task watch: its cache (children and templates
/// are read from it), when that cache is complete, and the wake-ups of changed children.
pub struct FromTaskWatch {
    pub store: Store<McallTask>,
    /// Cancelled once the cache holds every task.
    pub synced: CancellationToken,
    pub woken: Wakeups,
}

struct Context {
    client: Client,
    tasks: Store<McallTask>,
    /// Cancelled once the task cache holds every task.
    tasks_synced: CancellationToken,
    /// The controllers' stop.
    stop: CancellationToken,
    events: EventSink,
    cross_namespace_templates: bool,
    metrics: Metrics,
    failures: Mutex<HashMap<ObjectRef<McallWorkflow>, u32>>,
    written: Written,
}

/// The workflow controller of one watched namespace (`None`: all), until `stop`.
pub fn workflow_controller(
    client: Client,
    namespace: Option<String>,
    tasks: FromTaskWatch,
    events: EventSink,
    cross_namespace_templates: bool,
    metrics: Metrics,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let api: Api<McallWorkflow> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let ctx = Arc::new(Context {
        client,
        tasks: tasks.store,
        tasks_synced: tasks.synced,
        stop: stop.clone(),
        events,
        cross_namespace_templates,
        metrics,
        failures: Mutex::default(),
        written: Written::default(),
    });
    let (store, writer) = reflector::store();
    // Small pages, and no field-manager bookkeeping in the cache (as large as a small status).
    let workflows = watcher(
        api,
        watcher::Config::default().any_semantic().page_size(100),
    )
    .default_backoff()
    .modify(|wf: &mut McallWorkflow| {
        wf.metadata.managed_fields = None;
        if let Some(annotations) = wf.metadata.annotations.as_mut() {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    })
    .reflect(writer)
    .applied_objects();
    Controller::for_stream(workflows, store)
        .reconcile_on(tasks.woken)
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile_counted, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "workflow reconcile loop");
            }
        })
}

async fn reconcile_counted(wf: Arc<McallWorkflow>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile.count_and_measure(KIND);
    let span = tracing::info_span!(target: crate::telemetry::TRACES, "reconcile",
        kind = KIND, namespace = %wf.namespace().unwrap_or_default(), workflow = %wf.name_any());
    let result = reconcile(wf.clone(), ctx.clone()).instrument(span).await;
    if result.is_ok() {
        ctx.failures
            .lock()
            .expect("not poisoned")
            .remove(&ObjectRef::from_obj(wf.as_ref()));
    }
    result
}

fn error_policy(wf: Arc<McallWorkflow>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile
        .count_error(KIND, error.metric_label());
    let failures = count_failure(&ctx.failures, ObjectRef::from_obj(wf.as_ref()));
    let delay = crate::controller::RECONCILE_BACKOFF.delay(failures);
    tracing::warn!(namespace = wf.namespace().unwrap_or_default(), name = wf.name_any(), error = %error, failures, "workflow reconcile failed; retrying");
    Action::requeue(delay)
}

async fn reconcile(wf: Arc<McallWorkflow>, ctx: Arc<Context>) -> Result<Action> {
    // Children go with the workflow (ownerReferences); their runs are cancelled as they go.
    if wf.metadata.deletion_timestamp.is_some() {
        ctx.written.forget(&wf.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }
    let wf = ctx.written.latest(wf);
    // Children and templates are read from the task cache; before it is complete a present
    // child would look missing and be created again.
    // Stopped before the cache synced (the task watch is no longer polled then): end, so the
    // controller's graceful shutdown does not wait for this reconcile forever.
    tokio::select! {
        () = ctx.tasks_synced.cancelled() => {}
        () = ctx.stop.cancelled() => return Ok(Action::await_change()),
    }
    let namespace = wf.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let uid = wf.uid().ok_or(Error::MissingObjectKey("uid"))?;
    let plan = {
        let template = |ns: &str, name: &str| {
            ctx.tasks
                .get(&ObjectRef::new(name).within(ns))
                .map(|t| t.spec.clone())
        };
        plan::plan(&Observed {
            workflow: wf.as_ref(),
            children: children_of(&ctx.tasks, &namespace, &uid),
            template: &template,
            cross_namespace_templates: ctx.cross_namespace_templates,
            now: Timestamp::now(),
        })
    };
    tracing::debug!(namespace, name = wf.name_any(), ?plan, "planned workflow");
    apply(&ctx, &wf, &namespace, plan).await
}

/// The children of the workflow with this uid: tasks whose controller owner it is.
fn children_of(tasks: &Store<McallTask>, namespace: &str, uid: &str) -> Vec<Child> {
    tasks
        .state()
        .iter()
        .filter(|t| t.metadata.namespace.as_deref() == Some(namespace))
        .filter(|t| {
            t.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .filter_map(|t| Child::of(t))
        .collect()
}

async fn apply(ctx: &Context, wf: &McallWorkflow, namespace: &str, plan: Plan) -> Result<Action> {
    let tasks: Api<McallTask> = Api::namespaced(ctx.client.clone(), namespace);
    // A run's id lands before its children exist; otherwise the status is written beside the
    // creations (the next reconcile of this workflow starts after both, and plans from what was
    // written even if the cache lags: `Written`).
    if plan.starts_run && !write_status(ctx, wf, namespace, plan.status.as_ref()).await? {
        return Ok(Action::await_change());
    }
    let status = async {
        if plan.starts_run {
            return Ok(true);
        }
        write_status(ctx, wf, namespace, plan.status.as_ref()).await
    };
    // Deletions before creations: a cancelled run's children go even if a creation fails.
    let children = async {
        delete_children(&tasks, plan.delete).await?;
        create_children(&tasks, wf, plan.create).await
    };
    let (written, created) = tokio::join!(status, children);
    if written? {
        for note in &plan.events {
            report::publish(&ctx.events, wf, note);
        }
    }
    created?;
    Ok(plan
        .requeue_after
        .map_or_else(Action::await_change, Action::requeue))
}

/// Writes the status onto the version read. `Ok(false)`: the workflow changed meanwhile (the
/// reconcile that change triggers decides again).
async fn write_status(
    ctx: &Context,
    wf: &McallWorkflow,
    namespace: &str,
    status: Option<&McallWorkflowStatus>,
) -> Result<bool> {
    let Some(status) = status else {
        return Ok(true);
    };
    let workflows: Api<McallWorkflow> = Api::namespaced(ctx.client.clone(), namespace);
    let version = wf.resource_version();
    match write_status_if(&workflows, &wf.name_any(), status, version.as_deref()).await {
        Ok(written) => {
            ctx.written.record(wf, status, written);
            Ok(true)
        }
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn create_children(
    tasks: &Api<McallTask>,
    wf: &McallWorkflow,
    children: Vec<McallTask>,
) -> Result<()> {
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let uid = wf.uid().unwrap_or_default();
    concurrently(children, |child| {
        let (params, uid) = (&params, uid.as_str());
        async move {
            match tasks.create(params, &child).await {
                // Created by an earlier reconcile whose child the cache did not show yet,
                // unless another object has the name.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    let name = child.name_any();
                    let existing = tasks.get(&name).await.map_err(|source| Error::Kube {
                        op: "reading a workflow step's task",
                        source,
                    })?;
                    let ours = existing
                        .owner_references()
                        .iter()
                        .any(|o| o.controller == Some(true) && o.uid == uid);
                    if ours {
                        Ok(())
                    } else {
                        Err(Error::NameTaken(name))
                    }
                }
                other => other.map(|_| ()).map_err(|source| Error::Kube {
                    op: "creating a workflow step's task",
                    source,
                }),
            }
        }
    })
    .await
}

async fn delete_children(tasks: &Api<McallTask>, names: Vec<String>) -> Result<()> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    let params = &params;
    concurrently(names, |name| async move {
        match tasks.delete(&name, params).await {
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            other => other.map(|_| ()).map_err(|source| Error::Kube {
                op: "deleting a workflow step's task",
                source,
            }),
        }
    })
    .await
}

/// Runs `write` for every item, a few at once, until all succeed or one fails.
async fn concurrently<T, F, Fut>(items: Vec<T>, write: F) -> Result<()>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    stream::iter(items)
        .map(write)
        .buffer_unordered(WRITES_IN_FLIGHT)
        .try_collect()
        .await
}
