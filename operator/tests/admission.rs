//! What the schema cannot catch becomes `Failed` with a reason, never a crash or a hot loop:
//! InvalidSpec (bad regex, malformed multi-input JSON, a non-URL for get, an unknown Secret) and
//! CommandsNotAllowed; plus dependencies that fail, go missing, succeed, change or form a cycle,
//! and a run the API server will not let the operator prepare (RBAC) until it does.

mod common;

use std::time::Duration;

use common::*;
use mcall::config::CommandPolicy;
use mcall_generated::{McallTaskStatus, Phase};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

async fn failed_with(env: &TestEnv, name: &str, reason: &str, message_part: &str) {
    let task = wait_for_phase(env, name, Phase::Failed, T).await;
    let status = task.status.unwrap();
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.r#type == "Ready")
        .unwrap();
    assert_eq!(ready.reason, reason, "{name}");
    assert!(
        ready.message.contains(message_part),
        "{name}: {:?} lacks {message_part:?}",
        ready.message
    );
}

/// A `cmd` task that depends on `dependency`.
async fn create_after(env: &TestEnv, name: &str, input: &str, dependency: &str) {
    create_task(
        env,
        name,
        json!({"type": "cmd", "input": input, "dependencies": [dependency]}),
    )
    .await;
}

#[tokio::test]
async fn invalid_specs_fail_with_the_field_named() {
    let env = test_env("invalid").await;
    let op = start_operator(&env, config_for(&env));
    // The same table the webhook's test applies: admission refuses what the controller would
    // fail, and the controller still fails what was admitted while the webhook was down.
    let cases = invalid::tasks();
    for case in &cases {
        create_task(&env, case.name, case.spec.clone()).await;
    }
    for case in &cases {
        failed_with(&env, case.name, case.reason, case.problem).await;
    }
    // No hot loop: a rejected task is written once and left alone.
    let before = env
        .tasks
        .get("bad-regex")
        .await
        .unwrap()
        .metadata
        .resource_version;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.tasks
            .get("bad-regex")
            .await
            .unwrap()
            .metadata
            .resource_version,
        before
    );
    op.stop().await;
}

#[tokio::test]
async fn commands_only_run_in_allowed_namespaces() {
    let env = test_env("cmd-gate").await;
    let config = mcall::config::OperatorConfig {
        commands: CommandPolicy::Namespaces(vec!["elsewhere".into()]),
        ..config_for(&env)
    };
    let op = start_operator(&env, config);
    create_task(
        &env,
        "forbidden",
        json!({"type": "cmd", "input": "touch /tmp/should-not-exist"}),
    )
    .await;
    failed_with(&env, "forbidden", "CommandsNotAllowed", "not allowed").await;
    op.stop().await;
}

#[tokio::test]
async fn dependencies_gate_the_start_and_skip_with_the_culprit_named() {
    let env = test_env("deps").await;
    let op = start_operator(&env, config_for(&env));
    create_after(&env, "child", "echo child", "parent").await;
    create_after(&env, "after-broken", "echo x", "broken").await;
    create_after(&env, "orphan", "echo x", "ghost").await;
    // child waits (Pending) while parent does not exist yet, then runs once parent succeeds.
    wait_for_phase(&env, "child", Phase::Pending, T).await;
    create_task(
        &env,
        "parent",
        json!({"type": "cmd", "input": "sleep 1; echo parent"}),
    )
    .await;
    create_task(&env, "broken", json!({"type": "cmd", "input": "exit 1"})).await;
    let child = wait_for_phase(&env, "child", Phase::Succeeded, T).await;
    let parent = env.tasks.get("parent").await.unwrap();
    assert!(
        child.status.unwrap().start_time.unwrap().0
            >= parent.status.unwrap().completion_time.unwrap().0,
        "child started only after parent finished"
    );
    let skipped = wait_for_phase(&env, "after-broken", Phase::Skipped, T).await;
    assert!(
        skipped
            .status
            .unwrap()
            .message
            .unwrap()
            .contains("dependency broken is Failed")
    );
    let orphan = wait_for_phase(&env, "orphan", Phase::Skipped, T).await;
    assert!(
        orphan
            .status
            .unwrap()
            .message
            .unwrap()
            .contains("dependency ghost does not exist")
    );
    op.stop().await;
}

