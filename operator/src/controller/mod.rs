//! The McallTask controller: watch → decide (pure) → act → report.

pub mod decide;
mod dependencies;
mod environment;
mod events;
mod execute;
mod executions;
pub mod liveness;
mod reconcile;
mod run;
mod scheduled;
pub mod status;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::TryStreamExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use mcall_generated::McallTask;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use events::EventSink;
pub use executions::{Executions, TaskKey};

use crate::config::OperatorConfig;
use crate::server::Readiness;

/// The field manager of every status the operator writes (server-side apply).
pub const FIELD_MANAGER: &str = "mcall-operator";
/// The finalizer earlier versions put on every task. Deletions are now seen on the watch (no write
/// per task, and no task stuck Terminating when the operator is gone); a task that still carries
/// it is released when deleted.
pub const FINALIZER: &str = "mcall.tz.io/cleanup";

/// Consecutive failed reconciles per task; a task's entry goes when it reconciles or is deleted.
pub type Failures = Arc<std::sync::Mutex<std::collections::HashMap<TaskKey, u32>>>;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub config: OperatorConfig,
    pub events: EventSink,
    pub executions: Executions,
    /// Bounds executions across all tasks; reconciles never wait on it.
    pub slots: Arc<Semaphore>,
    pub limits: mcall_engine::Limits,
    /// The controller's cache of tasks, for dependency lookups.
    pub store: Store<McallTask>,
    /// Cancelled when the operator shuts down.
    pub shutdown: CancellationToken,
    /// Consecutive failed reconciles per task, for the retry backoff.
    pub failures: Failures,
    /// Which claimed ticks the previous operator process may have started, and whether this
    /// one may start a claimed run.
    pub liveness: liveness::Liveness,
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
    let identity = format!(
        "{}-{}-{}",
        config.instance.as_deref().unwrap_or("mcall"),
        std::process::id(),
        k8s_openapi::jiff::Timestamp::now().as_microsecond()
    );
    let (liveness, lease) = liveness::acquire(
        client.clone(),
        config.lease_namespace(),
        crate::config::LEASE_NAME,
        identity,
    )
    .await
    .map_err(|e| anyhow::anyhow!("taking the operator's Lease: {e}"))?;
    let lease_stop = CancellationToken::new();
    let lease_kept = tokio::spawn(lease.keep(lease_stop.clone()));
    let events = EventSink::new(client.clone(), FIELD_MANAGER, config.instance.as_deref());
    let events_stop = CancellationToken::new();
    let events_published = tokio::spawn(
        events
            .clone()
            .publish_queued(events_stop.clone(), events::FLUSH_GRACE),
    );
    let executions = Executions::default();
    let slots = Arc::new(Semaphore::new(config.max_concurrent_executions.max(1)));
    let mut controllers = Vec::new();
    let mut stores = Vec::new();
    for ns in namespaces {
        let api: Api<McallTask> = match &ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let (store, writer) = reflector::store();
        stores.push(store.clone());
        // One watch feeds the cache, the controller, deletions and the dependents' wake-ups.
        let (wake, woken) = futures::channel::mpsc::unbounded();
        let failures = Failures::default();
        let watch = watch_tasks(
            api,
            ns.clone(),
            writer,
            store.clone(),
            executions.clone(),
            failures.clone(),
            wake,
        );
        let ctx = Arc::new(Context {
            client: client.clone(),
            config: config.clone(),
            events: events.clone(),
            executions: executions.clone(),
            slots: slots.clone(),
            limits: mcall_engine::Limits::default(),
            store: store.clone(),
            shutdown: shutdown.clone(),
            failures,
            liveness: liveness.clone(),
        });
        let stop = shutdown.clone();
        let controller = Controller::for_stream(watch, store)
            .reconcile_on(woken)
            // Bounded, so a cache of thousands of tasks is not reconciled all at once.
            .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
            .graceful_shutdown_on(async move { stop.cancelled().await })
            .run(reconcile_counting_failures, error_policy, ctx)
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
    // Released only now: no run starts after the Lease says this process stopped.
    lease_stop.cancel();
    let _ = lease_kept.await;
    // The Events of the last results, within a few seconds.
    events_stop.cancel();
    let _ = events_published.await;
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

/// How many tasks are reconciled at once. Executions run outside reconciles, so this bounds
/// memory and API bursts, not how many tasks run.
const RECONCILE_CONCURRENCY: u16 = 16;

/// The task watch: keeps `writer`'s cache (without what no decision reads), cancels the execution
/// of a deleted task, wakes the tasks that depend on a changed one, and yields every applied
/// task to the controller.
fn watch_tasks(
    api: Api<McallTask>,
    namespace: Option<String>,
    writer: reflector::store::Writer<McallTask>,
    store: Store<McallTask>,
    executions: Executions,
    failures: Failures,
    wake: futures::channel::mpsc::UnboundedSender<ObjectRef<McallTask>>,
) -> impl futures::Stream<Item = Result<McallTask, watcher::Error>> + Send + 'static {
    // Small list pages keep the initial list's transient memory (the high-water mark) low.
    watcher(
        api,
        watcher::Config::default().any_semantic().page_size(100),
    )
    .default_backoff()
    .modify(strip_for_cache)
    .reflect(writer)
    .inspect_ok(move |event| match event {
        watcher::Event::Apply(task) | watcher::Event::InitApply(task) => {
            for dependent in dependents(&store, task) {
                let _ = wake.unbounded_send(dependent);
            }
        }
        watcher::Event::Delete(task) => {
            if let (Some(namespace), name, Some(uid)) =
                (task.namespace(), task.name_any(), task.uid())
            {
                let key = TaskKey { namespace, name };
                failures.lock().expect("not poisoned").remove(&key);
                executions.cancel_deleted(&key, &uid);
            }
        }
        // After a re-list, a task deleted while the watch was down has no Delete event:
        // whatever runs for a task the fresh cache does not hold is cancelled.
        // Only this watch's namespace: another namespace's tasks are in another cache.
        watcher::Event::InitDone => {
            let in_scope = |key: &TaskKey| namespace.as_ref().is_none_or(|ns| *ns == key.namespace);
            let exists = |key: &TaskKey, uid: &str| {
                !in_scope(key)
                    || store
                        .get(&ObjectRef::new(&key.name).within(&key.namespace))
                        .is_some_and(|t| t.uid().as_deref() == Some(uid))
            };
            for (key, uid) in executions.tasks() {
                if !exists(&key, &uid) {
                    executions.cancel_deleted(&key, &uid);
                }
            }
            executions.forget_missing(exists);
        }
        watcher::Event::Init => {}
    })
    .applied_objects()
}

