//! `/healthz` (the process serves), `/readyz` (the process takes part: it leads, or follows ready
//! to take over; a rolling update proceeds on it) and `/metrics` (Prometheus, in the OpenMetrics
//! text format; every replica serves it). With secured metrics (`crate::metrics_auth`) this
//! plain port keeps the probes only, and `/metrics` is served over HTTPS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;

use crate::metrics::{self, Metrics};

/// Set once the operator is ready to reconcile.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Whether the plain port serves `/metrics` too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainMetrics {
    Served,
    /// Served elsewhere, behind authentication: not here.
    Withheld,
}

/// `/metrics` alone, in the OpenMetrics text format.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = metrics.encode();
            async move { ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text) }
        }),
    )
}

/// The plain port's routes.
pub fn router(readiness: Readiness, metrics: Metrics, plain_metrics: PlainMetrics) -> Router {
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = readiness.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        );
    match plain_metrics {
        PlainMetrics::Served => probes.merge(metrics_router(metrics)),
        PlainMetrics::Withheld => probes,
    }
}

pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    metrics: Metrics,
    plain_metrics: PlainMetrics,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let app = router(readiness, metrics, plain_metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    match plain_metrics {
        PlainMetrics::Served => tracing::info!(%addr, "serving /healthz, /readyz and /metrics"),
        PlainMetrics::Withheld => tracing::info!(%addr, "serving /healthz and /readyz"),
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
