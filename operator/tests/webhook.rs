//! The admission webhook on the real API server: the server runs in this test on a loopback
//! port with a throwaway CA, a ValidatingWebhookConfiguration scoped to the test's namespace
//! sends it the reviews, and `kubectl apply` shows what a user sees. No node, no operator.

mod common;

use std::time::Duration;

use common::webhook::*;
use common::*;
use mcall::config::CommandPolicy;
use mcall::webhook::Settings;
use mcall_tests::ControlPlane;
use serde_json::json;

/// Every spec the controllers refuse (`common::invalid`, which their tests use too), as a
/// user would apply it: (what, manifest, the problem, refused or why admitted).
fn cases() -> Vec<(String, String, invalid::Invalid)> {
    let tasks = invalid::tasks().into_iter().map(|case| {
        let manifest = task_yaml(case.name, case.spec.clone());
        (format!("McallTask {}", case.name), manifest, case)
    });
    let workflows = invalid::workflows().into_iter().map(|case| {
        let manifest = workflow_spec_yaml(case.name, case.spec.clone());
        (format!("McallWorkflow {}", case.name), manifest, case)
    });
    tasks.chain(workflows).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_are_refused_naming_the_field_and_the_examples_admitted() {
    let env = test_env("webhook-refuses").await;
    let plane = plane();
    let dir = tempfile::tempdir().unwrap();
    let server = serving(dir.path(), &Ca::new("refuses"), plane, &env.namespace).await;

    for (what, manifest, case) in cases() {
        match case.admission {
            invalid::Admission::Refused => {
                assert_refused(plane, &env.namespace, &what, &manifest, case.problem)
            }
            invalid::Admission::Admitted(_) => {
                assert_admitted(plane, &env.namespace, &what, &manifest)
            }
        }
    }
    for example in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = example.unwrap().path();
        let manifest = std::fs::read_to_string(&path).unwrap();
        assert_admitted(
            plane,
            &env.namespace,
            &path.display().to_string(),
            &manifest,
        );
    }

    let line = json!([
        {"name": "a", "type": "cmd", "input": "true"},
        {"name": "b", "type": "cmd", "input": "true", "dependencies": ["a"]}
    ]);
    assert_admitted(
        plane,
        &env.namespace,
        "a valid workflow",
        &workflow_yaml("line", line),
    );
    let cycle = json!([
        {"name": "a", "type": "cmd", "input": "true", "dependencies": ["b"]},
        {"name": "b", "type": "cmd", "input": "true", "dependencies": ["a"]}
    ]);
    assert_refused(
        plane,
        &env.namespace,
        "an update introducing a cycle",
        &workflow_yaml("line", cycle),
        "spec.tasks: cycle a → b → a",
    );
    let task = |expect: &str| {
        task_yaml(
            "edited",
            json!({"type": "cmd", "input": "true", "expect": expect}),
        )
    };
    assert_admitted(plane, &env.namespace, "a valid task", &task("ok"));
    assert_refused(
        plane,
        &env.namespace,
        "an update breaking expect",
        &task("regex:("),
        "spec.expect",
    );

    unregister(plane, &env.namespace);
    server.stop().await;
}

/// What the binary's webhook sees beyond one object: a dependency cycle closed through tasks
/// that already exist, and commands in a namespace where the operator runs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_through_other_tasks_and_forbidden_commands_are_refused() {
    let env = test_env("webhook-others").await;
    let plane = plane();
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        commands: CommandPolicy::Namespaces(vec!["elsewhere".into()]),
        ..Settings::default()
    };
    let ca = Ca::new("others");
    let client = env.client.clone();
    let server = serving_with(dir.path(), &ca, plane, &env.namespace, settings, client).await;

    let get = |deps: serde_json::Value| json!({"type": "get", "input": "http://127.0.0.1:1/", "dependencies": deps});
    assert_admitted(
        plane,
        &env.namespace,
        "ping, waiting for pong",
        &task_yaml("ping", get(json!(["pong"]))),
    );
    assert_admitted(
        plane,
        &env.namespace,
        "after-ping",
        &task_yaml("after-ping", get(json!(["ping"]))),
    );
    assert_refused(
        plane,
        &env.namespace,
        "pong, closing the loop",
        &task_yaml("pong", get(json!(["after-ping"]))),
        "spec.dependencies: pong → after-ping → ping → pong",
    );
    assert_refused(
        plane,
        &env.namespace,
        "a cmd task where commands are not allowed",
        &task_yaml("cmd", json!({"type": "cmd", "input": "true"})),
        "spec.type: cmd tasks are not allowed",
    );
    assert_refused(
        plane,
        &env.namespace,
        "a workflow's cmd step where commands are not allowed",
        &workflow_yaml(
            "steps",
            json!([{"name": "a", "type": "cmd", "input": "true"}]),
        ),
        "spec.tasks[0].type: cmd tasks are not allowed",
    );

    unregister(plane, &env.namespace);
    server.stop().await;
}

