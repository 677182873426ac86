//! McallWorkflow runs on the real control plane: each run's steps are child McallTasks that the
//! in-process operator executes; the workflow's status follows them.

mod common;

use std::time::Duration;

use common::workflows::*;
use common::*;
use kube::api::ListParams;
use mcall_generated::{Phase, StepReason};
use serde_json::json;

#[tokio::test]
async fn a_diamond_runs_each_step_once_in_dependency_order() {
    logs();
    let env = test_env("wf-diamond").await;
    let op = start_operator(&env, config_for(&env));
    create_workflow(
        &env,
        "diamond",
        json!({"concurrency": 2, "tasks": [
            {"name": "a", "type": "cmd", "input": "echo a"},
            {"name": "b", "type": "cmd", "input": "echo b", "dependencies": ["a"]},
            {"name": "c", "type": "cmd", "input": "echo c", "dependencies": ["a"]},
            {"name": "d", "type": "cmd", "input": "echo d", "dependencies": ["b", "c"]},
        ]}),
    )
    .await;
    let s = ended(&env, "diamond").await;
    assert_eq!(s.phase, Some(Phase::Succeeded), "{s:#?}");
    assert_eq!(s.progress.as_deref(), Some("4/4"));
    for name in ["a", "b", "c", "d"] {
        let st = step(&s, name);
        assert_eq!(st.phase, Phase::Succeeded, "{st:#?}");
        assert_eq!(st.output.as_deref().map(str::trim), Some(name));
    }
    let at = |name: &str, end: bool| {
        let st = step(&s, name);
        if end {
            st.completion_time.clone()
        } else {
            st.start_time.clone()
        }
        .unwrap()
        .0
    };
    assert!(at("b", false) >= at("a", true) && at("c", false) >= at("a", true));
    assert!(at("d", false) >= at("b", true) && at("d", false) >= at("c", true));
    let kids = children(&env, "diamond").await;
    assert_eq!(kids.len(), 4, "one child task per step");
    let dag = s.dag.as_ref().expect("a dag");
    assert_eq!(dag.edges.as_ref().map(Vec::len), Some(4));
    assert_eq!(dag.metadata.as_ref().and_then(|m| m.success_count), Some(4));
    op.stop().await;
}

#[tokio::test]
async fn a_failure_branch_runs_and_the_success_branch_is_skipped() {
    logs();
    let env = test_env("wf-branch").await;
    let op = start_operator(&env, config_for(&env));
    create_workflow(
        &env,
        "branch",
        json!({"tasks": [
            {"name": "check", "type": "cmd", "input": "echo broken; exit 3"},
            {"name": "on-ok", "type": "cmd", "input": "echo fine", "dependencies": ["check"],
             "condition": {"when": "success"}},
            {"name": "on-fail", "type": "cmd", "input": "echo repairing", "dependencies": ["check"],
             "condition": {"dependentTask": "check", "when": "failure", "outputContains": "broken"}},
            {"name": "after-ok", "type": "cmd", "input": "echo never", "dependencies": ["on-ok"]},
        ]}),
    )
    .await;
    let s = ended(&env, "branch").await;
    assert_eq!(step(&s, "check").phase, Phase::Failed);
    assert_eq!(step(&s, "check").error_code.as_deref(), Some("3"));
    assert_eq!(step(&s, "on-fail").phase, Phase::Succeeded);
    assert_eq!(step(&s, "on-ok").phase, Phase::Skipped);
    assert_eq!(step(&s, "on-ok").reason, Some(StepReason::ConditionNotMet));
    assert_eq!(
        step(&s, "after-ok").reason,
        Some(StepReason::DependencyNotSatisfied)
    );
    // The failure was handled by a branch that ran: the run succeeds (Argo's rule).
    assert_eq!(s.phase, Some(Phase::Succeeded), "{s:#?}");
    assert_eq!(
        children(&env, "branch").await.len(),
        2,
        "skipped steps create nothing"
    );
    op.stop().await;
}

