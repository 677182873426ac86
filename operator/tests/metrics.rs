//! `/metrics` of the `mcall` binary, scraped while tasks pass and fail: the names and labels the
//! README documents, with values that move with the executions.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MCALL: &str = env!("CARGO_BIN_EXE_mcall");
const T: Duration = Duration::from_secs(30);

/// `mcall operator` for the test's namespace (cmd tasks allowed there), killed when dropped.
struct OperatorProcess(Child);

impl OperatorProcess {
    fn spawn(env: &TestEnv, port: u16) -> Self {
        let child = Command::new(MCALL)
            .args(["operator", "--kubeconfig"])
            .arg(plane().kubeconfig_path())
            .args(["--namespaces", &env.namespace])
            .args(["--command-namespaces", &env.namespace])
            .args(["--port", &port.to_string(), "--bind-address", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mcall operator starts");
        OperatorProcess(child)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET of `path` on the operator's port: (status, Content-Type, body), or `None` when nothing
/// answers yet. Async, so the loopback servers the tasks call keep answering meanwhile.
async fn http_get(port: u16, path: &str) -> Option<(u16, String, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    Some((status, content_type, body.to_owned()))
}

async fn scrape(port: u16) -> String {
    let (status, content_type, body) = http_get(port, "/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    body
}

/// The value of the sample `series` (name with labels, exactly as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// What a series' value should be.
#[derive(Clone, Copy, Debug)]
enum Want {
    Is(f64),
    AtLeast(f64),
}

impl Want {
    fn holds(self, value: f64) -> bool {
        match self {
            Want::Is(want) => value == want,
            Want::AtLeast(want) => value >= want,
        }
    }
}

/// Scrapes until every series has the value it should, or fails after `T` with the last scrape.
async fn scrape_until(port: u16, what: &str, wants: &[(&str, Want)]) -> String {
    let deadline = Instant::now() + T;
    loop {
        let text = scrape(port).await;
        let holds =
            |(series, want): &(&str, Want)| value(&text, series).is_some_and(|v| want.holds(v));
        if wants.iter().all(holds) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + T;
    while http_get(port, "/readyz").await.map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "/readyz never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A one-shot get that passes, one that fails (500), a cmd that passes, and a get on
/// `@every 1s`.
async fn create_tasks(env: &TestEnv, ok: u16, broken: u16) {
    let get = |port: u16| json!({"type": "get", "input": format!("http://127.0.0.1:{port}/")});
    create_task(env, "passing", get(ok)).await;
    create_task(env, "failing", get(broken)).await;
    create_task(env, "true", json!({"type": "cmd", "input": "true"})).await;
    let mut ticking = get(ok);
    ticking["schedule"] = json!("@every 1s");
    create_task(env, "ticking", ticking).await;
}

/// Deletes the task and waits until its series are gone from the scrape.
async fn delete_and_await_series_gone(env: &TestEnv, port: u16, name: &str) -> String {
    env.tasks
        .delete(name, &Default::default())
        .await
        .expect("the task is deleted");
    let deadline = Instant::now() + T;
    loop {
        let text = scrape(port).await;
        if !text.contains(&format!("name=\"{name}\"")) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted task's series stayed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn metrics_count_reconciles_executions_api_requests_and_follow_each_task() {
    let env = test_env("metrics").await;
    let (ok, _) = http_server(200, "ok").await;
    let (broken, _) = http_server(500, "broken").await;
    let port = free_port();
    let _operator = OperatorProcess::spawn(&env, port);
    wait_ready(port).await;

    let text = scrape(port).await;
    let build = format!(
        "mcall_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&text, &build), Some(1.0), "{text}");
    assert_eq!(value(&text, "mcall_leader"), Some(1.0), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");

    create_tasks(&env, ok, broken).await;
    let ns = &env.namespace;
    let task = |metric: &str, name: &str| format!("{metric}{{namespace=\"{ns}\",name=\"{name}\"}}");
    let up = |name| task("mcall_task_up", name);
    let failures = |name| task("mcall_task_consecutive_failures", name);
    let last_run = task("mcall_task_last_run_timestamp_seconds", "passing");
    let get_ok = "mcall_executions_total{type=\"get\",result=\"Succeeded\"}";
    let lags = "mcall_schedule_lag_seconds_count";
    let text = scrape_until(
        port,
        "the tasks' results",
        &[
            (&up("passing"), Want::Is(1.0)),
            (&up("failing"), Want::Is(0.0)),
            (&up("true"), Want::Is(1.0)),
            (&up("ticking"), Want::Is(1.0)),
            (&failures("passing"), Want::Is(0.0)),
            (&failures("failing"), Want::Is(1.0)),
            (&last_run, Want::AtLeast(unix_now() - 60.0)),
            // passing, and at least one tick
            (get_ok, Want::AtLeast(2.0)),
            (
                "mcall_executions_total{type=\"get\",result=\"Failed\"}",
                Want::Is(1.0),
            ),
            (
                "mcall_executions_total{type=\"cmd\",result=\"Succeeded\"}",
                Want::Is(1.0),
            ),
            (
                "mcall_execution_duration_seconds_count{type=\"get\"}",
                Want::AtLeast(3.0),
            ),
            (
                "mcall_execution_duration_seconds_count{type=\"cmd\"}",
                Want::Is(1.0),
            ),
            (lags, Want::AtLeast(1.0)),
            (
                "mcall_reconciles_total{kind=\"McallTask\"}",
                Want::AtLeast(4.0),
            ),
            (
                "mcall_reconcile_duration_seconds_count{kind=\"McallTask\"}",
                Want::AtLeast(4.0),
            ),
            (
                "mcall_api_requests_total{verb=\"list\",code=\"200\"}",
                Want::AtLeast(1.0),
            ),
            (
                "mcall_api_requests_total{verb=\"watch\",code=\"200\"}",
                Want::AtLeast(1.0),
            ),
            // status writes (server-side apply)
            (
                "mcall_api_requests_total{verb=\"patch\",code=\"200\"}",
                Want::AtLeast(4.0),
            ),
            // Events
            (
                "mcall_api_requests_total{verb=\"create\",code=\"201\"}",
                Want::AtLeast(1.0),
            ),
        ],
    )
    .await;
    assert!(value(&text, &last_run).unwrap() <= unix_now(), "{text}");

    // The schedule goes on: the counts move with the runs.
    let (runs, lagged) = (value(&text, get_ok).unwrap(), value(&text, lags).unwrap());
    scrape_until(
        port,
        "more ticks counted",
        &[
            (get_ok, Want::AtLeast(runs + 2.0)),
            (lags, Want::AtLeast(lagged + 2.0)),
        ],
    )
    .await;

    // A deleted task's series go with it; the others stay.
    let text = delete_and_await_series_gone(&env, port, "failing").await;
    assert_eq!(value(&text, &up("passing")), Some(1.0), "{text}");
}
