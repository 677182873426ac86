//! What every reconcile shares ([`Context`]), and the facts of one reconcile ([`Facts`]).

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use mcall_engine::Backoff;
use mcall_generated::McallTask;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::executions::{Executions, TaskKey};
use super::lease::{Leading, Liveness};
use super::report::EventSink;
use crate::config::OperatorConfig;
use crate::metrics::Metrics;
use crate::{Error, Result};

/// How a failed reconcile, or a run that the API server keeps from starting, is retried: 5 s
/// after the first failure, doubling to 5 minutes, each wait lengthened by up to as much again at
/// random, so an unreachable API server is not asked about every task every few seconds, nor
/// about a thousand tasks at the same instant.
pub const RECONCILE_BACKOFF: Backoff = Backoff {
    first: std::time::Duration::from_secs(5),
    max: std::time::Duration::from_secs(300),
};

/// Consecutive failed reconciles per task; a task's entry goes when it reconciles or is deleted.
pub type Failures = Arc<std::sync::Mutex<std::collections::HashMap<TaskKey, u32>>>;

/// Counts one more failed reconcile of `key` and returns how many there have been in a row.
pub fn count_failure<K: std::hash::Hash + Eq>(
    failures: &std::sync::Mutex<std::collections::HashMap<K, u32>>,
    key: K,
) -> u32 {
    let mut map = failures.lock().expect("not poisoned");
    let count = map.entry(key).or_insert(0);
    *count = count.saturating_add(1);
    *count
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub config: OperatorConfig,
    pub events: EventSink,
    pub executions: Executions,
    /// Bounds executions across all tasks; reconciles never wait on it.
    pub slots: Arc<Semaphore>,
    pub limits: mcall_engine::Limits,
    /// The controller's cache of tasks, for dependency and input lookups.
    pub store: Store<McallTask>,
    /// Cancelled when the operator shuts down.
    pub shutdown: CancellationToken,
    /// Consecutive failed reconciles per task, for the retry backoff.
    pub failures: Failures,
    /// Which claimed ticks the previous operator process may have started, and whether this
    /// one may start a claimed run.
    pub liveness: Liveness,
    /// Whether this process leads now; no run starts when it does not.
    pub leading: Leading,
    /// Reconciles, executions and the per-task gauges are recorded here.
    pub metrics: Metrics,
}

/// The facts of one reconcile: the task as cached, where its status goes, and when.
#[derive(Clone)]
pub struct Facts {
    pub task: Arc<McallTask>,
    pub api: Api<McallTask>,
    pub key: TaskKey,
    pub uid: String,
    /// `metadata.generation` (0 when the API server sets none).
    pub generation: i64,
    pub now: Timestamp,
}

impl Facts {
    pub fn new(task: Arc<McallTask>, client: &Client, now: Timestamp) -> Result<Self> {
        let namespace = task
            .namespace()
            .ok_or(Error::MissingObjectKey("namespace"))?;
        Ok(Facts {
            api: Api::namespaced(client.clone(), &namespace),
            key: TaskKey::of(task.as_ref()),
            uid: task.uid().unwrap_or_default(),
            generation: task.metadata.generation.unwrap_or(0),
            task,
            now,
        })
    }
}
