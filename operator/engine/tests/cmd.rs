//! `cmd` end to end: exit codes, environment, output checks, timeouts that kill the whole process
//! group, cancellation, and bounded output.

mod common;

use std::time::{Duration, Instant};

use common::{assert_no_process_with, limits, request, run, run_with, wait_for_process_with};
use mcall_engine::{
    EngineEvent, Limits, OutputMatch, OutputOptions, TaskKind, TaskPlan, Verdict, execute,
};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn exit_code_becomes_the_error_code() {
    let ok = run(request(TaskKind::Cmd, "echo hello")).await;
    assert_eq!(ok.verdict, Verdict::Succeeded);
    assert_eq!(ok.output, "hello\n");
    assert_eq!(ok.error_code, None);
    assert_eq!(ok.http_status, None);

    let failed = run(request(TaskKind::Cmd, "echo broken >&2; exit 7")).await;
    assert_eq!(failed.verdict, Verdict::Failed);
    assert_eq!(failed.error_code.as_deref(), Some("7"));
    assert_eq!(failed.output, "broken\n");
    assert_eq!(
        failed.error_message.as_deref(),
        Some("command \"echo broken >&2; exit 7\" exited with code 7")
    );
}

#[tokio::test]
async fn environment_is_passed() {
    let mut req = request(TaskKind::Cmd, "echo \"$APP_MODE:$HOME_DIR\"");
    req.environment.insert("APP_MODE".into(), "canary".into());
    req.environment.insert("HOME_DIR".into(), "/srv".into());
    let outcome = run(req).await;
    assert_eq!(outcome.output, "canary:/srv\n");
}

#[tokio::test]
async fn expect_forms_on_commands() {
    let cases = [
        ("printf 'a\\nb\\nc\\n'", "$count > 2", Verdict::Succeeded),
        ("printf 'a\\nb\\n'", "$count > 2", Verdict::Failed),
        ("echo v1.25.3", "regex:^v\\d+\\.\\d+", Verdict::Succeeded),
        ("echo ready", "starting | ready", Verdict::Succeeded),
        ("echo down", "starting | ready", Verdict::Failed),
        ("exit 3", "$status == 3", Verdict::Succeeded),
        ("exit 3", "$status == 4", Verdict::Failed),
    ];
    for (script, expect, verdict) in cases {
        let mut req = request(TaskKind::Cmd, script);
        req.expect = Some(expect.to_owned());
        let outcome = run(req).await;
        assert_eq!(outcome.verdict, verdict, "{script} / {expect}: {outcome:?}");
    }
}

#[tokio::test]
async fn output_validation_on_commands() {
    let check = |expected: &str, how: OutputMatch, case: bool| OutputOptions {
        expected_output: Some(expected.to_owned()),
        output_match: how,
        case_sensitive: case,
        ..OutputOptions::default()
    };
    let cases = [
        (
            check("World", OutputMatch::Contains, true),
            Verdict::Succeeded,
        ),
        (check("world", OutputMatch::Contains, true), Verdict::Failed),
        (
            check("world", OutputMatch::Contains, false),
            Verdict::Succeeded,
        ),
        (
            check("Hello World", OutputMatch::Exact, true),
            Verdict::Succeeded,
        ),
        (check("Hello", OutputMatch::Exact, true), Verdict::Failed),
        (
            check("Hello", OutputMatch::StartsWith, true),
            Verdict::Succeeded,
        ),
        (
            check("World", OutputMatch::EndsWith, true),
            Verdict::Succeeded,
        ),
        (check("Hello", OutputMatch::EndsWith, true), Verdict::Failed),
        (
            check("^H\\w+ W", OutputMatch::Regex, true),
            Verdict::Succeeded,
        ),
        (
            check("^h\\w+ w", OutputMatch::Regex, false),
            Verdict::Succeeded,
        ),
        (
            OutputOptions {
                success_criteria: Some("notEmpty".into()),
                ..OutputOptions::default()
            },
            Verdict::Succeeded,
        ),
        (
            OutputOptions {
                success_criteria: Some("empty".into()),
                ..OutputOptions::default()
            },
            Verdict::Failed,
        ),
        (
            OutputOptions {
                failure_criteria: Some("regex:W.rld".into()),
                ..OutputOptions::default()
            },
            Verdict::Failed,
        ),
        (
            OutputOptions {
                failure_criteria: Some("contains:error".into()),
                ..OutputOptions::default()
            },
            Verdict::Succeeded,
        ),
    ];
    for (options, verdict) in cases {
        let mut req = request(TaskKind::Cmd, "echo Hello World");
        req.output = Some(options.clone());
        let outcome = run(req).await;
        assert_eq!(outcome.verdict, verdict, "{options:?}: {outcome:?}");
        if verdict == Verdict::Failed {
            assert_eq!(outcome.error_code.as_deref(), Some("ExpectationFailed"));
        }
    }
}

#[tokio::test]
async fn expected_failure_output_accepts_a_known_failure() {
    let mut req = request(TaskKind::Cmd, "ls /definitely/not/here");
    req.output = Some(OutputOptions {
        expected_failure_output: Some("No such file".into()),
        ..OutputOptions::default()
    });
    let outcome = run(req.clone()).await;
    assert_eq!(outcome.verdict, Verdict::Succeeded, "{outcome:?}");

    req.output.as_mut().unwrap().expected_failure_output = Some("Permission denied".into());
    let outcome = run(req).await;
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("2"));
}

