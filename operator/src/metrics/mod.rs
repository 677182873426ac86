//! The operator's Prometheus metrics, served as `/metrics` (OpenMetrics text) by every replica.
//!
//! One struct per group, each registering itself (`register(&mut Registry) -> Self`): reconciles
//! ([`reconcile`]), executions and schedule lag ([`executions`]), the per-task gauges
//! ([`tasks`]), API requests ([`api`], a tower layer on the kube client), plus `mcall_leader` and
//! `mcall_build_info` here. Label values are bounded: kinds, verbs, codes, task types, verdicts,
//! error kinds, and the namespace and name of tasks that exist (a deleted task's series go).
//! The README's "Metrics" section documents every name; `tests` below holds them to it.

pub mod api;
pub mod executions;
pub mod reconcile;
pub mod tasks;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use api::{ApiMetrics, ApiMetricsLayer};
pub use executions::ExecutionMetrics;
pub use reconcile::{ReconcileMetrics, ReconcileTimer};
pub use tasks::TaskMetrics;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of the process. Cheap to clone: the registry and each metric are shared.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reconcile: ReconcileMetrics,
    pub executions: ExecutionMetrics,
    pub tasks: TaskMetrics,
    pub api: ApiMetrics,
    leader: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mcall");
        let reconcile = ReconcileMetrics::register(&mut registry);
        let executions = ExecutionMetrics::register(&mut registry);
        let tasks = TaskMetrics::register(&mut registry);
        let api = ApiMetrics::register(&mut registry);
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process leads: watches, reconciles and executes; else 0",
            leader.clone(),
        );
        registry.register(
            "build",
            "The operator's version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Metrics {
            registry: Arc::new(registry),
            reconcile,
            executions,
            tasks,
            api,
            leader,
        }
    }
}

impl Metrics {
    /// Called by the runtime when this process starts or stops leading (running the controllers).
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]), ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The tower layer that counts the kube client's requests.
    pub fn api_layer(&self) -> ApiMetricsLayer {
        ApiMetricsLayer::new(self.api.clone())
    }
}

#[cfg(test)]
mod tests;
