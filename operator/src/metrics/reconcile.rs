//! Reconciles per kind: how many, how many failed (by error kind), how long they took.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Reconciles are mostly cache reads and at most a few API calls: 1 ms to 10 s.
const DURATION_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    /// `crate::Error::metric_label()`: the failed operation, never the message.
    error: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

#[derive(Clone)]
pub struct ReconcileMetrics {
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabels, Histogram, fn() -> Histogram>,
}

impl ReconcileMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ReconcileMetrics {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
        };
        registry.register(
            "reconciles",
            "Reconciles started, per kind",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, per kind and error kind (the failed operation)",
            metrics.errors.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "How long reconciles took, per kind",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        metrics
    }

    /// Counts a reconcile of `kind`; the returned guard records its duration when dropped.
    pub fn count_and_measure(&self, kind: &'static str) -> ReconcileTimer {
        let labels = KindLabels { kind };
        self.reconciles.get_or_create(&labels).inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.get_or_create_owned(&labels),
        }
    }

    /// Counts a failed reconcile of `kind`; `error` is a bounded label (`Error::metric_label`).
    pub fn count_error(&self, kind: &'static str, error: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { kind, error })
            .inc();
    }
}

/// Records the time from its creation to its drop, however the reconcile ends.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
