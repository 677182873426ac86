//! The generated CRDs on a real kube-apiserver: they install and become Established, document
//! themselves in `kubectl explain`, show their printer columns, apply server-side defaults,
//! accept every example and refuse invalid objects at admission with a message naming the field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use kube::Api;
use kube::api::{DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use mcall_generated::{ExecutionMode, McallTask, McallWorkflow, ScheduleConcurrencyPolicy};
use mcall_tests::{ControlPlane, create_test_namespace};
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(mut cmd: Command) -> Output {
    let out = cmd
        .current_dir(root())
        .output()
        .expect("the command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Installs the generated CRDs once per test binary and waits until they are Established.
fn plane_with_crds() -> &'static ControlPlane {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let plane = ControlPlane::shared();
    INSTALLED.get_or_init(|| {
        let mut apply = plane.kubectl();
        apply.args(["apply", "--server-side", "-f", "helm/mcall-operator/crds/"]);
        run(apply);
        let mut wait = plane.kubectl();
        wait.args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/mcalltasks.mcall.tz.io",
            "crd/mcallworkflows.mcall.tz.io",
        ]);
        run(wait);
    });
    plane
}

fn stdout(out: Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl explain`, retried: the API server publishes a new CRD's OpenAPI a moment after the
/// CRD becomes Established.
fn explain(plane: &ControlPlane, what: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = plane
            .kubectl()
            .args(["explain", what])
            .output()
            .expect("kubectl starts");
        if out.status.success() {
            return stdout(out);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kubectl explain {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[tokio::test]
async fn crds_become_established_and_explain_shows_the_spec_docs() {
    let plane = plane_with_crds();
    let text = explain(plane, "mcalltask.spec");
    assert!(
        text.contains("What to run, how to judge the result, and when."),
        "{text}"
    );
    assert!(text.contains("retryCount"), "{text}");
    let text = explain(plane, "mcalltask.spec.timeout");
    assert!(text.contains("Seconds one execution may take"), "{text}");

    let text = explain(plane, "mcallworkflow.spec.tasks");
    assert!(
        text.contains("names are unique within the workflow"),
        "{text}"
    );
}

#[tokio::test]
async fn server_side_defaults_appear_in_typed_objects() {
    let plane = plane_with_crds();
    let client = plane.admin_client().await.unwrap();
    let ns = create_test_namespace(&client, "crd-defaults")
        .await
        .unwrap();

    let tasks: Api<McallTask> = Api::namespaced(client.clone(), &ns);
    // Created untyped so only what a user writes is sent; the server fills in the rest.
    let raw: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource("McallTask", "mcalltasks"));
    let raw_value = json!({"apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "metadata": {"name": "bare"}, "spec": {"type": "cmd", "input": "true"}});
    raw.create(
        &PostParams::default(),
        &serde_json::from_value(raw_value).unwrap(),
    )
    .await
    .unwrap();
    let stored = tasks.get("bare").await.unwrap();
    assert_eq!(stored.spec.timeout, 30);
    assert_eq!(stored.spec.retry_count, 0);
    assert_eq!(stored.spec.execution_mode, ExecutionMode::Sequential);
    assert!(!stored.spec.fail_fast);
    assert!(!stored.spec.suspend);
    assert_eq!(
        stored.spec.concurrency_policy,
        ScheduleConcurrencyPolicy::Allow
    );
    assert_eq!(stored.spec.successful_runs_history_limit, 3);
    assert_eq!(stored.spec.failed_runs_history_limit, 1);
    // No status was written: the API server shows the status's server default.
    let status = stored
        .status
        .expect("the status defaults to {phase: Pending}");
    assert_eq!(status.phase, Some(mcall_generated::Phase::Pending));
    assert_eq!(status.observed_generation, None);
    // The raw stored object carries the defaults too (not only serde's fallbacks).
    let stored_raw = raw.get("bare").await.unwrap();
    assert_eq!(stored_raw.data["spec"]["timeout"], json!(30));
    assert_eq!(stored_raw.data["status"], json!({"phase": "Pending"}));
    assert_eq!(
        stored_raw.data["spec"]["executionMode"],
        json!("sequential")
    );

    let workflows: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &resource("McallWorkflow", "mcallworkflows"),
    );
    let wf = json!({"apiVersion": "mcall.tz.io/v1", "kind": "McallWorkflow", "metadata": {"name": "wf"},
        "spec": {"tasks": [{"name": "a", "type": "cmd", "input": "true"}]}});
    workflows
        .create(&PostParams::default(), &serde_json::from_value(wf).unwrap())
        .await
        .unwrap();
    let stored_wf = workflows.get("wf").await.unwrap();
    assert_eq!(stored_wf.data["spec"]["concurrency"], json!(1));
    assert_eq!(stored_wf.data["spec"]["timeout"], json!(300));
    // A step's McallTask fields carry no default: unset, they fall to its template, and then to
    // McallTask's own default when the step's task is created.
    assert_eq!(stored_wf.data["spec"]["tasks"][0].get("timeout"), None);
    let typed: McallWorkflow = Api::namespaced(client, &ns).get("wf").await.unwrap();
    assert_eq!(typed.spec.concurrency, 1);
    assert_eq!(typed.spec.tasks[0].retry_count, None);
}

#[tokio::test]
async fn examples_are_accepted_and_printer_columns_show() {
    let plane = plane_with_crds();
    let client = plane.admin_client().await.unwrap();
    let ns = create_test_namespace(&client, "crd-examples")
        .await
        .unwrap();
    let mut apply = plane.kubectl();
    apply.args([
        "apply",
        "--server-side",
        "--validate=strict",
        "-n",
        &ns,
        "-f",
        "examples/",
    ]);
    let applied = stdout(run(apply));
    for name in [
        "system-info",
        "http-health",
        "disk-monitor",
        "memory-check",
        "backup-task",
        "http-check-template",
    ] {
        assert!(
            applied.contains(&format!("mcalltask.mcall.tz.io/{name} serverside-applied")),
            "{applied}"
        );
    }
    for name in [
        "monitoring-workflow",
        "deployment-workflow",
        "backup-workflow",
        "health-check-workflow",
    ] {
        assert!(
            applied.contains(&format!(
                "mcallworkflow.mcall.tz.io/{name} serverside-applied"
            )),
            "{applied}"
        );
    }

    let mut get = plane.kubectl();
    get.args(["get", "mct", "-n", &ns]);
    let table = stdout(run(get));
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "TYPE", "PHASE", "CODE", "LAST SCHEDULE", "AGE"] {
        assert!(header.contains(column), "{column} missing from {header:?}");
    }
    assert!(
        !header.contains("NEXT"),
        "priority-1 columns only show with -o wide: {header:?}"
    );
    assert!(
        table.contains("system-info") && table.contains("cmd"),
        "{table}"
    );

    let mut wide = plane.kubectl();
    wide.args(["get", "mct", "-n", &ns, "-o", "wide"]);
    let header = stdout(run(wide))
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    for column in ["SCHEDULE", "NEXT", "LAST SUCCESS", "MESSAGE"] {
        assert!(
            header.contains(column),
            "{column} missing from wide {header:?}"
        );
    }

    // The category lists both kinds, and short names work.
    let mut category = plane.kubectl();
    category.args(["get", "mcall", "-n", &ns, "-o", "name"]);
    let names = stdout(run(category));
    assert!(
        names.contains("mcalltask.mcall.tz.io/backup-task"),
        "{names}"
    );
    assert!(
        names.contains("mcallworkflow.mcall.tz.io/backup-workflow"),
        "{names}"
    );
    let mut short = plane.kubectl();
    short.args(["get", "mcwf", "-n", &ns]);
    assert!(stdout(run(short)).contains("deployment-workflow"));
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("mcall.tz.io", "v1", kind), plural)
}

fn task(spec: Value) -> Value {
    json!({"apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "metadata": {"name": "bad"}, "spec": spec})
}

fn workflow(spec: Value) -> Value {
    json!({"apiVersion": "mcall.tz.io/v1", "kind": "McallWorkflow", "metadata": {"name": "bad"}, "spec": spec})
}

#[tokio::test]
async fn invalid_objects_are_refused_with_a_message_naming_the_field() {
    let plane = plane_with_crds();
    let client = plane.admin_client().await.unwrap();
    let ns = create_test_namespace(&client, "crd-invalid").await.unwrap();
    let ok_task = |extra: Value| {
        let mut spec = json!({"type": "cmd", "input": "true"});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        task(spec)
    };
    let one_task = |extra: Value| {
        let mut t = json!({"name": "a", "type": "cmd", "input": "true"});
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        workflow(json!({"tasks": [t]}))
    };
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "type not in the enum",
            task(json!({"type": "ftp", "input": "x"})),
            &["spec.type", "Unsupported value", "\"ftp\""],
        ),
        (
            "missing type",
            task(json!({"input": "x"})),
            &["spec.type", "Required value"],
        ),
        (
            "missing input",
            task(json!({"type": "cmd"})),
            &["spec.input is required"],
        ),
        (
            "negative timeout",
            ok_task(json!({"timeout": -1})),
            &["spec.timeout", "greater than or equal to 1"],
        ),
        (
            "timeout of the wrong type",
            ok_task(json!({"timeout": "30s"})),
            &["spec.timeout", "must be of type integer"],
        ),
        (
            "retryCount out of range",
            ok_task(json!({"retryCount": 1000})),
            &["spec.retryCount", "less than or equal to 100"],
        ),
        (
            "malformed schedule",
            ok_task(json!({"schedule": "every minute"})),
            &["spec.schedule", "should match"],
        ),
        (
            "six-field schedule",
            ok_task(json!({"schedule": "* * * * * *"})),
            &["spec.schedule"],
        ),
        (
            "unknown executionMode",
            ok_task(json!({"executionMode": "random"})),
            &["spec.executionMode", "Unsupported value"],
        ),
        (
            "HTTP status code out of range",
            task(
                json!({"type": "get", "input": "http://x", "httpValidation": {"expectedStatusCodes": [200, 700]}}),
            ),
            &["spec.httpValidation.expectedStatusCodes[1]", "599"],
        ),
        (
            "unknown responseBodyMatch",
            task(
                json!({"type": "get", "input": "http://x", "httpValidation": {"responseBodyMatch": "fuzzy"}}),
            ),
            &["spec.httpValidation.responseBodyMatch"],
        ),
        (
            "body on a get",
            task(json!({"type": "get", "input": "http://x", "body": "{}"})),
            &["spec.body is only allowed when spec.type is post"],
        ),
        (
            "timeZone without schedule",
            ok_task(json!({"timeZone": "Europe/Berlin"})),
            &["spec.timeZone needs spec.schedule"],
        ),
        (
            "environmentFrom with both sources",
            ok_task(
                json!({"environmentFrom": [{"name": "X", "secretKeyRef": {"name": "s", "key": "k"}, "configMapKeyRef": {"name": "c", "key": "k"}}]}),
            ),
            &[
                "spec.environmentFrom[0]",
                "exactly one of secretKeyRef and configMapKeyRef",
            ],
        ),
        (
            "invalid environment variable name",
            ok_task(
                json!({"environmentFrom": [{"name": "1X", "secretKeyRef": {"name": "s", "key": "k"}}]}),
            ),
            &["spec.environmentFrom[0].name"],
        ),
        (
            "duplicate workflow task names",
            workflow(
                json!({"tasks": [{"name": "a", "type": "cmd", "input": "x"}, {"name": "a", "type": "cmd", "input": "y"}]}),
            ),
            &["spec.tasks[1]", "Duplicate value"],
        ),
        (
            "workflow without tasks",
            workflow(json!({"tasks": []})),
            &["spec.tasks", "should have at least 1 items"],
        ),
        (
            "workflow task depends on an unknown task",
            workflow(
                json!({"tasks": [{"name": "a", "type": "cmd", "input": "x", "dependencies": ["ghost"]}]}),
            ),
            &[
                "spec.tasks",
                "every spec.tasks[].dependencies entry must name a task of this workflow",
            ],
        ),
        (
            "workflow task name not a DNS label",
            one_task(json!({"name": "Bad_Name"})),
            &["spec.tasks[0].name"],
        ),
        (
            "workflow task with type and taskRef",
            one_task(json!({"taskRef": {"name": "other"}})),
            &["spec.tasks[0]", "set exactly one of type"],
        ),
        (
            "workflow allowing concurrent runs",
            workflow(
                json!({"schedule": "@hourly", "concurrencyPolicy": "Allow", "tasks": [{"name": "a", "type": "cmd", "input": "x"}]}),
            ),
            &["spec.concurrencyPolicy", "one run at a time"],
        ),
        (
            "workflow concurrency 0",
            workflow(
                json!({"concurrency": 0, "tasks": [{"name": "a", "type": "cmd", "input": "x"}]}),
            ),
            &["spec.concurrency", "greater than or equal to 1"],
        ),
        (
            "workflow timeout negative",
            workflow(json!({"timeout": -5, "tasks": [{"name": "a", "type": "cmd", "input": "x"}]})),
            &["spec.timeout"],
        ),
    ];
    assert!(cases.len() >= 12);
    let mut failures = Vec::new();
    for (name, object, expected) in &cases {
        let kind = object["kind"].as_str().unwrap();
        let plural = if kind == "McallTask" {
            "mcalltasks"
        } else {
            "mcallworkflows"
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &resource(kind, plural));
        let obj: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {
                failures.push(format!("{name}: accepted"));
                api.delete("bad", &Default::default()).await.ok();
            }
            Err(kube::Error::Api(status)) => {
                let missing: Vec<_> = expected
                    .iter()
                    .filter(|e| !status.message.contains(**e))
                    .collect();
                if status.code != 422 || !missing.is_empty() {
                    failures.push(format!(
                        "{name}: code {} message {:?} lacks {missing:?}",
                        status.code, status.message
                    ));
                }
            }
            Err(other) => failures.push(format!("{name}: unexpected error {other}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
