//! Multiple inputs: both JSON forms, names, per-input outcomes, sequential and parallel runs,
//! failFast in both modes.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, request, run};
use mcall_engine::{ExecutionMode, TaskKind, TaskPlan, Verdict};

fn verdicts(outcome: &mcall_engine::TaskOutcome) -> Vec<(String, Verdict)> {
    outcome
        .inputs
        .iter()
        .map(|i| (i.name.clone(), i.verdict))
        .collect()
}

#[tokio::test]
async fn array_form_runs_every_input_and_reports_each() {
    let server = TestServer::start().await;
    let input = format!(
        r#"[{{"input": "echo one"}},
            {{"type": "get", "input": "{}", "name": "web", "expect": "200"}},
            {{"input": "echo three", "expect": "three"}}]"#,
        server.url("/ok")
    );
    let outcome = run(request(TaskKind::Cmd, input)).await;
    assert_eq!(outcome.verdict, Verdict::Succeeded, "{outcome:?}");
    assert_eq!(
        verdicts(&outcome),
        [
            ("input-0".to_owned(), Verdict::Succeeded),
            ("web".to_owned(), Verdict::Succeeded),
            ("input-2".to_owned(), Verdict::Succeeded),
        ]
    );
    assert_eq!(outcome.inputs[0].output, "one\n");
    assert_eq!(outcome.inputs[1].output, "hello ok");
    assert_eq!(outcome.http_status, Some(200));
    assert_eq!(
        outcome.output,
        "=== input-0 (Succeeded) ===\none\n=== web (Succeeded) ===\nhello ok\n\
         === input-2 (Succeeded) ===\nthree\n"
    );
}

#[tokio::test]
async fn object_form_and_task_level_expect() {
    let mut req = request(
        TaskKind::Cmd,
        r#"{"inputs": [{"input": "echo ok-1"}, {"input": "echo ok-2"}, {"input": "echo bad", "name": "odd"}]}"#,
    );
    req.expect = Some("ok".into());
    let outcome = run(req).await;
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("ExpectationFailed"));
    let message = outcome.error_message.unwrap();
    assert!(
        message.starts_with("1 of 3 inputs did not succeed: \"odd\": command \"echo bad\""),
        "{message}"
    );
    assert_eq!(outcome.inputs[2].verdict, Verdict::Failed);
    assert_eq!(
        outcome.inputs[2].error_code.as_deref(),
        Some("ExpectationFailed")
    );
}

