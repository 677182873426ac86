//! The HTTPS server of the secured metrics: `/metrics` behind the [`Gate`], nothing else
//! (`/healthz` and `/readyz` stay on the plain port, for the kubelet).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::decide::{bearer_token, refusal, refusal_response};
use super::gate::{Gate, Reviewer};
use crate::https::TlsListener;
use crate::metrics::Metrics;
use crate::server::metrics_router;

/// `/metrics`, answered only when the gate allows (the unit tests and the server share it).
pub fn router<R: Reviewer>(metrics: Metrics, gate: Arc<Gate<R>>) -> Router {
    metrics_router(metrics).layer(from_fn_with_state(gate, guard::<R>))
}

async fn guard<R: Reviewer>(
    State(gate): State<Arc<Gate<R>>>,
    request: Request,
    next: Next,
) -> Response {
    let token = bearer_token(request.headers().get(header::AUTHORIZATION)).map(str::to_owned);
    let outcome = gate.check(token.as_deref(), Instant::now()).await;
    match refusal(&outcome) {
        None => next.run(request).await,
        Some((status, message)) => {
            if status.is_server_error() {
                tracing::warn!(%status, %message, "metrics: a scrape could not be reviewed");
            }
            refusal_response(status, message)
        }
    }
}

/// Serves the secured metrics on `listener` with `tls` until `shutdown`.
pub async fn serve<R: Reviewer>(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    metrics: Metrics,
    gate: Arc<Gate<R>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let listener = TlsListener::new(listener, Arc::new(tls))?;
    tracing::info!(%addr, "serving /metrics over HTTPS to authenticated and authorized callers");
    axum::serve(listener, router(metrics, gate))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    use super::super::cache::CachePolicy;
    use super::super::gate::fake::Fake;
    use super::*;

    async fn scrape(token: Option<&str>) -> (StatusCode, String) {
        let gate = Arc::new(Gate::new(Fake::default(), CachePolicy::default()));
        let mut request = axum::http::Request::get("/metrics");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = router(Metrics::default(), gate)
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn only_an_allowed_token_gets_the_metrics() {
        let (status, body) = scrape(None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(scrape(Some("unknown")).await.0, StatusCode::UNAUTHORIZED);
        let (status, body) = scrape(Some("forbidden")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("metrics-reader"), "{body}");
        let (status, body) = scrape(Some("allowed")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("mcall_build_info"), "{body}");
        let (status, body) = scrape(Some("broken")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(!body.contains("mcall_build_info"), "{body}");
    }
}
