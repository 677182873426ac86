//! get/post tasks through the operator against a loopback HTTP server started by the test:
//! status codes, body and header validation, POST bodies, and a header filled from a Secret.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use mcall_generated::Phase;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(30);

/// Answers every request with `status` and `body`, and keeps the raw requests it received.
async fn serve(status: u16, body: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 16 * 1024];
                let mut request = Vec::new();
                // Read headers, then as much body as Content-Length says.
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&request).into_owned());
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nX-Service: mcall-test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn get_checks_status_body_and_headers() {
    let env = test_env("http-get").await;
    let op = start_operator(&env, config_for(&env));
    let (port, _) = serve(200, "{\"status\": \"ok\"}").await;
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
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "api"}, "stringData": {"token": "tok-998877"}}),
    )
    .unwrap();
    kube::Api::<Secret>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let op = start_operator(&env, config_for(&env));
    let (down, _) = serve(503, "maintenance").await;
    create_task(
        &env,
        "down",
        json!({"type": "get", "input": format!("http://127.0.0.1:{down}/")}),
    )
    .await;
    let (port, seen) = serve(201, "created").await;
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
