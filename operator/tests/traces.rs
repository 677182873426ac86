//! Traces: `mcall operator` with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a loopback OTLP/HTTP
//! receiver that decodes every export request (`POST /v1/traces`, protobuf). It sees a
//! `reconcile` and an `execution` span naming the task, under the configured service; the spans
//! still queued at SIGTERM arrive before the process exits; JSON log lines carry the trace ids of
//! the exported spans. Without an endpoint, nothing of OpenTelemetry runs.

mod common;

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use common::process::*;
use common::*;
use mcall_generated::Phase;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use serde_json::{Value, json};

/// A span as the receiver decoded it, with its resource.
#[derive(Debug, Clone)]
struct Received {
    resource: HashMap<String, String>,
    name: String,
    attributes: HashMap<String, String>,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

impl Received {
    fn names(&self, name: &str, namespace: &str, task: &str) -> bool {
        self.name == name
            && self.attributes.get("namespace").map(String::as_str) == Some(namespace)
            && self.attributes.get("task").map(String::as_str) == Some(task)
    }
}

/// Export requests as they arrive, decoded; a body that does not decode is a failure.
#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<Result<ExportTraceServiceRequest, String>>>>,
}

impl Receiver {
    /// Serves `POST /v1/traces` on a loopback port, on a thread of its own: the test's own
    /// runtime blocks while it waits for the operator.
    fn start() -> (Receiver, u16) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let receiver = Receiver::default();
        let requests = receiver.requests.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().route(
                    "/v1/traces",
                    axum::routing::post(move |body: Bytes| async move {
                        let decoded = ExportTraceServiceRequest::decode(body);
                        let status = match decoded {
                            Ok(_) => StatusCode::OK,
                            Err(_) => StatusCode::BAD_REQUEST,
                        };
                        requests
                            .lock()
                            .unwrap()
                            .push(decoded.map_err(|e| e.to_string()));
                        status
                    }),
                );
                axum::serve(listener, app).await.unwrap();
            });
        });
        (receiver, port)
    }

    fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Received> {
        let requests = self.requests.lock().unwrap();
        let mut spans = Vec::new();
        for request in requests.iter() {
            let request = request
                .as_ref()
                .unwrap_or_else(|e| panic!("an export request did not decode: {e}"));
            for resource_spans in &request.resource_spans {
                let resource = attributes(
                    resource_spans
                        .resource
                        .as_ref()
                        .map_or(&[][..], |r| &r.attributes),
                );
                for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                    spans.push(Received {
                        resource: resource.clone(),
                        name: span.name.clone(),
                        attributes: attributes(&span.attributes),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                    });
                }
            }
        }
        spans
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `mcall operator` exporting to `receiver_port` every `delay_ms`, with JSON logs in `log`.
fn traced_operator(
    env: &TestEnv,
    port: u16,
    receiver_port: u16,
    delay_ms: u32,
    log: &std::path::Path,
) -> Child {
    operator_command(env, port, 10)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{receiver_port}"),
        )
        .env("OTEL_SERVICE_NAME", "mcall-test")
        // OTEL_SERVICE_NAME wins over a service.name here; the other attributes are kept.
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=ci,service.name=other",
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", delay_ms.to_string())
        .env("LOG_FORMAT", "json")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("mcall operator starts")
}

