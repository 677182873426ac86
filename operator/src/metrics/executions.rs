//! Executions by task type and verdict, their durations, and how late scheduled runs start.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// From a quick HTTP check to a job of an hour (a task's timeout goes up to a day).
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];
/// From on time to a tick run late within a few minutes of `startingDeadlineSeconds`.
const LAG_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutionLabels {
    /// `spec.type`: cmd, get or post.
    r#type: &'static str,
    /// The engine's verdict: Succeeded, Failed or Cancelled.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

#[derive(Clone)]
pub struct ExecutionMetrics {
    executions: Family<ExecutionLabels, Counter>,
    duration: Family<TypeLabels, Histogram, fn() -> Histogram>,
    schedule_lag: Histogram,
}

impl ExecutionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ExecutionMetrics {
            executions: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            schedule_lag: Histogram::new(LAG_BUCKETS),
        };
        registry.register(
            "executions",
            "Executions that ran, per task type and verdict",
            metrics.executions.clone(),
        );
        registry.register_with_unit(
            "execution_duration",
            "How long executions took, from the first attempt's start to the end, per task type",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register_with_unit(
            "schedule_lag",
            "How long after its tick a scheduled run started",
            Unit::Seconds,
            metrics.schedule_lag.clone(),
        );
        metrics
    }

    /// Counts an execution of a `task_type` task that ended with `verdict` after `duration`.
    pub fn record(&self, task_type: &'static str, verdict: &'static str, duration: Duration) {
        self.executions
            .get_or_create(&ExecutionLabels {
                r#type: task_type,
                result: verdict,
            })
            .inc();
        self.duration
            .get_or_create(&TypeLabels { r#type: task_type })
            .observe(duration.as_secs_f64());
    }

    /// Records how long after its tick a scheduled run started (0 when it started early).
    pub fn observe_schedule_lag(&self, lag: Duration) {
        self.schedule_lag.observe(lag.as_secs_f64());
    }
}
