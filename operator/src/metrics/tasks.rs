//! Per-task gauges: whether the last run succeeded, when it finished, and how many runs in a row
//! failed. Series exist only for tasks that ran here and still exist: the task watch forgets a
//! deleted task's ([`TaskMetrics::forget`], and [`TaskMetrics::retain`] after a re-list).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    namespace: String,
    name: String,
}

impl TaskLabels {
    fn new(namespace: &str, name: &str) -> Self {
        TaskLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

#[derive(Clone)]
pub struct TaskMetrics {
    up: Family<TaskLabels, Gauge>,
    last_run: Family<TaskLabels, Gauge<f64, AtomicU64>>,
    consecutive_failures: Family<TaskLabels, Gauge>,
    /// The tasks with series and their failures in a row. Its lock also orders a result's record
    /// against a deletion's forget, so a deleted task's series do not come back.
    tasks: Arc<Mutex<HashMap<TaskLabels, i64>>>,
}

impl TaskMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = TaskMetrics {
            up: Family::default(),
            last_run: Family::default(),
            consecutive_failures: Family::default(),
            tasks: Arc::default(),
        };
        registry.register(
            "task_up",
            "1 when the task's last run succeeded, 0 when it failed",
            metrics.up.clone(),
        );
        registry.register_with_unit(
            "task_last_run_timestamp",
            "When the task's last run finished, in Unix time",
            Unit::Seconds,
            metrics.last_run.clone(),
        );
        registry.register(
            "task_consecutive_failures",
            "Runs of the task in a row that failed, counted by this process (0 after a success)",
            metrics.consecutive_failures.clone(),
        );
        metrics
    }

    /// Records the result of a task's run that finished at `finished`, unless `exists` says the
    /// task is gone (checked under the lock a deletion's [`TaskMetrics::forget`] takes).
    pub fn record(
        &self,
        (namespace, name): (&str, &str),
        succeeded: bool,
        finished: SystemTime,
        exists: impl FnOnce() -> bool,
    ) {
        let mut tasks = self.tasks.lock().expect("not poisoned");
        if !exists() {
            return;
        }
        let labels = TaskLabels::new(namespace, name);
        let failures = tasks.entry(labels.clone()).or_insert(0);
        *failures = if succeeded { 0 } else { *failures + 1 };
        self.consecutive_failures
            .get_or_create(&labels)
            .set(*failures);
        self.up.get_or_create(&labels).set(i64::from(succeeded));
        let unix = finished
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.last_run.get_or_create(&labels).set(unix);
    }

    /// Removes the series of a deleted task.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut tasks = self.tasks.lock().expect("not poisoned");
        let labels = TaskLabels::new(namespace, name);
        if tasks.remove(&labels).is_some() {
            self.remove_series(&labels);
        }
    }

    /// Removes the series of every task for which `keep(namespace, name)` is false.
    pub fn retain(&self, mut keep: impl FnMut(&str, &str) -> bool) {
        let mut tasks = self.tasks.lock().expect("not poisoned");
        tasks.retain(|labels, _| {
            let kept = keep(&labels.namespace, &labels.name);
            if !kept {
                self.remove_series(labels);
            }
            kept
        });
    }

    fn remove_series(&self, labels: &TaskLabels) {
        self.up.remove(labels);
        self.last_run.remove(labels);
        self.consecutive_failures.remove(labels);
    }
}