/// The names of the process's threads.
fn threads(child: &Child) -> Vec<String> {
    let dir = format!("/proc/{}/task", child.id());
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

fn json_lines(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test]
async fn reconciles_and_executions_are_exported_as_spans_naming_the_task() {
    let env = test_env("traces").await;
    let (receiver, receiver_port) = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    let port = free_port();
    let mut operator = traced_operator(&env, port, receiver_port, 200, &log);
    wait_ready(port);
    assert!(threads(&operator).contains(&"mcall-traces".to_owned()));
    create_task(
        &env,
        "traced",
        json!({"type": "cmd", "input": "echo traced"}),
    )
    .await;
    wait_for_phase(&env, "traced", Phase::Succeeded, Duration::from_secs(30)).await;
    let ns = env.namespace.as_str();
    eventually(
        Duration::from_secs(30),
        "a reconcile and an execution span",
        || {
            let spans = receiver.spans();
            spans.iter().any(|s| s.names("reconcile", ns, "traced"))
                && spans.iter().any(|s| s.names("execution", ns, "traced"))
        },
    )
    .await;
    let spans = receiver.spans();
    let reconcile = spans
        .iter()
        .find(|s| s.names("reconcile", ns, "traced"))
        .unwrap();
    assert_eq!(reconcile.attributes["kind"], "McallTask");
    let execution = spans
        .iter()
        .find(|s| s.names("execution", ns, "traced"))
        .unwrap();
    assert_eq!(execution.attributes["verdict"], "Succeeded");
    for span in [reconcile, execution] {
        assert_eq!(span.resource["service.name"], "mcall-test", "{span:?}");
        assert_eq!(span.resource["deployment.environment.name"], "ci");
        assert_eq!(span.trace_id.len(), 32);
        // Roots: not children of spans that are not exported (kube-runtime's, say).
        assert_eq!(span.parent_span_id, "", "{span:?}");
    }
    signal(&operator, "-TERM");
    assert!(wait_exit(&mut operator, Duration::from_secs(15)).success());

    // The log lines logged in those spans name their traces.
    let lines = json_lines(&log);
    let traces_of = |name: &str| -> Vec<&str> {
        spans
            .iter()
            .filter(|s| s.names(name, ns, "traced"))
            .map(|s| s.trace_id.as_str())
            .collect()
    };
    let engine_line = lines
        .iter()
        .find(|l| l["span"]["name"] == "execution" && l["span"]["task"] == "traced")
        .expect("the engine logs in the execution span (DEBUG)");
    assert_eq!(
        engine_line["trace_id"],
        execution.trace_id.as_str(),
        "{engine_line}"
    );
    assert_eq!(engine_line["span_id"], execution.span_id.as_str());
    let planned = lines
        .iter()
        .filter(|l| l["message"] == "planned" && l["name"] == "traced")
        .collect::<Vec<_>>();
    assert!(!planned.is_empty());
    for line in planned {
        let trace_id = line["trace_id"].as_str().unwrap_or_default();
        assert!(
            receiver
                .spans()
                .iter()
                .any(|s| s.trace_id == trace_id && s.name == "reconcile"),
            "a reconcile's line names an exported reconcile trace: {line}; reconcile traces: {:?}",
            traces_of("reconcile")
        );
    }
}

#[tokio::test]
async fn sigterm_flushes_the_spans_still_queued() {
    let env = test_env("traces-flush").await;
    let (receiver, receiver_port) = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    let port = free_port();
    // Ten minutes between exports: whatever arrives, the shutdown sent.
    let mut operator = traced_operator(&env, port, receiver_port, 600_000, &log);
    wait_ready(port);
    create_task(
        &env,
        "queued",
        json!({"type": "cmd", "input": "echo queued"}),
    )
    .await;
    wait_for_phase(&env, "queued", Phase::Succeeded, Duration::from_secs(30)).await;
    assert_eq!(
        receiver.request_count(),
        0,
        "nothing exported before the shutdown"
    );
    signal(&operator, "-TERM");
    assert!(wait_exit(&mut operator, Duration::from_secs(15)).success());
    // The process waited for the export before it exited: no waiting here.
    let spans = receiver.spans();
    let ns = env.namespace.as_str();
    assert!(
        spans.iter().any(|s| s.names("execution", ns, "queued")),
        "the execution span was flushed: {spans:#?}"
    );
    assert!(spans.iter().any(|s| s.names("reconcile", ns, "queued")));
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.contains("trace export failed"), "{logs}");
}

#[tokio::test]
async fn without_an_endpoint_nothing_of_opentelemetry_runs() {
    let env = test_env("traces-off").await;
    let port = free_port();
    let mut operator = operator_command(&env, port, 10)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env("OTEL_SERVICE_NAME", "mcall-test")
        .stderr(Stdio::null())
        .spawn()
        .expect("mcall operator starts");
    wait_ready(port);
    let names = threads(&operator);
    assert!(!names.iter().any(|n| n.contains("traces")), "{names:?}");
    signal(&operator, "-TERM");
    assert!(wait_exit(&mut operator, Duration::from_secs(15)).success());
}

#[test]
fn a_trace_setting_that_cannot_work_stops_the_operator_at_start_with_exit_2() {
    for (name, value, said) in [
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "grpc",
            "OTEL_EXPORTER_OTLP_PROTOCOL is \"grpc\"",
        ),
        (
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "10s",
            "OTEL_EXPORTER_OTLP_TIMEOUT \"10s\"",
        ),
    ] {
        let out = std::process::Command::new(MCALL)
            .args(["operator", "--kubeconfig", "/nonexistent/kubeconfig"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
            .env(name, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.starts_with(&format!("error: {said}")), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let out = std::process::Command::new(MCALL)
        .args(["operator", "--kubeconfig", "/nonexistent/kubeconfig"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "otel-collector:4318")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_ENDPOINT \"otel-collector:4318\""),
        "{stderr}"
    );
}
