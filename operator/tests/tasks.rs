//! McallTask execution through the operator, on the real control plane: results, conditions and
//! Events; timeouts that kill the whole process group; retries; multi-input fail-fast; spec
//! changes; deletion while running; the output cap; secrets kept out of status.

mod common;

use std::time::Duration;

use common::*;
use kube::api::{DeleteParams, Patch, PatchParams};
use mcall_generated::Phase;
use serde_json::json;

const T: Duration = Duration::from_secs(30);
/// How long a killed command may take to be gone: the engine's kill grace (SIGTERM, then 2 s
/// to SIGKILL), with room for a loaded machine. A command that is never killed still fails.
const KILLED: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_command_task_succeeds_with_result_conditions_and_events() {
    let env = test_env("task-ok").await;
    let op = start_operator(&env, config_for(&env));
    let created = create_task(
        &env,
        "hello",
        json!({"type": "cmd", "input": "echo hello from mcall", "expect": "hello"}),
    )
    .await;
    // Pending from the start, before the operator wrote anything (the CRD's status default).
    assert_eq!(created.status.and_then(|s| s.phase), Some(Phase::Pending));
    let task = wait_for_phase(&env, "hello", Phase::Succeeded, T).await;
    let status = task.status.unwrap();
    let result = status.result.unwrap();
    assert!(result.output.unwrap().contains("hello from mcall"));
    assert_eq!(result.error_code.as_deref(), Some("0"));
    assert_eq!(status.observed_generation, task.metadata.generation);
    assert!(
        status.start_time.is_some()
            && status.completion_time.is_some()
            && status.execution_time_ms.is_some()
    );
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.r#type == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Succeeded")
    );
    // Deletions are seen on the watch: no finalizer, so a task never blocks its own deletion.
    assert_eq!(task.metadata.finalizers, None);
    // A run this short is told by its outcome Event alone.
    events_once(&env, "hello", "with Succeeded", |r| {
        r.contains(&"Succeeded".into())
    })
    .await;
    op.stop().await;
}

#[tokio::test]
async fn an_unmet_expectation_fails_with_a_message() {
    let env = test_env("task-expect").await;
    let op = start_operator(&env, config_for(&env));
    create_task(
        &env,
        "nope",
        json!({"type": "cmd", "input": "echo apples", "expect": "oranges|pears"}),
    )
    .await;
    let task = wait_for_phase(&env, "nope", Phase::Failed, T).await;
    let status = task.status.unwrap();
    assert!(
        status.message.unwrap().contains("oranges"),
        "the message names what was expected"
    );
    events_once(&env, "nope", "with Failed", |r| {
        r.contains(&"Failed".into())
    })
    .await;
    op.stop().await;
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let env = test_env("task-timeout").await;
    let op = start_operator(&env, config_for(&env));
    let marker = format!("3{}.25", std::process::id());
    let input = format!("sleep {marker} & sleep {marker}; echo never");
    create_task(
        &env,
        "slow",
        json!({"type": "cmd", "input": input, "timeout": 1}),
    )
    .await;
    let task = wait_for_phase(&env, "slow", Phase::Failed, T).await;
    assert_eq!(
        task.status.unwrap().result.unwrap().error_code.as_deref(),
        Some("Timeout")
    );
    // The engine kills the group on the timeout, before the result; awaited, with a deadline
    // well past the kill grace (2 s), so a slow /proc or scheduler does not decide.
    eventually(
        KILLED,
        "the background child of the timed-out command to be gone",
        || !process_alive(&format!("sleep {marker}")),
    )
    .await;
    op.stop().await;
}

#[tokio::test]
async fn retries_are_counted_with_events() {
    let env = test_env("task-retry").await;
    let op = start_operator(&env, config_for(&env));
    create_task(
        &env,
        "flaky",
        json!({"type": "cmd", "input": "exit 3", "retryCount": 2}),
    )
    .await;
    let task = wait_for_phase(&env, "flaky", Phase::Failed, Duration::from_secs(60)).await;
    let status = task.status.unwrap();
    assert_eq!(status.retry_count, Some(2));
    assert!(status.last_retry_time.is_some());
    assert_eq!(status.result.unwrap().error_code.as_deref(), Some("3"));
    // The outcome's Event is queued last.
    let reasons = events_once(&env, "flaky", "with Failed", |r| {
        r.contains(&"Failed".into())
    })
    .await;
    assert_eq!(reasons.iter().filter(|r| *r == "Retrying").count(), 2);
    // Backoffs of 1 s and 2 s: the run lasted long enough to announce its start.
    assert!(
        reasons.contains(&"Started".to_owned()),
        "a run longer than a second records Started"
    );
    op.stop().await;
}

#[tokio::test]
async fn fail_fast_in_both_modes() {
    let env = test_env("task-failfast").await;
    let op = start_operator(&env, config_for(&env));
    let sequential = r#"[{"name":"bad","input":"exit 1"},{"name":"never","input":"echo ran"}]"#;
    create_task(
        &env,
        "seq",
        json!({"type": "cmd", "input": sequential, "failFast": true}),
    )
    .await;
    let parallel =
        r#"[{"name":"bad","input":"sleep 0.2; exit 1"},{"name":"slow","input":"sleep 30"}]"#;
    create_task(
        &env,
        "par",
        json!({"type": "cmd", "input": parallel, "executionMode": "parallel", "failFast": true}),
    )
    .await;

    let seq = wait_for_phase(&env, "seq", Phase::Failed, T)
        .await
        .status
        .unwrap();
    let inputs = seq.input_results.unwrap();
    assert_eq!(
        (inputs[0].phase, inputs[1].phase),
        (Phase::Failed, Phase::Skipped),
        "{inputs:?}"
    );

    let par = wait_for_phase(&env, "par", Phase::Failed, T)
        .await
        .status
        .unwrap();
    assert!(
        par.execution_time_ms.unwrap() < 10_000,
        "the slow input was cancelled: {par:?}"
    );
    let inputs = par.input_results.unwrap();
    let slow = inputs.iter().find(|i| i.name == "slow").unwrap();
    assert_eq!(
        slow.phase,
        Phase::Failed,
        "cancelled inputs count as failed: {inputs:?}"
    );
    op.stop().await;
}