#[tokio::test]
async fn json_path_on_command_output() {
    let mut req = request(TaskKind::Cmd, r#"echo '{"replicas": {"ready": 3}}'"#);
    req.output = Some(OutputOptions {
        json_path: Some("$.replicas.ready".into()),
        expected_json_value: Some("3".into()),
        ..OutputOptions::default()
    });
    assert_eq!(run(req.clone()).await.verdict, Verdict::Succeeded);
    req.output.as_mut().unwrap().expected_json_value = Some("2".into());
    let outcome = run(req).await;
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert!(outcome.error_message.unwrap().contains("$.replicas.ready"));
}

#[tokio::test]
async fn timeout_kills_the_process_group_including_grandchildren() {
    let marker = "1000.31415";
    let mut req = request(
        TaskKind::Cmd,
        format!("sleep {marker} & sleep {marker}; echo never"),
    );
    req.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let outcome = run(req).await;
    let elapsed = started.elapsed();
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("Timeout"));
    assert!(
        outcome
            .error_message
            .unwrap()
            .contains("process group was killed")
    );
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_no_process_with(marker, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn processes_ignoring_sigterm_are_killed_after_the_grace() {
    let marker = "1000.2718";
    let mut req = request(
        TaskKind::Cmd,
        format!("sh -c \"trap '' TERM; sleep {marker}\" & trap '' TERM; sleep {marker}"),
    );
    req.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let outcome = run(req).await; // kill_grace is 500 ms in these limits
    assert_eq!(outcome.error_code.as_deref(), Some("Timeout"));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_no_process_with(marker, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn cancellation_kills_the_group_and_reports_cancelled() {
    let marker = "1000.1618";
    let plan = TaskPlan::compile(request(
        TaskKind::Cmd,
        format!("sleep {marker} & sleep {marker}"),
    ))
    .unwrap();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    // Cancelled once the command runs (waited for, however slow the spawn on a busy machine),
    // so the probe below proves its group was killed rather than never started.
    tokio::spawn(async move {
        wait_for_process_with(marker, Duration::from_secs(30)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let outcome = execute(&plan, &limits(), cancel, &|_: EngineEvent| {}).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(outcome.verdict, Verdict::Cancelled);
    assert_eq!(outcome.error_code.as_deref(), Some("Cancelled"));
    assert_no_process_with(marker, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn dropping_the_future_kills_the_group() {
    let marker = "1000.1414";
    let plan = TaskPlan::compile(request(
        TaskKind::Cmd,
        format!("sleep {marker} & sleep {marker}"),
    ))
    .unwrap();
    let limits = limits();
    let run = execute(
        &plan,
        &limits,
        CancellationToken::new(),
        &|_: EngineEvent| {},
    );
    // Dropped once the command runs (not after a guessed delay), so the probe below proves its
    // group was killed rather than never started.
    tokio::select! {
        outcome = run => panic!("the command should still be running: {outcome:?}"),
        () = wait_for_process_with(marker, Duration::from_secs(30)) => {}
    }
    assert_no_process_with(marker, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn ten_megabytes_of_output_are_capped() {
    let limits = Limits {
        output_cap: 4096,
        ..limits()
    };
    // 10 MiB on stdout plus a little on stderr, all counted, little kept.
    let req = request(
        TaskKind::Cmd,
        "head -c 10485760 /dev/zero | tr '\\0' 'x'; echo tail >&2",
    );
    let outcome = run_with(req, &limits).await;
    assert_eq!(outcome.verdict, Verdict::Succeeded);
    let marker = "\n…[truncated 10481669 bytes]";
    assert!(
        outcome.output.ends_with(marker),
        "{}",
        &outcome.output[4000..]
    );
    assert_eq!(outcome.output.len(), 4096 + marker.len());
}

#[tokio::test]
async fn checks_see_more_than_the_reported_output() {
    // The expected text sits past output_cap but inside match_window.
    let mut req = request(
        TaskKind::Cmd,
        "head -c 20000 /dev/zero | tr '\\0' 'x'; echo DONE",
    );
    req.expect = Some("DONE".into());
    let outcome = run(req).await;
    assert_eq!(
        outcome.verdict,
        Verdict::Succeeded,
        "{:?}",
        outcome.error_message
    );
    assert!(!outcome.output.contains("DONE"));
}

#[tokio::test]
async fn spawn_failure_is_reported() {
    // An environment name the kernel refuses is caught at compile; a NUL in the script at spawn.
    let outcome = run(request(TaskKind::Cmd, "echo a\0b")).await;
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("SpawnFailed"));
}

#[tokio::test]
async fn the_process_probe_sees_live_processes() {
    // Guards the tests above: a probe that never finds anything would make them vacuous.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let marker = "1000.1732";
    let child = std::process::Command::new("sleep")
        .arg(marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let child = KillOnDrop(child);
    // The child shows the parent's command line until it has exec'd `sleep`.
    let until = Instant::now() + Duration::from_secs(2);
    while common::processes_with(marker).is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(common::processes_with(marker), vec![pid]);
    drop(child);
    assert!(common::processes_with(marker).is_empty());
}