/// What the cache does not need: field-manager bookkeeping and kubectl's copy of the last applied
/// object, often larger than the rest of a task.
fn strip_for_cache(task: &mut McallTask) {
    task.metadata.managed_fields = None;
    if let Some(annotations) = task.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
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

/// Reconciles, and forgets the task's earlier failures once a reconcile succeeds.
async fn reconcile_counting_failures(
    task: Arc<McallTask>,
    ctx: Arc<Context>,
) -> crate::Result<Action> {
    let key = task_key(&task);
    let result = reconcile::reconcile(task, ctx.clone()).await;
    if result.is_ok() {
        ctx.failures.lock().expect("not poisoned").remove(&key);
    }
    result
}

/// Retries a failed reconcile with a per-task backoff, so an unreachable API server is not asked
/// about every task every few seconds.
fn error_policy(task: Arc<McallTask>, error: &crate::Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut map = ctx.failures.lock().expect("not poisoned");
        let count = map.entry(task_key(&task)).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let delay = retry_delay(failures);
    tracing::warn!(namespace = task.namespace().unwrap_or_default(), name = task.name_any(), error = %error, kind = error.metric_label(), failures, retry_in_secs = delay.as_secs(), "reconcile failed; retrying");
    Action::requeue(delay)
}

/// 5 s after the first failure, doubling up to 5 minutes.
pub(super) fn retry_delay(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(300);
    FIRST
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX)
}

fn task_key(task: &McallTask) -> TaskKey {
    TaskKey {
        namespace: task.namespace().unwrap_or_default(),
        name: task.name_any(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_reconciles_back_off_from_five_seconds_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(300));
    }
}