#[tokio::test]
async fn a_spec_change_runs_the_task_again() {
    let env = test_env("task-rerun").await;
    let op = start_operator(&env, config_for(&env));
    create_task(&env, "again", json!({"type": "cmd", "input": "echo first"})).await;
    wait_for_phase(&env, "again", Phase::Succeeded, T).await;
    let patch = json!({"spec": {"input": "echo second"}});
    env.tasks
        .patch("again", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let task = wait_for(&env, "again", T, "the second run", |s| {
        s.observed_generation == Some(2) && s.phase == Some(Phase::Succeeded)
    })
    .await;
    assert!(
        task.status
            .unwrap()
            .result
            .unwrap()
            .output
            .unwrap()
            .contains("second")
    );
    op.stop().await;
}

#[tokio::test]
async fn deleting_a_running_task_cancels_its_execution() {
    let env = test_env("task-delete").await;
    let op = start_operator(&env, config_for(&env));
    let marker = format!("4{}.5", std::process::id());
    create_task(
        &env,
        "doomed",
        json!({"type": "cmd", "input": format!("sleep {marker}"), "timeout": 600}),
    )
    .await;
    wait_for_phase(&env, "doomed", Phase::Running, T).await;
    // The command runs before the task is deleted, or the check below would be vacuous.
    eventually(T, "the command to run", || {
        process_alive(&format!("sleep {marker}"))
    })
    .await;
    env.tasks
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + T;
    while env.tasks.get_opt("doomed").await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the task was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The deletion is seen on the operator's watch and cancels the run, which kills the group.
    eventually(KILLED, "the command of the deleted task to be gone", || {
        !process_alive(&format!("sleep {marker}"))
    })
    .await;
    op.stop().await;
}

#[tokio::test]
async fn ten_megabytes_of_output_keep_the_object_small() {
    let env = test_env("task-bigout").await;
    let op = start_operator(&env, config_for(&env));
    create_task(
        &env,
        "loud",
        json!({"type": "cmd", "input": "head -c 10485760 /dev/zero | tr '\\0' a"}),
    )
    .await;
    let task = wait_for_phase(&env, "loud", Phase::Succeeded, T).await;
    let output = task
        .status
        .as_ref()
        .unwrap()
        .result
        .as_ref()
        .unwrap()
        .output
        .clone()
        .unwrap();
    assert!(
        output.len() <= 4096 + 64,
        "output kept {} bytes",
        output.len()
    );
    assert!(output.contains("truncated"), "the cut is marked");
    let size = serde_json::to_vec(&task).unwrap().len();
    assert!(size < 16 * 1024, "the stored object is {size} bytes");
    op.stop().await;
}

#[tokio::test]
async fn secret_values_never_reach_status_or_events() {
    let env = test_env("task-secret").await;
    create_secret(&env, "creds", "token", "s3cr3t-value-42").await;
    let op = start_operator(&env, config_for(&env));
    create_task(
        &env,
        "uses-secret",
        json!({"type": "cmd", "input": "echo token=$TOKEN; exit 1",
               "environmentFrom": [{"name": "TOKEN", "secretKeyRef": {"name": "creds", "key": "token"}}]}),
    )
    .await;
    let task = wait_for_phase(&env, "uses-secret", Phase::Failed, T).await;
    let text = serde_json::to_string(&task.status).unwrap();
    assert!(!text.contains("s3cr3t-value-42"), "{text}");
    assert!(
        text.contains("token=***"),
        "the variable was set and redacted: {text}"
    );
    // Events trail the status: wait for the outcome's, so the check is not vacuous.
    events_once(&env, "uses-secret", "with Failed", |r| {
        r.contains(&"Failed".into())
    })
    .await;
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(env.client.clone(), &env.namespace);
    let all =
        serde_json::to_string(&events.list(&Default::default()).await.unwrap().items).unwrap();
    assert!(!all.contains("s3cr3t-value-42"), "{all}");
    op.stop().await;
}

#[tokio::test]
async fn executions_are_bounded_by_max_concurrent_executions() {
    let env = test_env("task-bound").await;
    let op = start_operator(
        &env,
        mcall::config::OperatorConfig {
            max_concurrent_executions: 2,
            ..config_for(&env)
        },
    );
    let log = std::env::temp_dir().join(format!("mcall-bound-{}", env.namespace));
    let input = format!(
        "echo start >> {0}; sleep 0.4; echo end >> {0}",
        log.display()
    );
    for i in 0..6 {
        create_task(
            &env,
            &format!("bounded-{i}"),
            json!({"type": "cmd", "input": input}),
        )
        .await;
    }
    for i in 0..6 {
        wait_for_phase(&env, &format!("bounded-{i}"), Phase::Succeeded, T).await;
    }
    let lines = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let (mut running, mut most) = (0i32, 0i32);
    for line in lines.lines() {
        running += if line == "start" { 1 } else { -1 };
        most = most.max(running);
    }
    assert_eq!(lines.lines().count(), 12, "{lines}");
    assert_eq!(most, 2, "two at a time, never more: {lines}");
    op.stop().await;
}
