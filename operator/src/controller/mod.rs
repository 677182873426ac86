//! The McallTask controller: watch → decide (pure) → act → report.

pub mod decide;
mod environment;
mod executions;
mod reconcile;
mod run;
mod scheduled;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use mcall_generated::McallTask;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use executions::{Executions, TaskKey};

use crate::config::OperatorConfig;
use crate::server::Readiness;

/// The field manager of every status the operator writes (server-side apply).
pub const FIELD_MANAGER: &str = "mcall-operator";
/// The finalizer that lets a deletion cancel a running execution first.
pub const FINALIZER: &str = "mcall.tz.io/cleanup";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub config: OperatorConfig,
    pub recorder: Recorder,
    pub executions: Executions,
    /// Bounds executions across all tasks; reconciles never wait on it.
    pub slots: Arc<Semaphore>,
    pub limits: mcall_engine::Limits,
    /// The controller's cache of tasks, for dependency lookups.
    pub store: Store<McallTask>,
    /// Cancelled when the operator shuts down.
    pub shutdown: CancellationToken,
}

/// Runs the McallTask controller until `shutdown` is cancelled, then lets running executions
/// finish within the configured grace period and cancels the rest.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let namespaces: Vec<Option<String>> = if config.watch_namespaces.is_empty() {
        vec![None]
    } else {
        config.watch_namespaces.iter().cloned().map(Some).collect()
    };
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: config.instance.clone(),
    };
    let executions = Executions::default();
    let slots = Arc::new(Semaphore::new(config.max_concurrent_executions.max(1)));
    let mut controllers = Vec::new();
    let mut stores = Vec::new();
    for ns in namespaces {
        let api: Api<McallTask> = match &ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let wc = watcher::Config::default().any_semantic();
        let controller = Controller::new(api.clone(), wc.clone());
        let store = controller.store();
        stores.push(store.clone());
        let dependents_store = store.clone();
        let ctx = Arc::new(Context {
            client: client.clone(),
            config: config.clone(),
            recorder: Recorder::new(client.clone(), reporter.clone()),
            executions: executions.clone(),
            slots: slots.clone(),
            limits: mcall_engine::Limits::default(),
            store,
            shutdown: shutdown.clone(),
        });
        let stop = shutdown.clone();
        let controller = controller
            // A task's status change wakes the tasks that depend on it: waiting is watch-driven.
            .watches(api, wc, move |changed: McallTask| {
                dependents(&dependents_store, &changed)
            })
            .graceful_shutdown_on(async move { stop.cancelled().await })
            .run(reconcile::reconcile, error_policy, ctx)
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "reconcile loop");
                }
            });
        controllers.push(controller);
    }
    let ready = async {
        for store in &stores {
            let _ = store.wait_until_ready().await;
        }
        readiness.set_ready();
        tracing::info!("caches synced; ready");
    };
    tokio::join!(futures::future::join_all(controllers), ready);

    drain(&executions, config.shutdown_grace).await;
    Ok(())
}

/// Waits for running executions to finish, up to `grace`, then cancels the rest and gives them a
/// moment to report.
async fn drain(executions: &Executions, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while !executions.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !executions.is_empty() {
        tracing::warn!(
            running = executions.len(),
            "shutdown grace period over; cancelling running executions"
        );
        executions.cancel_all();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !executions.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The tasks in `changed`'s namespace that list it as a dependency.
fn dependents(store: &Store<McallTask>, changed: &McallTask) -> Vec<ObjectRef<McallTask>> {
    let (Some(ns), name) = (changed.namespace(), changed.name_any()) else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|t| t.namespace().as_deref() == Some(ns.as_str()))
        .filter(|t| t.spec.dependencies.iter().flatten().any(|d| *d == name))
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

fn error_policy(task: Arc<McallTask>, error: &crate::Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = task.namespace().unwrap_or_default(), name = task.name_any(), error = %error, kind = error.metric_label(), "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
