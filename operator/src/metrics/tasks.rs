//! Per-task gauges: whether the last run succeeded, when it finished, and how many runs in a row
//! failed. Series exist only for tasks that ran here and still exist: the task watch forgets a
//! deleted task's ([`TaskMetrics::forget`], and [`TaskMetrics::retain`] after a re-list).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
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

/// What the gauges of one task say.
#[derive(Clone, Copy, Debug)]
struct TaskState {
    up: bool,
    /// Unix seconds.
    last_run: f64,
    consecutive_failures: i64,
}

/// The tasks with series: one entry per task holds all three values (a collector encodes them
/// at each scrape), so a thousand tasks cost one label set each rather than one per gauge.
type Tasks = Arc<Mutex<HashMap<TaskLabels, TaskState>>>;

#[derive(Clone)]
pub struct TaskMetrics {
    /// Its lock also orders a result's record against a deletion's forget, so a deleted task's
    /// series do not come back.
    tasks: Tasks,
}

/// Encodes the per-task gauges from [`Tasks`] at each scrape.
#[derive(Debug)]
struct TaskCollector(Tasks);

impl Collector for TaskCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let tasks = self.0.lock().expect("not poisoned");
        let gauges: [(&str, &str, Option<Unit>); 3] = [
            (
                "task_up",
                "1 when the task's last run succeeded, 0 when it failed",
                None,
            ),
            (
                "task_last_run_timestamp",
                "When the task's last run finished, in Unix time",
                Some(Unit::Seconds),
            ),
            (
                "task_consecutive_failures",
                "Runs of the task in a row that failed, counted by this process (0 after a success)",
                None,
            ),
        ];
        for (index, (name, help, unit)) in gauges.iter().enumerate() {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            for (labels, state) in tasks.iter() {
                let metric = family.encode_family(labels)?;
                match index {
                    0 => ConstGauge::new(i64::from(state.up)).encode(metric)?,
                    1 => ConstGauge::new(state.last_run).encode(metric)?,
                    _ => ConstGauge::new(state.consecutive_failures).encode(metric)?,
                }
            }
        }
        Ok(())
    }
}

impl TaskMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let tasks = Tasks::default();
        registry.register_collector(Box::new(TaskCollector(tasks.clone())));
        TaskMetrics { tasks }
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
        let unix = finished
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let state = tasks
            .entry(TaskLabels::new(namespace, name))
            .or_insert(TaskState {
                up: succeeded,
                last_run: unix,
                consecutive_failures: 0,
            });
        state.consecutive_failures = if succeeded {
            0
        } else {
            state.consecutive_failures + 1
        };
        state.up = succeeded;
        state.last_run = unix;
    }

    /// Removes the series of a deleted task.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut tasks = self.tasks.lock().expect("not poisoned");
        tasks.remove(&TaskLabels::new(namespace, name));
    }

    /// Removes the series of every task for which `keep(namespace, name)` is false.
    pub fn retain(&self, mut keep: impl FnMut(&str, &str) -> bool) {
        let mut tasks = self.tasks.lock().expect("not poisoned");
        tasks.retain(|labels, _| keep(&labels.namespace, &labels.name));
    }
}