#[tokio::test]
async fn a_failed_dependency_skips_its_dependents_and_the_run_fails() {
    logs();
    let env = test_env("wf-fail").await;
    let op = start_operator(&env, config_for(&env));
    create_workflow(
        &env,
        "fails",
        json!({"failFast": false, "tasks": [
            {"name": "a", "type": "cmd", "input": "exit 1"},
            {"name": "b", "type": "cmd", "input": "echo b", "dependencies": ["a"]},
            {"name": "c", "type": "cmd", "input": "echo c", "dependencies": ["b"]},
            {"name": "free", "type": "cmd", "input": "echo free"},
        ]}),
    )
    .await;
    let s = ended(&env, "fails").await;
    assert_eq!(s.phase, Some(Phase::Failed));
    assert_eq!(s.reason.as_deref(), Some("Failed"));
    assert!(
        s.message.as_deref().unwrap().contains("step a failed"),
        "{s:#?}"
    );
    assert_eq!(step(&s, "b").phase, Phase::Skipped);
    assert_eq!(step(&s, "c").phase, Phase::Skipped);
    assert_eq!(
        step(&s, "free").phase,
        Phase::Succeeded,
        "failFast off: independent steps run"
    );
    op.stop().await;
}

#[tokio::test]
async fn invalid_graphs_fail_with_invalid_spec_and_create_nothing() {
    logs();
    let env = test_env("wf-invalid").await;
    let op = start_operator(&env, config_for(&env));
    // The same table the webhook's test applies.
    let cases = invalid::workflows();
    for case in &cases {
        create_workflow(&env, case.name, case.spec.clone()).await;
    }
    for case in &cases {
        let s = wait_workflow(&env, case.name, case.reason, |s| {
            s.reason.as_deref() == Some(case.reason)
        })
        .await;
        assert_eq!(s.phase, Some(Phase::Failed));
        assert!(
            s.message.as_deref().unwrap().contains(case.problem),
            "{}: {s:#?}",
            case.name
        );
    }
    assert!(
        env.tasks
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing created"
    );
    op.stop().await;
}

#[tokio::test]
async fn deleting_a_workflow_deletes_its_children_and_cancels_their_runs() {
    logs();
    let env = test_env_with_gc("wf-delete").await;
    let op = start_operator(&env, config_for(&env));
    let marker = format!("wf-delete-marker-{}", env.namespace);
    create_workflow(
        &env,
        "doomed",
        json!({"concurrency": 2, "tasks": [
            {"name": "quick", "type": "cmd", "input": "echo done"},
            {"name": "slow", "type": "cmd", "input": format!("sleep 60 # {marker}")},
        ]}),
    )
    .await;
    eventually(Duration::from_secs(20), "the slow step's process", || {
        process_alive(&marker)
    })
    .await;
    assert_eq!(children(&env, "doomed").await.len(), 2);
    workflows(&env)
        .delete("doomed", &kube::api::DeleteParams::background())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !children(&env, "doomed").await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the garbage collector did not delete the children"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(
        Duration::from_secs(10),
        "the slow step's process to be killed",
        || !process_alive(&marker),
    )
    .await;
    op.stop().await;
}

#[tokio::test]
async fn a_workflow_runs_with_the_chart_s_rbac() {
    logs();
    let env = test_env("wf-rbac").await;
    let plane = plane();
    plane.apply_chart_rbac(&env.namespace, &env.namespace, "mcall-operator", &[]);
    let sa = plane
        .service_account_client(&env.namespace, "mcall-operator")
        .await
        .unwrap();
    let op = start_operator_as(sa, config_for(&env));
    create_workflow(
        &env,
        "least-privilege",
        json!({"tasks": [
            {"name": "a", "type": "cmd", "input": "echo a"},
            {"name": "b", "type": "cmd", "input": "echo b", "dependencies": ["a"]},
        ]}),
    )
    .await;
    let s = ended(&env, "least-privilege").await;
    assert_eq!(s.phase, Some(Phase::Succeeded), "{s:#?}");
    op.stop().await;
}