/// With failurePolicy Fail and nothing answering, creates are refused, and deleting tasks,
/// workflows and their namespace still works: deletes are never sent to the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_webhook_down_deletes_still_work() {
    let env = test_env_with_gc("webhook-down").await;
    let plane = ControlPlane::shared_with_controller_manager();
    let dir = tempfile::tempdir().unwrap();
    let server = serving(dir.path(), &Ca::new("down"), plane, &env.namespace).await;
    let task = |name: &str| task_yaml(name, json!({"type": "cmd", "input": "true"}));
    let steps = json!([{"name": "a", "type": "cmd", "input": "true"}]);
    // "deleted" are deleted one by one, "left" go with their namespace.
    for name in ["deleted", "left"] {
        assert_admitted(plane, &env.namespace, "a task", &task(name));
        assert_admitted(
            plane,
            &env.namespace,
            "a workflow",
            &workflow_yaml(name, steps.clone()),
        );
    }

    server.stop().await;
    let out = apply(plane, Some(&env.namespace), &task("new"), &[]);
    assert!(
        !out.status.success(),
        "a create went through with the webhook down"
    );
    assert!(
        stderr(&out).contains("failed calling webhook"),
        "{}",
        stderr(&out)
    );

    for object in ["mcalltask/deleted", "mcallworkflow/deleted"] {
        let out = plane
            .kubectl()
            .args(["delete", "-n", &env.namespace, object, "--timeout=30s"])
            .output()
            .unwrap();
        assert!(out.status.success(), "deleting {object}: {}", stderr(&out));
    }
    let out = plane
        .kubectl()
        .args([
            "delete",
            "namespace",
            &env.namespace,
            "--wait=true",
            "--timeout=60s",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deleting the namespace: {}",
        stderr(&out)
    );
    let out = plane
        .kubectl()
        .args([
            "get",
            "namespace",
            &env.namespace,
            "--ignore-not-found",
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "the namespace is gone"
    );
    unregister(plane, &env.namespace);
}

/// The files are replaced by a certificate of another CA, and a registration that trusts only
/// that CA sends McallWorkflows for the first time (so the API server opens new connections):
/// they are judged only if the server presents the new certificate, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_used_without_a_restart() {
    let env = test_env("webhook-rotates").await;
    let plane = plane();
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Ca::new("before"), Ca::new("after"));
    let old_cert = old_ca.issue_into(dir.path());
    let server = Server::start(dir.path()).await;
    register(
        plane,
        &env.namespace,
        server.port,
        &old_ca.pem(),
        &["mcalltask"],
    );
    await_in_force(plane, &env.namespace);
    assert_eq!(server.presented(&old_ca).await, old_cert);

    let new_cert = new_ca.issue_into(dir.path());
    register(
        plane,
        &env.namespace,
        server.port,
        &new_ca.pem(),
        &["mcalltask", "mcallworkflow"],
    );
    let cyclic = json!([
        {"name": "a", "type": "cmd", "input": "true", "dependencies": ["a"]}
    ]);
    await_denied(plane, &env.namespace, &workflow_yaml("after", cyclic));
    assert_eq!(
        server.presented(&new_ca).await,
        new_cert,
        "the new certificate is presented"
    );

    unregister(plane, &env.namespace);
    server.stop().await;
}

/// `mcall operator` serves the webhook from its flags: a refusal through the binary, and a
/// certificate without its key stops it at start with one line saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_serves_the_webhook_from_its_flags() {
    use common::process::{free_port, operator_command, signal, wait_exit, wait_ready};
    let env = test_env("webhook-binary").await;
    let plane = plane();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("binary");
    ca.issue_into(dir.path());

    let alone = operator_command(&env, free_port(), 2)
        .arg("--webhook-cert-file")
        .arg(dir.path().join("tls.crt"))
        .output()
        .unwrap();
    assert_eq!(alone.status.code(), Some(1));
    assert!(stderr(&alone).contains("go together"), "{}", stderr(&alone));

    let (port, webhook_port) = (free_port(), free_port());
    let mut operator = operator_command(&env, port, 2)
        .env("MCALL_WEBHOOK_CERT_FILE", dir.path().join("tls.crt"))
        .env("MCALL_WEBHOOK_KEY_FILE", dir.path().join("tls.key"))
        .env("MCALL_WEBHOOK_ADDRESS", format!("127.0.0.1:{webhook_port}"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(port);
    register(
        plane,
        &env.namespace,
        webhook_port,
        &ca.pem(),
        &["mcalltask"],
    );
    await_in_force(plane, &env.namespace);

    unregister(plane, &env.namespace);
    signal(&operator, "-TERM");
    assert!(wait_exit(&mut operator, Duration::from_secs(30)).success());
}

/// The chart's webhook objects as each environment renders them are accepted by the API server
/// (server-side dry run: schema, the matchCondition's CEL). Cert-manager's kinds are left out:
/// the test plane has no cert-manager.
#[tokio::test]
async fn the_charts_registration_is_accepted_by_the_api_server() {
    let env = test_env("webhook-chart").await;
    let plane = plane();
    for environment in ["dev", "staging", "prod"] {
        let values = format!("helm/mcall-operator/values-{environment}.yaml");
        let out = plane
            .helm()
            .current_dir(root())
            .args(["template", "r", "helm/mcall-operator", "-n", &env.namespace])
            .args(["-f", &values, "--show-only", "templates/webhook.yaml"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let rendered = String::from_utf8(out.stdout).unwrap();
        let objects: Vec<&str> = rendered
            .split("\n---")
            .filter(|doc| !doc.contains("apiVersion: cert-manager.io/"))
            .collect();
        assert!(
            objects
                .iter()
                .any(|o| o.contains("kind: ValidatingWebhookConfiguration")),
            "{environment}: {rendered}"
        );
        let out = apply(plane, None, &objects.join("\n---"), &["--dry-run=server"]);
        assert!(out.status.success(), "{environment}: {}", stderr(&out));
    }
}