#[tokio::test]
async fn malformed_multi_input_json_is_invalid_spec() {
    let err = TaskPlan::compile(request(TaskKind::Cmd, r#"[{"input": "echo a"},]"#)).unwrap_err();
    assert_eq!(err.field, "spec.input");
    assert!(
        err.message.starts_with("malformed multi-input JSON: "),
        "{err}"
    );
    let err =
        TaskPlan::compile(request(TaskKind::Cmd, r#"[{"input": "a", "typ": "cmd"}]"#)).unwrap_err();
    assert_eq!(err.field, "spec.input[0]");
    // Shell tests that start with `[` stay commands.
    let outcome = run(request(TaskKind::Cmd, "[ -d / ] && echo dir")).await;
    assert_eq!(outcome.output, "dir\n");
}

#[tokio::test]
async fn sequential_runs_in_order_and_without_fail_fast_runs_all() {
    let dir = std::env::temp_dir().join(format!("mcall-seq-{}", std::process::id()));
    let log = dir.display().to_string();
    let input = format!(
        r#"[{{"input": "echo a >> {log}"}}, {{"input": "exit 1"}}, {{"input": "echo c >> {log}; cat {log}"}}]"#
    );
    let outcome = run(request(TaskKind::Cmd, input)).await;
    let _ = std::fs::remove_file(&dir);
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("1"));
    assert_eq!(outcome.inputs[1].verdict, Verdict::Failed);
    assert_eq!(outcome.inputs[2].verdict, Verdict::Succeeded);
    assert_eq!(outcome.inputs[2].output, "a\nc\n");
}

#[tokio::test]
async fn sequential_fail_fast_skips_the_rest() {
    let mut req = request(
        TaskKind::Cmd,
        r#"[{"input": "true"}, {"input": "exit 4", "name": "broken"}, {"input": "echo never"}, {"input": "echo never"}]"#,
    );
    req.fail_fast = true;
    let outcome = run(req).await;
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("4"));
    assert_eq!(
        verdicts(&outcome)
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>(),
        [
            Verdict::Succeeded,
            Verdict::Failed,
            Verdict::Skipped,
            Verdict::Skipped
        ]
    );
    let skipped = &outcome.inputs[2];
    assert_eq!(skipped.error_code, None);
    assert_eq!(skipped.output, "");
    assert!(
        skipped
            .error_message
            .as_deref()
            .unwrap()
            .contains("\"broken\" failed and failFast is set")
    );
    assert!(!outcome.output.contains("never"));
}

#[tokio::test]
async fn parallel_runs_inputs_at_the_same_time() {
    let mut req = request(
        TaskKind::Cmd,
        r#"[{"input": "sleep 0.8"}, {"input": "sleep 0.8"}, {"input": "sleep 0.8"}]"#,
    );
    req.execution_mode = ExecutionMode::Parallel;
    let started = Instant::now();
    let outcome = run(req).await;
    assert_eq!(outcome.verdict, Verdict::Succeeded);
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn parallel_runs_at_most_a_bounded_number_of_inputs_at_once() {
    let log = std::env::temp_dir().join(format!("mcall-parallel-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let one = format!(
        r#"{{"input": "echo start >> {0}; sleep 0.3; echo end >> {0}"}}"#,
        log.display()
    );
    let mut req = request(
        TaskKind::Cmd,
        format!(
            "[{}]",
            vec![one; mcall_engine::PARALLEL_INPUTS + 8].join(",")
        ),
    );
    req.execution_mode = ExecutionMode::Parallel;
    let outcome = run(req).await;
    assert_eq!(outcome.verdict, Verdict::Succeeded, "{outcome:?}");
    assert_eq!(outcome.inputs.len(), mcall_engine::PARALLEL_INPUTS + 8);
    let lines = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let (mut running, mut most) = (0i32, 0i32);
    for line in lines.lines() {
        running += if line == "start" { 1 } else { -1 };
        most = most.max(running);
    }
    assert!(
        most as usize <= mcall_engine::PARALLEL_INPUTS && most > 1,
        "at most {} inputs at once, and more than one: {most}",
        mcall_engine::PARALLEL_INPUTS
    );
}

#[tokio::test]
async fn a_slow_parallel_input_does_not_hold_back_the_ones_waiting_for_their_turn() {
    let log = std::env::temp_dir().join(format!("mcall-turns-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut inputs = vec![format!(
        r#"{{"input": "sleep 1; echo slow >> {}"}}"#,
        log.display()
    )];
    inputs.extend(vec![
        r#"{"input": "true"}"#.to_owned();
        mcall_engine::PARALLEL_INPUTS - 1
    ]);
    inputs.push(format!(
        r#"{{"input": "echo waited >> {}"}}"#,
        log.display()
    ));
    let mut req = request(TaskKind::Cmd, format!("[{}]", inputs.join(",")));
    req.execution_mode = ExecutionMode::Parallel;
    let outcome = run(req).await;
    assert_eq!(outcome.verdict, Verdict::Succeeded, "{outcome:?}");
    let lines = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(
        lines, "waited\nslow\n",
        "the last input started while the slow one ran"
    );
    assert_eq!(
        outcome.inputs.len(),
        mcall_engine::PARALLEL_INPUTS + 1,
        "in input order"
    );
    assert_eq!(outcome.inputs[0].name, "input-0");
}

#[tokio::test]
async fn a_parallel_input_whose_turn_comes_after_the_timeout_is_skipped() {
    let mut inputs = vec![r#"{"input": "sleep 5"}"#; mcall_engine::PARALLEL_INPUTS];
    inputs.push(r#"{"input": "echo late", "name": "late"}"#);
    let mut req = request(TaskKind::Cmd, format!("[{}]", inputs.join(",")));
    req.execution_mode = ExecutionMode::Parallel;
    req.timeout = Duration::from_millis(500);
    let outcome = run(req).await;
    assert_eq!(outcome.verdict, Verdict::Failed);
    let late = outcome.inputs.last().unwrap();
    assert_eq!(
        (late.name.as_str(), late.verdict),
        ("late", Verdict::Skipped)
    );
    assert!(
        late.error_message
            .as_deref()
            .unwrap()
            .contains("elapsed before this input's turn"),
        "{late:?}"
    );
}

#[tokio::test]
async fn parallel_without_fail_fast_lets_all_finish() {
    let mut req = request(
        TaskKind::Cmd,
        r#"[{"input": "exit 1"}, {"input": "sleep 0.5; echo finished"}]"#,
    );
    req.execution_mode = ExecutionMode::Parallel;
    let outcome = run(req).await;
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.inputs[1].verdict, Verdict::Succeeded);
    assert_eq!(outcome.inputs[1].output, "finished\n");
}

#[tokio::test]
async fn parallel_fail_fast_cancels_the_slow_ones_quickly() {
    let server = TestServer::start().await;
    let input = format!(
        r#"[{{"input": "sleep 5", "name": "slow"}},
            {{"type": "get", "input": "{}", "name": "slow-http"}},
            {{"input": "sleep 0.2; exit 3", "name": "failing"}}]"#,
        server.url("/slow/5000")
    );
    let mut req = request(TaskKind::Cmd, input);
    req.execution_mode = ExecutionMode::Parallel;
    req.fail_fast = true;
    let started = Instant::now();
    let outcome = run(req).await;
    let elapsed = started.elapsed();
    // The failing input needs 0.2 s; the rest must be gone within about a second after it.
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("3"));
    assert_eq!(
        verdicts(&outcome),
        [
            ("slow".to_owned(), Verdict::Cancelled),
            ("slow-http".to_owned(), Verdict::Cancelled),
            ("failing".to_owned(), Verdict::Failed),
        ]
    );
    assert_eq!(outcome.inputs[0].error_code.as_deref(), Some("Cancelled"));
    assert!(
        outcome.inputs[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("\"failing\" failed and failFast is set")
    );
    let message = outcome.error_message.unwrap();
    assert!(
        message.starts_with("3 of 3 inputs did not succeed: \"failing\""),
        "{message}"
    );
}

#[tokio::test]
async fn per_input_outputs_use_their_own_cap() {
    let mut req = request(
        TaskKind::Cmd,
        r#"[{"input": "head -c 5000 /dev/zero | tr '\\0' 'y'"}, {"input": "echo small"}]"#,
    );
    req.execution_mode = ExecutionMode::Sequential;
    let outcome = run(req).await;
    let big = &outcome.inputs[0].output;
    assert!(big.ends_with("\n…[truncated 3976 bytes]"), "{big}");
    assert_eq!(big.len(), 1024 + "\n…[truncated 3976 bytes]".len());
    assert!(
        outcome
            .output
            .contains("=== input-1 (Succeeded) ===\nsmall\n")
    );
}

#[tokio::test]
async fn the_task_timeout_bounds_the_whole_attempt() {
    let mut req = request(
        TaskKind::Cmd,
        r#"[{"input": "sleep 0.3"}, {"input": "sleep 5"}, {"input": "echo late"}]"#,
    );
    req.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let outcome = run(req).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(outcome.error_code.as_deref(), Some("Timeout"));
    assert_eq!(
        verdicts(&outcome)
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>(),
        [Verdict::Succeeded, Verdict::Failed, Verdict::Skipped]
    );
}
