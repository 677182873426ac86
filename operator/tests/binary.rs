//! The `mcall` binary: `mcall run -f` exit codes, and `mcall operator` as a process — health
//! endpoints, graceful SIGTERM, and crashes (SIGKILL) while a task runs.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::*;
use common::*;
use mcall_generated::Phase;
use serde_json::json;

fn write_task(dir: &tempfile::TempDir, name: &str, spec: serde_json::Value) -> std::path::PathBuf {
    let path = dir.path().join(format!("{name}.yaml"));
    let doc = json!({"apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "metadata": {"name": name}, "spec": spec});
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
    path
}

#[test]
fn mcall_run_exits_0_on_success_and_1_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write_task(
        &dir,
        "ok",
        json!({"type": "cmd", "input": "echo fine", "expect": "fine"}),
    );
    let out = Command::new(MCALL)
        .args(["run", "-f"])
        .arg(&ok)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Succeeded"));

    let bad = write_task(
        &dir,
        "bad",
        json!({"type": "cmd", "input": "echo fine", "expect": "other"}),
    );
    let out = Command::new(MCALL)
        .args(["run", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    let invalid = write_task(
        &dir,
        "invalid",
        json!({"type": "get", "input": "not-a-url"}),
    );
    let out = Command::new(MCALL)
        .args(["run", "-f"])
        .arg(&invalid)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.input"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mcall run -f path` with RUST_BACKTRACE=1, as in many Rust users' shells: (exit code, stderr).
fn run_with_backtrace_on(path: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(MCALL)
        .args(["run", "-f"])
        .arg(path)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A mistake in the input is one line on stderr, `error: <cause>: <cause>…`, exit code 2 (1 is a
/// task that ran and failed), and never a backtrace.
fn assert_one_line_error(path: &std::path::Path, causes: &[&str]) {
    let (code, stderr) = run_with_backtrace_on(path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        !stderr.to_lowercase().contains("stack backtrace"),
        "a backtrace:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for cause in causes {
        assert!(lines[0].contains(cause), "`{cause}` missing from: {stderr}");
    }
}

#[test]
fn mcall_run_reports_a_missing_file_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    assert_one_line_error(
        &missing,
        &[&format!("reading {}", missing.display()), "No such file"],
    );
}

#[test]
fn mcall_run_reports_malformed_yaml_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("malformed.yaml");
    std::fs::write(
        &path,
        "apiVersion: mcall.tz.io/v1\nkind: McallTask\nmetadata: {name: x\nspec: [\n",
    )
    .unwrap();
    assert_one_line_error(&path, &["is not a McallTask", "line 4"]);
}

#[test]
fn mcall_run_reports_an_invalid_spec_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_task(
        &dir,
        "bad-regex",
        json!({"type": "cmd", "input": "echo fine", "expect": "regex:(unclosed"}),
    );
    assert_one_line_error(
        &path,
        &["has an invalid spec", "spec.expect", "invalid regex"],
    );
}

#[test]
fn mcall_operator_reports_a_missing_kubeconfig_on_one_line() {
    let out = Command::new(MCALL)
        .args(["operator", "--kubeconfig", "/nonexistent/kubeconfig"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.to_lowercase().contains("stack backtrace"),
        "{stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: reading /nonexistent/kubeconfig: ")
            && last.contains("No such file"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("error: ").count(), 1, "{stderr}");
}

#[tokio::test]
async fn json_logs_name_the_task_and_never_show_a_secret() {
    let env = test_env("bin-logs").await;
    create_secret(&env, "creds", "token", "l0g-s3cr3t-7").await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("operator.log");
    let port = free_port();
    let mut operator = operator_command(&env, port, 10)
        .env("LOG_FORMAT", "json")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("mcall operator starts");
    wait_ready(port);
    create_task(
        &env,
        "leaky",
        json!({"type": "cmd", "input": "echo token=$TOKEN; exit 1",
               "environmentFrom": [{"name": "TOKEN", "secretKeyRef": {"name": "creds", "key": "token"}}]}),
    )
    .await;
    wait_for_phase(&env, "leaky", Phase::Failed, Duration::from_secs(30)).await;
    signal(&operator, "-TERM");
    assert!(wait_exit(&mut operator, Duration::from_secs(15)).success());
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !logs.contains("l0g-s3cr3t-7"),
        "a secret reached the log:\n{logs}"
    );
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let about_task =
        |l: &&serde_json::Value| l["namespace"] == env.namespace.as_str() && l["name"] == "leaky";
    assert!(
        lines
            .iter()
            .any(|l| about_task(&l) && l["message"] == "execution finished"),
        "the controller's lines carry namespace and name:\n{logs}"
    );
    // The engine's own lines (DEBUG) carry the task through their span.
    assert!(
        lines.iter().any(|l| l["message"] == "input finished"
            && l["span"]["namespace"] == env.namespace.as_str()
            && l["span"]["task"] == "leaky"),
        "the engine's lines name the task:\n{logs}"
    );
}

#[tokio::test]
async fn sigterm_cancels_what_outlives_the_shutdown_grace() {
    let env = test_env("bin-grace").await;
    let port = free_port();
    let mut operator = operator_command(&env, port, 1)
        .stderr(Stdio::null())
        .spawn()
        .expect("mcall operator starts");
    wait_ready(port);
    let marker = format!("4{}.5", std::process::id());
    create_task(
        &env,
        "endless",
        json!({"type": "cmd", "input": format!("sleep {marker}"), "timeout": 600}),
    )
    .await;
    wait_for_phase(&env, "endless", Phase::Running, Duration::from_secs(30)).await;
    // A 1 s grace, then the cancel: the 600 s command does not hold the exit.
    signal(&operator, "-TERM");
    assert!(wait_exit(&mut operator, Duration::from_secs(15)).success());
    assert!(!process_alive(&marker), "the command's process was killed");
    let task = wait_for_phase(&env, "endless", Phase::Failed, Duration::from_secs(10)).await;
    let status = task.status.unwrap();
    assert_eq!(
        status.result.unwrap().error_code.as_deref(),
        Some("Cancelled"),
        "{:?}",
        status.message
    );
}

#[tokio::test]
async fn sigterm_lets_a_running_execution_finish() {
    let env = test_env("bin-term").await;
    let port = free_port();
    let mut operator = spawn_operator(&env, port);
    wait_ready(port);
    create_task(
        &env,
        "finishing",
        json!({"type": "cmd", "input": "sleep 2; echo done"}),
    )
    .await;
    wait_for_phase(&env, "finishing", Phase::Running, Duration::from_secs(30)).await;
    signal(&operator, "-TERM");
    let task = wait_for_phase(&env, "finishing", Phase::Succeeded, Duration::from_secs(30)).await;
    assert!(
        task.status
            .unwrap()
            .result
            .unwrap()
            .output
            .unwrap()
            .contains("done")
    );
    assert!(wait_exit(&mut operator, Duration::from_secs(15)).success());
}

#[tokio::test]
async fn a_crash_while_running_leaves_the_task_failed_as_interrupted_not_stuck() {
    let env = test_env("bin-crash").await;
    let port = free_port();
    let mut operator = spawn_operator(&env, port);
    wait_ready(port);
    create_task(
        &env,
        "interrupted",
        json!({"type": "cmd", "input": "sleep 30", "timeout": 60}),
    )
    .await;
    wait_for_phase(&env, "interrupted", Phase::Running, Duration::from_secs(30)).await;
    signal(&operator, "-KILL");
    operator.wait().unwrap();

    let port = free_port();
    let mut restarted = spawn_operator(&env, port);
    wait_ready(port);
    let task = wait_for_phase(&env, "interrupted", Phase::Failed, Duration::from_secs(30)).await;
    let status = task.status.unwrap();
    assert_eq!(
        status.result.unwrap().error_code.as_deref(),
        Some("Interrupted")
    );
    assert!(status.message.unwrap().contains("not re-run"));
    signal(&restarted, "-TERM");
    restarted.wait().unwrap();
}

#[tokio::test]
async fn a_crash_within_a_runs_first_second_leaves_no_trace_and_the_run_happens_again() {
    let env = test_env("bin-early-crash").await;
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let port = free_port();
    let mut operator = spawn_operator(&env, port);
    wait_ready(port);
    create_task(
        &env,
        "short",
        json!({"type": "cmd", "input": format!("echo run >> {}; sleep 0.7", runs.display())}),
    )
    .await;
    let run_count = || {
        std::fs::read_to_string(&runs)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while run_count() == 0 {
        assert!(Instant::now() < deadline, "the task never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&operator, "-KILL");
    operator.wait().unwrap();
    let task = env.tasks.get("short").await.unwrap();
    let status = task.status.unwrap_or_default();
    assert_eq!(
        (status.phase, status.observed_generation),
        (Some(Phase::Pending), None),
        "a run shorter than a second writes nothing before its result (Pending is the API server's default)"
    );

    let port = free_port();
    let mut restarted = spawn_operator(&env, port);
    wait_ready(port);
    let task = wait_for_phase(&env, "short", Phase::Succeeded, Duration::from_secs(30)).await;
    assert_eq!(run_count(), 2, "run again after the crash, once");
    let status = task.status.unwrap();
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    signal(&restarted, "-TERM");
    restarted.wait().unwrap();
}

#[tokio::test]
async fn a_crash_never_runs_a_claimed_tick_twice_and_the_schedule_goes_on() {
    let env = test_env("bin-sched-crash").await;
    let (http, hits) = http_server(200, "ok").await;
    let port = free_port();
    let mut operator = spawn_operator(&env, port);
    wait_ready(port);
    create_task(
        &env,
        "counted",
        json!({"type": "get", "input": format!("http://127.0.0.1:{http}/"), "schedule": "@every 1s",
        "startingDeadlineSeconds": 30, "successfulRunsHistoryLimit": 100, "failedRunsHistoryLimit": 100}),
    )
    .await;
    let runs = |s: &mcall_generated::McallTaskStatus| s.history.as_ref().map_or(0, Vec::len);
    wait_for(
        &env,
        "counted",
        Duration::from_secs(30),
        "runs, and the next tick claimed",
        |s| runs(s) >= 2 && s.claimed_tick.is_some(),
    )
    .await;
    signal(&operator, "-KILL");
    operator.wait().unwrap();
    let crashed = k8s_openapi::jiff::Timestamp::now();
    // Down until every tick the crashed operator had claimed or announced has come: the restart
    // then judges a claimed tick that is past (run already? never twice). A wait for a known
    // instant, read from the status, not a guess.
    let left = env.tasks.get("counted").await.unwrap().status.unwrap();
    let known = [
        &left.claimed_tick,
        &left.current_run,
        &left.next_schedule_time,
    ]
    .into_iter()
    .flatten()
    .map(|t| t.0)
    .max()
    .expect("the crashed operator left the next tick in the status");
    let until = known.duration_since(k8s_openapi::jiff::Timestamp::now());
    if let Ok(until) = Duration::try_from(until) {
        tokio::time::sleep(until + Duration::from_millis(100)).await;
    }

    let port = free_port();
    let mut restarted = spawn_operator(&env, port);
    wait_ready(port);
    // The schedule goes on: ticks after the crash run (two, so not only the claimed one).
    let after_crash = |s: &mcall_generated::McallTaskStatus| {
        s.history
            .iter()
            .flatten()
            .filter(|r| r.phase == Phase::Succeeded && r.scheduled_time.0 > crashed)
            .count()
    };
    wait_for(
        &env,
        "counted",
        Duration::from_secs(30),
        "two successful runs of ticks after the crash",
        |s| after_crash(s) >= 2,
    )
    .await;
    // A graceful stop lets a run in progress finish and record its result, so from here on every
    // request the server saw is a recorded run, or a tick ran twice.
    signal(&restarted, "-TERM");
    // Waited for off the runtime: the loopback server answering the runs lives on it.
    tokio::task::spawn_blocking(move || restarted.wait().unwrap())
        .await
        .unwrap();

    let status = env.tasks.get("counted").await.unwrap().status.unwrap();
    let history = status.history.clone().unwrap_or_default();
    let ticks: std::collections::BTreeSet<_> = history.iter().map(|r| r.scheduled_time.0).collect();
    assert_eq!(
        ticks.len(),
        history.len(),
        "no tick recorded twice: {history:?}"
    );
    let succeeded = history
        .iter()
        .filter(|r| r.phase == Phase::Succeeded)
        .count();
    assert_eq!(
        hits.lock().unwrap().len(),
        succeeded,
        "every request is one recorded run: {history:?}"
    );
    assert!(
        after_crash(&status) >= 2,
        "runs go on after the restart: {history:?}"
    );
}
