//! Secret values never appear in outputs, messages, per-input outputs or retry events.

mod common;

use std::sync::Mutex;

use common::{TestServer, limits, request, run};
use mcall_engine::{EngineEvent, Limits, TaskKind, TaskPlan, execute};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "hunter2-s3cr3t";

#[tokio::test]
async fn command_output_and_messages_are_redacted() {
    let mut req = request(
        TaskKind::Cmd,
        format!("echo token={SECRET}; echo $PASSWORD; exit 1"),
    );
    req.environment.insert("PASSWORD".into(), SECRET.into());
    req.redact = vec![SECRET.into()];
    let outcome = run(req).await;
    assert_eq!(outcome.output, "token=***\n***\n");
    let message = outcome.error_message.unwrap();
    assert!(!message.contains(SECRET), "{message}");
    assert!(message.contains("***"), "{message}");
}

#[tokio::test]
async fn per_input_outputs_and_retry_events_are_redacted() {
    let mut req = request(
        TaskKind::Cmd,
        format!(r#"[{{"input": "echo {SECRET}"}}, {{"input": "echo {SECRET} >&2; exit 1"}}]"#),
    );
    req.redact = vec![SECRET.into(), String::new()];
    req.retry_count = 1;
    let plan = TaskPlan::compile(req).unwrap();
    let events = Mutex::new(Vec::new());
    let outcome = execute(&plan, &limits(), CancellationToken::new(), &|e| {
        events.lock().unwrap().push(e)
    })
    .await;
    let everything = format!("{outcome:?} {:?}", events.lock().unwrap());
    assert!(!everything.contains(SECRET), "{everything}");
    assert_eq!(outcome.inputs[0].output, "***\n");
    let EngineEvent::Retrying { reason, .. } = &events.lock().unwrap()[0];
    assert!(reason.contains("***"), "{reason}");
}

#[tokio::test]
async fn http_bodies_are_redacted() {
    let server = TestServer::start().await;
    let mut req = request(TaskKind::Post, server.url("/echo"));
    req.http.body = Some(format!("password={SECRET}"));
    req.http
        .headers
        .insert("Authorization".into(), format!("Bearer {SECRET}"));
    req.redact = vec![SECRET.into()];
    let outcome = run(req).await;
    // The server got the real values; the outcome shows none.
    let recorded = &server.requests()[0];
    assert_eq!(
        recorded.headers["authorization"],
        format!("Bearer {SECRET}")
    );
    assert_eq!(outcome.output, "password=***");
}

#[tokio::test]
async fn a_secret_cut_by_the_capture_does_not_leak() {
    // Keep only output_cap + the secret's length (24 bytes): the capture ends inside the second
    // occurrence, after the first one shrank to `***`.
    let limits = Limits {
        output_cap: 10,
        input_output_cap: 0,
        match_window: 0,
        ..limits()
    };
    let mut req = request(TaskKind::Cmd, format!("printf '{SECRET}xx{SECRET}tail'"));
    req.redact = vec![SECRET.into()];
    let plan = TaskPlan::compile(req).unwrap();
    let outcome = execute(&plan, &limits, CancellationToken::new(), &|_| {}).await;
    assert!(!outcome.output.contains("hunt"), "{}", outcome.output);
    assert!(
        outcome.output.starts_with("***xx\n…[truncated "),
        "{}",
        outcome.output
    );
}
