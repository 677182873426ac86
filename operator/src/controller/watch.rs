//! The task watch: one stream feeds the cache, the controller, cancellations of deleted tasks'
//! runs, and the wake-ups of tasks that depend on a changed one.

use futures::TryStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use mcall_generated::{McallTask, McallWorkflow};

use super::context::Failures;
use super::executions::{Executions, TaskKey};
use crate::metrics::TaskMetrics;

/// What this process keeps of each task outside the cache; the watch cancels or forgets a
/// deleted task's.
pub struct PerTask {
    pub executions: Executions,
    /// Its failed reconciles.
    pub failures: Failures,
    /// Its metric series.
    pub metrics: TaskMetrics,
}

/// Whom the watch tells what it saw.
pub struct Signals {
    /// Tasks that depend on a changed one.
    pub dependents: futures::channel::mpsc::UnboundedSender<ObjectRef<McallTask>>,
    /// Workflows whose child task changed.
    pub owners: futures::channel::mpsc::UnboundedSender<ObjectRef<McallWorkflow>>,
    /// Cancelled once the cache holds every task (after the first list).
    pub synced: tokio_util::sync::CancellationToken,
}

/// The task watch: keeps `writer`'s cache (without what no decision reads), cancels the execution
/// of a deleted task and forgets the rest of it, wakes the tasks that depend on a changed one,
/// and yields every applied task to the controller.
pub fn watch_tasks(
    api: Api<McallTask>,
    namespace: Option<String>,
    writer: reflector::store::Writer<McallTask>,
    store: Store<McallTask>,
    per_task: PerTask,
    signals: Signals,
) -> impl futures::Stream<Item = Result<McallTask, watcher::Error>> + Send + 'static {
    let PerTask {
        executions,
        failures,
        metrics,
    } = per_task;
    let Signals {
        dependents: wake,
        owners: wake_owners,
        synced,
    } = signals;
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
            if let Some(owner) = owning_workflow(task) {
                let _ = wake_owners.unbounded_send(owner);
            }
        }
        watcher::Event::Delete(task) => {
            if let Some(owner) = owning_workflow(task) {
                let _ = wake_owners.unbounded_send(owner);
            }
            if let (Some(namespace), name, Some(uid)) =
                (task.namespace(), task.name_any(), task.uid())
            {
                metrics.forget(&namespace, &name);
                let key = TaskKey { namespace, name };
                failures.lock().expect("not poisoned").remove(&key);
                executions.cancel_deleted(&key, &uid);
            }
        }
        // After a re-list, a task deleted while the watch was down has no Delete event:
        // whatever runs for a task the fresh cache does not hold is cancelled, and its series go.
        // Only this watch's namespace: another namespace's tasks are in another cache.
        watcher::Event::InitDone => {
            // Many may wait for this (the store's own readiness wakes only some of its waiters).
            synced.cancel();
            let in_scope = |ns: &str| namespace.as_deref().is_none_or(|watched| watched == ns);
            let exists = |key: &TaskKey, uid: &str| {
                !in_scope(&key.namespace)
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
            metrics.retain(|ns, name| {
                !in_scope(ns) || store.get(&ObjectRef::new(name).within(ns)).is_some()
            });
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

/// The workflow whose step `task` runs (its controller owner), to wake when the task changes.
fn owning_workflow(task: &McallTask) -> Option<ObjectRef<McallWorkflow>> {
    let namespace = task.namespace()?;
    task.owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "McallWorkflow")
        .map(|o| ObjectRef::new(&o.name).within(&namespace))
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
