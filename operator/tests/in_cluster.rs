//! The operator as users run it: the chart installed on the local node (kubelet + containerd),
//! the operator in its pod with the chart's ServiceAccount and only the generated RBAC, its
//! image built from this test's `mcall` binary and imported (there is no registry). Needs root.

mod common;

use std::time::Duration;

use common::cluster::{
    count, eventually, eventually_or, kubectl, kubectl_apply, recorder, recorder_service, run,
    task_status, text, wait_phase, wait_routed,
};
use common::release::{DEV, Env, PROD, SERIAL, STAGING, cluster, install, release_pods, uninstall};

use mcall_tests::ControlPlane;
use mcall_tests::node::NODE_IP;
use serde_json::Value;

/// Everything the release made, except CRDs (helm keeps those).
fn release_objects(plane: &ControlPlane, env: &Env) -> String {
    let selector = format!("app.kubernetes.io/instance={}", env.release);
    kubectl(
        plane,
        &[
            "get",
            "deployments,replicasets,pods,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings,poddisruptionbudgets",
            "-A",
            "-l",
            &selector,
            "-o",
            "name",
        ],
    )
}

#[test]
fn the_chart_runs_the_operator_in_its_pod_in_every_environment() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (plane, image) = cluster();
    let (port, seen) = recorder();
    for env in [DEV, STAGING, PROD] {
        let _installed = install(plane, &env, image, &[]);
        let pods = release_pods(plane, &env);
        let replicas: usize = kubectl(
            plane,
            &[
                "-n",
                env.namespace,
                "get",
                "deployment",
                env.release,
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
        )
        .parse()
        .unwrap();
        assert_eq!(
            replicas,
            pods.len(),
            "{}: ready replicas {pods:?}",
            env.name
        );

        // The Deployment's security context is honoured: non-root, read-only root.
        let pod = &pods[0];
        // (The image's busybox runs its applets from `sh -c`; only `sh` is on PATH.)
        let uid = kubectl(
            plane,
            &["-n", env.namespace, "exec", pod, "--", "sh", "-c", "id -u"],
        );
        assert_eq!(uid, "65532", "{}", env.name);
        let write = |path: &str| {
            run({
                let mut cmd = plane.kubectl();
                cmd.args(["-n", env.namespace, "exec", pod, "--", "sh", "-c"]);
                cmd.arg(format!("touch {path}"));
                cmd
            })
        };
        let root = write("/probe");
        assert!(
            !root.status.success() && text(&root).contains("Read-only file system"),
            "{}: the root file system is writable: {}",
            env.name,
            text(&root)
        );
        let tmp = write("/tmp/probe");
        assert!(tmp.status.success(), "{}: /tmp: {}", env.name, text(&tmp));

        // The operator in its pod (in-cluster config, the chart's ServiceAccount and RBAC)
        // runs a task in its namespace: an HTTP check of `http://recorder.<namespace>.svc`, a
        // Service (cluster DNS, kube-proxy) whose endpoint is this test's server.
        kubectl_apply(plane, env.namespace, &recorder_service(port));
        wait_routed(env.namespace, "recorder");
        let path = format!("/{}", env.name);
        let task = format!(
            "apiVersion: mcall.tz.io/v1\nkind: McallTask\nmetadata:\n  name: reach-{name}\nspec:\n  type: get\n  input: http://recorder.{ns}.svc{path}\n  timeout: 5\n",
            name = env.name,
            ns = env.namespace,
        );
        kubectl_apply(plane, env.namespace, &task);
        let status = wait_phase(plane, env.namespace, &format!("reach-{}", env.name));
        assert_eq!(status["phase"], "Succeeded", "{}: {status}", env.name);
        assert_eq!(count(&seen, &path), 1, "{}", env.name);

        // Where a command runs by default: the operator's pod in dev and staging, a pod of its
        // own (named after the task) in prod.
        let task = "apiVersion: mcall.tz.io/v1\nkind: McallTask\nmetadata:\n  name: where\nspec:\n  type: cmd\n  input: hostname\n";
        kubectl_apply(plane, env.namespace, task);
        let status = wait_phase(plane, env.namespace, "where");
        assert_eq!(status["phase"], "Succeeded", "{}: {status}", env.name);
        let host = status["result"]["output"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let expected = if env.name == "prod" {
            "where-"
        } else {
            env.release
        };
        assert!(host.starts_with(expected), "{}: ran on {host:?}", env.name);

        uninstall(plane, &env);
        // The pods go after helm's objects (the garbage collector, then their graceful stop).
        let mut left = String::new();
        let gone = eventually_or(
            "the release's objects to go",
            Duration::from_secs(60),
            || {
                left = release_objects(plane, &env);
                left.is_empty().then_some(())
            },
        );
        assert!(gone.is_some(), "{}: helm uninstall left {left}", env.name);
        kubectl(
            plane,
            &[
                "get",
                "crd",
                "mcalltasks.mcall.tz.io",
                "mcallworkflows.mcall.tz.io",
            ],
        );
        kubectl(
            plane,
            &["delete", "namespace", env.namespace, "--wait=false"],
        );
    }
}

#[test]
fn a_scheduled_task_ticks_exactly_once_through_a_rollout_restart() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (plane, image) = cluster();
    let (port, seen) = recorder();
    let env = Env {
        name: "staging",
        release: "mcall-rollout",
        namespace: "mcall-rollout",
    };
    let _installed = install(
        plane,
        &env,
        image,
        &["--set", "commandNamespaces={mcall-rollout}"],
    );
    assert_eq!(
        release_pods(plane, &env).len(),
        2,
        "staging runs two replicas"
    );
    let task = format!(
        "apiVersion: mcall.tz.io/v1\nkind: McallTask\nmetadata:\n  name: tick\nspec:\n  type: get\n  input: http://{NODE_IP}:{port}/tick\n  schedule: \"@every 2s\"\n  startingDeadlineSeconds: 60\n  successfulRunsHistoryLimit: 100\n  failedRunsHistoryLimit: 100\n"
    );
    kubectl_apply(plane, env.namespace, &task);
    eventually("three ticks", Duration::from_secs(30), || {
        (count(&seen, "/tick") >= 3).then_some(())
    });

    let selector = format!("app.kubernetes.io/instance={}", env.release);
    let name = kubectl(
        plane,
        &[
            "-n",
            env.namespace,
            "get",
            "deployment",
            "-l",
            &selector,
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    );
    let deployment = format!("deployment/{name}");
    kubectl(
        plane,
        &["-n", env.namespace, "rollout", "restart", &deployment],
    );
    kubectl(
        plane,
        &[
            "-n",
            env.namespace,
            "rollout",
            "status",
            &deployment,
            "--timeout=180s",
        ],
    );
    let after_rollout = count(&seen, "/tick");
    eventually(
        "three ticks after the rollout",
        Duration::from_secs(30),
        || (count(&seen, "/tick") >= after_rollout + 3).then_some(()),
    );

    // Stop ticking, let the last run be recorded, then compare runs and records.
    kubectl(
        plane,
        &[
            "-n",
            env.namespace,
            "patch",
            "mcalltask",
            "tick",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
    );
    // Once the last run is recorded, every tick that ran was recorded once, and every
    // recorded success reached this server once.
    let mut status = Value::Null;
    let settled = eventually_or(
        "the last tick to be recorded",
        Duration::from_secs(30),
        || {
            status = task_status(plane, env.namespace, "tick");
            let history = status["history"].as_array().cloned().unwrap_or_default();
            let succeeded = history.iter().filter(|r| r["phase"] == "Succeeded").count();
            (status["phase"] != "Running" && count(&seen, "/tick") == succeeded).then_some(history)
        },
    );
    let history =
        settled.unwrap_or_else(|| panic!("{} requests, status {status}", count(&seen, "/tick")));
    assert!(
        history.len() < 100,
        "the history was trimmed (limit 100): {status}"
    );
    let mut scheduled: Vec<&str> = history
        .iter()
        .filter_map(|r| r["scheduledTime"].as_str())
        .collect();
    scheduled.sort();
    let recorded = scheduled.len();
    scheduled.dedup();
    assert_eq!(
        recorded,
        scheduled.len(),
        "a tick was recorded twice: {status}"
    );
    uninstall(plane, &env);
    kubectl(
        plane,
        &["delete", "namespace", env.namespace, "--wait=false"],
    );
}

#[test]
fn deleting_a_namespace_with_tasks_completes_while_the_operator_runs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (plane, image) = cluster();
    let env = Env {
        name: "dev",
        release: "mcall-nsdel",
        namespace: "mcall-nsdel",
    };
    let _installed = install(plane, &env, image, &[]);
    kubectl(plane, &["create", "namespace", "mcall-nsdel-tasks"]);
    let task = "apiVersion: mcall.tz.io/v1\nkind: McallTask\nmetadata:\n  name: sleeper\nspec:\n  type: cmd\n  input: sleep 30\n  timeout: 60\n";
    kubectl_apply(plane, "mcall-nsdel-tasks", task);
    let mut last = Value::Null;
    let running = eventually_or("the task to run", Duration::from_secs(30), || {
        last = task_status(plane, "mcall-nsdel-tasks", "sleeper");
        (last["phase"] == "Running").then_some(())
    });
    assert!(running.is_some(), "the task did not run: {last}");
    kubectl(
        plane,
        &["delete", "namespace", "mcall-nsdel-tasks", "--timeout=60s"],
    );
    uninstall(plane, &env);
    kubectl(
        plane,
        &["delete", "namespace", env.namespace, "--wait=false"],
    );
}