#[tokio::test]
async fn a_dependency_whose_spec_changed_is_waited_for_not_judged_by_its_old_result() {
    let env = test_env("deps-gen").await;
    let op = start_operator(&env, config_for(&env));
    create_task(&env, "base", json!({"type": "cmd", "input": "exit 1"})).await;
    wait_for_phase(&env, "base", Phase::Failed, T).await;
    // Fixed, and a dependent added at once (as `kubectl apply -f dir/` does): the dependent
    // must wait for the fixed run, not be skipped for the old failure.
    env.tasks
        .patch(
            "base",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&json!({"spec": {"input": "sleep 1.5; echo fixed"}})),
        )
        .await
        .unwrap();
    create_after(&env, "after-base", "echo after", "base").await;
    let after = wait_for(&env, "after-base", T, "a final phase", |s| {
        matches!(
            s.phase,
            Some(Phase::Succeeded | Phase::Skipped | Phase::Failed)
        )
    })
    .await;
    assert_eq!(
        after.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Succeeded),
        "{:?}",
        after.status
    );
    let base = env.tasks.get("base").await.unwrap().status.unwrap();
    assert!(
        after.status.unwrap().start_time.unwrap().0 >= base.completion_time.unwrap().0,
        "the dependent started after the fixed run ended"
    );
    op.stop().await;
}

#[tokio::test]
async fn dependency_cycles_fail_instead_of_waiting_forever() {
    let env = test_env("cycle").await;
    let op = start_operator(&env, config_for(&env));
    create_after(&env, "selfish", "echo x", "selfish").await;
    failed_with(
        &env,
        "selfish",
        "InvalidSpec",
        "selfish → selfish is a cycle",
    )
    .await;

    // ping waits for pong to appear; pong closes the loop.
    create_after(&env, "ping", "echo ping", "pong").await;
    create_after(&env, "after-ping", "echo x", "ping").await;
    wait_for_phase(&env, "ping", Phase::Pending, T).await;
    create_after(&env, "pong", "echo pong", "ping").await;
    let finished = |s: &McallTaskStatus| matches!(s.phase, Some(Phase::Failed | Phase::Skipped));
    let mut cycle_reported = false;
    for (name, other) in [("ping", "pong"), ("pong", "ping")] {
        let status = wait_for(&env, name, T, "Failed or Skipped", finished)
            .await
            .status
            .unwrap();
        let message = status.message.unwrap_or_default();
        // Whichever saw the cycle first fails naming it; the other one then either sees it too
        // or is skipped because of the first one's failure.
        if status.phase == Some(Phase::Failed) {
            assert!(message.contains("is a cycle"), "{name}: {message}");
            assert!(
                message.contains(&format!("{name} → {other} → {name}")),
                "{message}"
            );
            cycle_reported = true;
        } else {
            assert!(
                message.contains(&format!("dependency {other} is")),
                "{name}: {message}"
            );
        }
    }
    assert!(cycle_reported, "one of them names the cycle");
    let skipped = wait_for_phase(&env, "after-ping", Phase::Skipped, T).await;
    assert!(
        skipped
            .status
            .unwrap()
            .message
            .unwrap()
            .contains("dependency ping is"),
        "a task waiting for a member of the cycle is skipped, naming it"
    );
    op.stop().await;
}

#[tokio::test]
async fn results_pass_from_one_task_to_another() {
    let env = test_env("inputs").await;
    let op = start_operator(&env, config_for(&env));
    create_task(
        &env,
        "producer",
        json!({"type": "cmd", "input": "sleep 0.5; echo '{\"host\": \"db-1\", \"port\": 5432}'"}),
    )
    .await;
    create_task(
        &env,
        "consumer",
        json!({
            "type": "cmd",
            "dependencies": ["producer"],
            "inputSources": [
                {"name": "HOST", "taskRef": "producer", "jsonPath": "$.host"},
                {"name": "PORT", "taskRef": "producer", "jsonPath": "$.port"},
                {"name": "CODE", "taskRef": "producer", "field": "errorCode"}
            ],
            "inputTemplate": "echo connect ${HOST}:${PORT} after exit ${CODE}",
            "expect": "connect db-1:5432 after exit 0"
        }),
    )
    .await;
    create_task(
        &env,
        "no-source",
        json!({
            "type": "cmd",
            "inputSources": [{"name": "X", "taskRef": "ghost"}],
            "inputTemplate": "echo ${X}"
        }),
    )
    .await;
    create_task(
        &env,
        "with-default",
        json!({
            "type": "cmd",
            "inputSources": [{"name": "X", "taskRef": "ghost", "default": "fallback"}],
            "inputTemplate": "echo value=${X}",
            "expect": "value=fallback"
        }),
    )
    .await;
    wait_for_phase(&env, "consumer", Phase::Succeeded, T).await;
    wait_for_phase(&env, "with-default", Phase::Succeeded, T).await;
    failed_with(&env, "no-source", "InputUnavailable", "McallTask \"ghost\"").await;
    op.stop().await;
}

