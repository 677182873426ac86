//! get/post tasks through the operator against a loopback HTTP server started by the test:
//! status codes, body and header validation, POST bodies, and a header filled from a Secret.

mod common;

use std::time::Duration;

use common::*;
use mcall_generated::Phase;
use serde_json::json;

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn get_checks_status_body_and_headers() {
    let env = test_env("http-get").await;
    let op = start_operator(&env, config_for(&env));
    let (port, _) = http_server(200, "{\"status\": \"ok\"}").await;
    let url = format!("http://127.0.0.1:{port}/healthz");
    create_task(&env, "healthy", json!({"type": "get", "input": url,
        "httpValidation": {"expectedStatusCodes": [200], "expectedResponseBody": "\"ok\"", "responseHeaders": {"X-Service": "regex:^mcall-"}},
        "outputValidation": {"jsonPath": "$.status", "expectedJsonValue": "ok"}})).await;
    create_task(
        &env,
        "wrong-code",
        json!({"type": "get", "input": url, "httpValidation": {"expectedStatusCodes": [204]}}),
    )
    .await;
    let ok = wait_for_phase(&env, "healthy", Phase::Succeeded, T)
        .await
        .status
        .unwrap();
    assert_eq!(ok.http_status_code, Some(200));
    let response_time = ok.response_time_ms.expect("the response time is recorded");
    assert!(
        (0..=ok.execution_time_ms.unwrap()).contains(&response_time),
        "{response_time} ms within the run's {:?} ms",
        ok.execution_time_ms
    );
    let bad = wait_for_phase(&env, "wrong-code", Phase::Failed, T)
        .await
        .status
        .unwrap();
    assert_eq!(bad.http_status_code, Some(200));
    assert!(
        bad.message.unwrap().contains("204"),
        "the message names the expected code"
    );
    op.stop().await;
}

#[tokio::test]
async fn a_server_error_fails_and_post_sends_body_and_secret_header() {
    let env = test_env("http-post").await;
    create_secret(&env, "api", "token", "tok-998877").await;
    let op = start_operator(&env, config_for(&env));
    let (down, _) = http_server(503, "maintenance").await;
    create_task(
        &env,
        "down",
        json!({"type": "get", "input": format!("http://127.0.0.1:{down}/")}),
    )
    .await;
    let (port, seen) = http_server(201, "created").await;
    create_task(&env, "poster", json!({"type": "post", "input": format!("http://127.0.0.1:{port}/items"),
        "body": "{\"name\": \"x\"}", "headers": {"Authorization": "Bearer $(TOKEN)", "Content-Type": "application/json"},
        "environmentFrom": [{"name": "TOKEN", "secretKeyRef": {"name": "api", "key": "token"}}],
        "expect": "201"})).await;
    let failed = wait_for_phase(&env, "down", Phase::Failed, T)
        .await
        .status
        .unwrap();
    assert_eq!(failed.result.unwrap().error_code.as_deref(), Some("503"));
    let posted = wait_for_phase(&env, "poster", Phase::Succeeded, T)
        .await
        .status
        .unwrap();
    assert_eq!(posted.http_status_code, Some(201));
    let requests = seen.lock().unwrap().clone();
    let request = requests.first().expect("the server got the POST");
    assert!(request.starts_with("POST /items"), "{request}");
    assert!(request.contains("{\"name\": \"x\"}"), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: bearer tok-998877"),
        "{request}"
    );
    assert!(
        !serde_json::to_string(&posted_status_text(&env).await)
            .unwrap()
            .contains("tok-998877")
    );
    op.stop().await;
}

async fn posted_status_text(env: &TestEnv) -> serde_json::Value {
    serde_json::to_value(env.tasks.get("poster").await.unwrap().status).unwrap()
}
