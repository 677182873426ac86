//! The HTTPS server: [`TASK_PATH`] and [`WORKFLOW_PATH`] take AdmissionReviews by POST. Every
//! replica serves it, leading or not, so admission keeps working through a failover.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kube::Client;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::dependencies;
use super::review::{self, Kind, Settings};
use crate::https::{ReloadingCert, TlsListener, server_config};

/// Where the API server sends McallTask reviews.
pub const TASK_PATH: &str = "/validate-mcalltask";
/// Where the API server sends McallWorkflow reviews.
pub const WORKFLOW_PATH: &str = "/validate-mcallworkflow";

/// A review carries the object and the old one, each up to the API server's 1.5 MiB.
const MAX_BODY: usize = 8 << 20;

/// What every review needs: the operator's flags, and the client that reads the tasks a
/// McallTask's dependencies lead to (`None`: a cycle is judged within the task alone).
#[derive(Clone)]
struct Admission {
    settings: Arc<Settings>,
    client: Option<Client>,
}

/// The router, without TLS (the unit tests and the server share it).
pub fn router(settings: Settings, client: Option<Client>) -> Router {
    Router::new()
        .route(TASK_PATH, post(handle_task))
        .route(WORKFLOW_PATH, post(handle_workflow))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Admission {
            settings: Arc::new(settings),
            client,
        })
}

async fn handle_task(
    State(admission): State<Admission>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    let request = match review::parse(&body) {
        Ok(Some(request)) => request,
        Ok(None) => return respond(Kind::McallTask, review::no_request()),
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    let known = match (review::dependencies(&request), &admission.client) {
        (Some(of), Some(client)) => {
            dependencies::read(client, &of, dependencies::budget(uri.query())).await
        }
        _ => Default::default(),
    };
    let tasks = |name: &str| known.get(name).cloned();
    let answer = review::answer(Kind::McallTask, &admission.settings, &request, &tasks);
    respond(Kind::McallTask, answer)
}

async fn handle_workflow(State(admission): State<Admission>, body: Bytes) -> Response {
    match review::review(Kind::McallWorkflow, &admission.settings, &body) {
        Ok(answer) => respond(Kind::McallWorkflow, answer),
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

fn respond(
    kind: Kind,
    answer: kube::core::admission::AdmissionReview<kube::core::DynamicObject>,
) -> Response {
    if let Some(response) = answer.response.as_ref().filter(|r| !r.allowed) {
        tracing::debug!(?kind, uid = %response.uid, message = %response.result.message, "admission refused");
    }
    match serde_json::to_vec(&answer) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Serves the webhook over TLS on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    cert: Arc<ReloadingCert>,
    settings: Settings,
    client: Option<Client>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let listener = TlsListener::new(listener, Arc::new(server_config(cert)?))?;
    tracing::info!(%addr, "serving the admission webhook ({TASK_PATH}, {WORKFLOW_PATH})");
    axum::serve(listener, router(settings, client))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn post(path: &str, body: &'static str) -> (StatusCode, String) {
        let request = Request::post(path).body(Body::from(body)).unwrap();
        let response = router(Settings::default(), None)
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_BODY)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_malformed_body_is_a_bad_request_saying_so() {
        let (status, text) = post(TASK_PATH, "{").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            text.starts_with("the body is not an AdmissionReview"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_review_is_answered_in_json() {
        let (status, text) = post(
            WORKFLOW_PATH,
            r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["response"]["allowed"], false);
    }
}