#[tokio::test]
async fn a_run_the_api_server_will_not_prepare_says_why_and_runs_once_it_can() {
    let env = test_env("prepare").await;
    // The operator as a ServiceAccount that may do everything it needs but read Secrets.
    let role = |name: &str, rules: serde_json::Value| {
        serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(json!({
            "metadata": {"name": name}, "rules": rules
        }))
        .unwrap()
    };
    let roles: kube::Api<k8s_openapi::api::rbac::v1::Role> =
        kube::Api::namespaced(env.client.clone(), &env.namespace);
    let bindings: kube::Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        kube::Api::namespaced(env.client.clone(), &env.namespace);
    let bind = |role: &str| {
        serde_json::from_value::<k8s_openapi::api::rbac::v1::RoleBinding>(json!({
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "no-secrets", "namespace": env.namespace}]
        }))
        .unwrap()
    };
    let pp = kube::api::PostParams::default();
    roles
        .create(&pp, &role("operate", json!([
            {"apiGroups": ["mcall.tz.io"], "resources": ["mcalltasks"], "verbs": ["get", "list", "watch", "patch", "update"]},
            {"apiGroups": ["mcall.tz.io"], "resources": ["mcalltasks/status"], "verbs": ["get", "patch", "update"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "patch"]}
        ])))
        .await
        .unwrap();
    bindings.create(&pp, &bind("operate")).await.unwrap();
    let client = plane()
        .service_account_client(&env.namespace, "no-secrets")
        .await
        .unwrap();
    create_secret(&env, "creds", "token", "t0ken").await;
    let op = start_operator_as(client, config_for(&env));
    create_task(
        &env,
        "needs-secret",
        json!({"type": "cmd", "input": "echo got=$TOKEN",
               "environmentFrom": [{"name": "TOKEN", "secretKeyRef": {"name": "creds", "key": "token"}}]}),
    )
    .await;
    // And one whose Secret does not exist: forbidden first, then missing.
    create_task(
        &env,
        "needs-ghost",
        json!({"type": "cmd", "input": "echo never",
               "environmentFrom": [{"name": "TOKEN", "secretKeyRef": {"name": "ghost", "key": "token"}}]}),
    )
    .await;
    let prepare_failed = |s: &McallTaskStatus| {
        s.conditions
            .iter()
            .flatten()
            .any(|c| c.r#type == "Ready" && c.reason == "PrepareFailed")
    };
    wait_for(&env, "needs-ghost", T, "PrepareFailed", prepare_failed).await;
    let waiting = wait_for(&env, "needs-secret", T, "PrepareFailed", prepare_failed)
        .await
        .status
        .unwrap();
    assert_eq!(waiting.phase, Some(Phase::Pending));
    assert!(
        waiting
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("forbidden"),
        "{:?}",
        waiting.message
    );
    // Allowed now: the retry (5 s after the first failure) runs it.
    roles
        .create(
            &pp,
            &role(
                "read-secrets",
                json!([
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
                ]),
            ),
        )
        .await
        .unwrap();
    bindings.create(&pp, &bind("read-secrets")).await.unwrap();
    let done = wait_for_phase(&env, "needs-secret", Phase::Succeeded, T).await;
    // Written onto the version its own PrepareFailed made, not lost to a conflict.
    failed_with(
        &env,
        "needs-ghost",
        "InvalidSpec",
        "spec.environmentFrom[0].secretKeyRef",
    )
    .await;
    assert!(
        done.status
            .unwrap()
            .result
            .unwrap()
            .output
            .unwrap()
            .contains("got=***"),
        "ran with the Secret's value (redacted in status)"
    );
    op.stop().await;
}
