//! McallWorkflow run semantics on the real control plane: the concurrency limit, the timeout,
//! the retry policy, result passing, templates, schedules with history, and a restart mid-run.

mod common;

use std::time::Duration;

use common::workflows::*;
use common::*;
use kube::api::{Patch, PatchParams};
use mcall_generated::{McallTask, Phase};
use serde_json::json;

fn scratch(env: &TestEnv, what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mcall-{what}-{}", env.namespace))
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn at_most_concurrency_steps_run_at_once() {
    logs();
    let env = test_env("wf-limit").await;
    let op = start_operator(&env, config_for(&env));
    let log = scratch(&env, "limit");
    let step = |i: usize| {
        json!({"name": format!("s{i}"), "type": "cmd",
               "input": format!("echo start >> {0}; sleep 0.3; echo end >> {0}", log.display())})
    };
    create_workflow(
        &env,
        "limited",
        json!({"concurrency": 2, "tasks": (0..6).map(step).collect::<Vec<_>>()}),
    )
    .await;
    let s = ended(&env, "limited").await;
    assert_eq!(s.phase, Some(Phase::Succeeded), "{s:#?}");
    let (mut running, mut most) = (0, 0);
    for line in lines(&log) {
        running += if line == "start" { 1 } else { -1 };
        most = most.max(running);
    }
    assert_eq!(
        most, 2,
        "the log shows at most (and, with 6 steps, exactly) 2 at once"
    );
    op.stop().await;
}

#[tokio::test]
async fn the_timeout_cancels_a_running_step_and_its_process_is_gone() {
    logs();
    let env = test_env("wf-timeout").await;
    let op = start_operator(&env, config_for(&env));
    let marker = format!("wf-timeout-marker-{}", env.namespace);
    create_workflow(
        &env,
        "slow",
        json!({"timeout": 2, "tasks": [
            {"name": "sleepy", "type": "cmd", "input": format!("sleep 60 # {marker}"), "timeout": 120},
            {"name": "after", "type": "cmd", "input": "echo never", "dependencies": ["sleepy"]},
        ]}),
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the step's process to start",
        || process_alive(&marker),
    )
    .await;
    let s = ended(&env, "slow").await;
    assert_eq!(
        (s.phase, s.reason.as_deref()),
        (Some(Phase::Failed), Some("DeadlineExceeded"))
    );
    assert_eq!(step(&s, "sleepy").phase, Phase::Failed);
    assert_eq!(step(&s, "after").phase, Phase::Skipped);
    eventually(
        Duration::from_secs(10),
        "the step's process to be killed",
        || !process_alive(&marker),
    )
    .await;
    op.stop().await;
}

#[tokio::test]
async fn a_failed_run_is_re_run_by_the_retry_policy() {
    logs();
    let env = test_env("wf-retry").await;
    let op = start_operator(&env, config_for(&env));
    let flag = scratch(&env, "retry");
    let input = format!(
        "test -f {0} || {{ touch {0}; exit 1; }}; echo second time",
        flag.display()
    );
    create_workflow(
        &env,
        "flaky",
        json!({"retryPolicy": {"maxRetries": 2, "retryDelay": "1s"}, "failedRunsHistoryLimit": 3,
               "tasks": [{"name": "once-fails", "type": "cmd", "input": input}]}),
    )
    .await;
    let s = wait_workflow(&env, "flaky", "the re-run to succeed", |s| {
        s.phase == Some(Phase::Succeeded)
    })
    .await;
    assert_eq!(
        (s.run_id.as_deref(), s.retry_count),
        (Some("r2"), Some(1)),
        "{s:#?}"
    );
    let history: Vec<(Option<&str>, Phase)> = s
        .history
        .iter()
        .flatten()
        .map(|r| (r.run_id.as_deref(), r.phase))
        .collect();
    assert!(
        history.contains(&(Some("r1"), Phase::Failed))
            && history.contains(&(Some("r2"), Phase::Succeeded)),
        "{history:?}"
    );
    assert_eq!(
        step(&s, "once-fails").output.as_deref().map(str::trim),
        Some("second time")
    );
    op.stop().await;
}

#[tokio::test]
async fn results_pass_between_steps_and_templates_run_only_as_steps() {
    logs();
    let env = test_env("wf-pass").await;
    let op = start_operator(&env, config_for(&env));
    let template: McallTask = serde_json::from_value(json!({
        "apiVersion": "mcall.tz.io/v1", "kind": "McallTask",
        "metadata": {"name": "greeter", "labels": {"mcall.tz.io/template": "true"}},
        "spec": {"type": "cmd", "input": "echo hello from the template", "environment": {"WHO": "template"}}
    }))
    .unwrap();
    env.tasks
        .create(&Default::default(), &template)
        .await
        .unwrap();
    create_workflow(
        &env,
        "passing",
        json!({"environment": {"WHO": "workflow", "TEAM": "ops"}, "tasks": [
            {"name": "produce", "type": "cmd", "input": "echo 42"},
            {"name": "consume", "type": "cmd", "dependencies": ["produce"],
             "inputTemplate": "echo got ${X} for $TEAM",
             "inputSources": [{"name": "X", "taskRef": "produce"}]},
            {"name": "greet", "taskRef": {"name": "greeter"}, "dependencies": ["consume"]},
            {"name": "greet-again", "taskRef": {"name": "greeter"}, "input": "echo $WHO overrides",
             "dependencies": ["consume"]},
        ]}),
    )
    .await;
    let s = ended(&env, "passing").await;
    assert_eq!(s.phase, Some(Phase::Succeeded), "{s:#?}");
    let out = |name: &str| {
        step(&s, name)
            .output
            .clone()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    assert_eq!(out("consume"), "got 42 for ops");
    assert_eq!(out("greet"), "hello from the template");
    assert_eq!(
        out("greet-again"),
        "template overrides",
        "the template's environment wins over the workflow's"
    );
    let template = wait_for(
        &env,
        "greeter",
        Duration::from_secs(10),
        "the template marker",
        |s| s.phase == Some(Phase::Skipped),
    )
    .await;
    let status = template.status.unwrap();
    assert!(
        status.result.is_none() && status.start_time.is_none(),
        "a template never runs: {status:#?}"
    );
    // Without its label it is an ordinary task again, and runs.
    let unlabel = json!({"metadata": {"labels": {"mcall.tz.io/template": null}}});
    env.tasks
        .patch("greeter", &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .unwrap();
    wait_for_phase(&env, "greeter", Phase::Succeeded, Duration::from_secs(20)).await;
    op.stop().await;
}

#[tokio::test]
async fn a_scheduled_workflow_keeps_its_history_and_deletes_older_runs_children() {
    logs();
    let env = test_env("wf-schedule").await;
    let op = start_operator(&env, config_for(&env));
    create_workflow(
        &env,
        "ticking",
        json!({"schedule": "@every 1s", "successfulRunsHistoryLimit": 1, "failedRunsHistoryLimit": 1,
               "tasks": [{"name": "tick", "type": "cmd", "input": "echo tick"}]}),
    )
    .await;
    create_workflow(
        &env,
        "forbidding",
        json!({"schedule": "@every 1s", "concurrencyPolicy": "Forbid",
               "tasks": [{"name": "long", "type": "cmd", "input": "sleep 2.5"}]}),
    )
    .await;
    let s = wait_workflow(&env, "ticking", "a fourth run", |s| {
        s.run_id
            .as_deref()
            .and_then(|r| r[1..].parse::<u32>().ok())
            .is_some_and(|n| n >= 4)
    })
    .await;
    assert!(s.last_schedule_time.is_some() && s.next_schedule_time.is_some());
    // Children of runs neither current nor in the history are deleted.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let wf = workflows(&env)
            .get("ticking")
            .await
            .unwrap()
            .status
            .unwrap();
        let mut kept: Vec<String> = wf
            .history
            .iter()
            .flatten()
            .filter_map(|r| r.run_id.clone())
            .collect();
        kept.extend(wf.run_id.clone());
        let stray: Vec<String> = children(&env, "ticking")
            .await
            .into_iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .filter_map(|c| c.metadata.labels.unwrap().get("mcall.tz.io/run").cloned())
            .filter(|run| {
                !kept.contains(run) && run_number(run) < run_number(wf.run_id.as_deref().unwrap())
            })
            .collect();
        if stray.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "children of trimmed runs remain: {stray:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = wait_workflow(&env, "forbidding", "a tick skipped by Forbid", |s| {
        s.history
            .iter()
            .flatten()
            .any(|r| r.phase == Phase::Skipped)
    })
    .await;
    assert!(
        s.history
            .iter()
            .flatten()
            .any(|r| r.output.as_deref().unwrap_or("").contains("Forbid")),
        "{s:#?}"
    );
    op.stop().await;
}

fn run_number(run: &str) -> u32 {
    run[1..].parse().unwrap_or(0)
}

#[tokio::test]
async fn an_operator_restart_mid_run_resumes_without_running_a_step_twice() {
    logs();
    let env = test_env("wf-restart").await;
    let log = scratch(&env, "restart");
    let append =
        |name: &str, pause: &str| format!("sleep {pause}; echo {name} >> {}", log.display());
    let op = start_operator(&env, config_for(&env));
    create_workflow(
        &env,
        "resumed",
        json!({"tasks": [
            {"name": "first", "type": "cmd", "input": append("first", "0")},
            {"name": "second", "type": "cmd", "input": append("second", "1"), "dependencies": ["first"]},
            {"name": "third", "type": "cmd", "input": append("third", "0"), "dependencies": ["second"]},
        ]}),
    )
    .await;
    wait_workflow(&env, "resumed", "the second step to run", |s| {
        s.task_statuses
            .iter()
            .flatten()
            .any(|t| t.name == "second" && t.phase == Phase::Running)
    })
    .await;
    op.stop().await;
    let op = start_operator(&env, config_for(&env));
    let s = ended(&env, "resumed").await;
    assert_eq!(s.phase, Some(Phase::Succeeded), "{s:#?}");
    assert_eq!(
        lines(&log),
        ["first", "second", "third"],
        "each step ran once, in order"
    );
    op.stop().await;
}

#[tokio::test]
async fn a_spec_change_cancels_the_run_and_starts_the_new_one() {
    logs();
    let env = test_env("wf-change").await;
    let op = start_operator(&env, config_for(&env));
    let marker = format!("wf-change-marker-{}", env.namespace);
    create_workflow(
        &env,
        "changing",
        json!({"tasks": [{"name": "a", "type": "cmd", "input": format!("sleep 60 # {marker}")}]}),
    )
    .await;
    eventually(Duration::from_secs(20), "the first run's step", || {
        process_alive(&marker)
    })
    .await;
    let patch = json!({"spec": {"tasks": [{"name": "a", "type": "cmd", "input": "echo new"}]}});
    workflows(&env)
        .patch("changing", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let s = wait_workflow(&env, "changing", "the new run to succeed", |s| {
        s.run_id.as_deref() == Some("r2") && s.phase == Some(Phase::Succeeded)
    })
    .await;
    assert!(
        s.history
            .iter()
            .flatten()
            .any(|r| r.run_id.as_deref() == Some("r1")
                && r.error_code.as_deref() == Some("Superseded")),
        "{s:#?}"
    );
    eventually(
        Duration::from_secs(10),
        "the old run's process to be killed",
        || !process_alive(&marker),
    )
    .await;
    op.stop().await;
}
