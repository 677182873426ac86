//! The operator as users run it: the chart installed on the local node (kubelet + containerd),
//! the operator in its pod with the chart's ServiceAccount and only the generated RBAC, its
//! image built from this test's `mcall` binary and imported (there is no registry). Needs root.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::cluster::{
    count, eventually, eventually_or, kubectl, kubectl_apply, recorder, recorder_service, run,
    task_status, text, wait_phase, wait_routed,
};

use mcall_tests::ControlPlane;
use mcall_tests::image::{Image, OperatorFiles, Platform, operator_recipe, write_archive_file};
use mcall_tests::node::NODE_IP;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// One test at a time: each installs operators that watch every namespace, and two of them
/// would run each other's tasks.
static SERIAL: Mutex<()> = Mutex::new(());

/// The plane with a node, and the operator image (repository, tag) imported into it.
fn cluster() -> (&'static ControlPlane, &'static (String, String)) {
    static IMAGE: OnceLock<(String, String)> = OnceLock::new();
    let plane = ControlPlane::shared_with_node();
    let image = IMAGE.get_or_init(|| {
        let files = OperatorFiles::discover(Path::new(env!("CARGO_BIN_EXE_mcall")))
            .expect("the operator image's files");
        let image = Image::build(&operator_recipe(&files), &Platform::host()).expect("image");
        let path = plane.dir().join("mcall-operator.tar");
        let archive = write_archive_file(&image, &path).expect("image archive");
        plane.import_image(&archive).expect("import");
        (
            archive.reference.repository.clone(),
            archive.reference.tag.clone(),
        )
    });
    (plane, image)
}

/// An environment of spec/environments.yaml: (values file, release, namespace).
struct Env {
    name: &'static str,
    release: &'static str,
    namespace: &'static str,
}

const DEV: Env = Env {
    name: "dev",
    release: "mcall-operator-dev",
    namespace: "mcall-dev",
};
const STAGING: Env = Env {
    name: "staging",
    release: "mcall-operator-staging",
    namespace: "mcall-staging",
};
const PROD: Env = Env {
    name: "prod",
    release: "mcall-operator-prod",
    namespace: "mcall-system",
};

/// `helm upgrade --install` with the environment's values and the imported image, waiting for
/// the rollout (pods Ready through their readiness probe).
/// An installed release, uninstalled when dropped: a test that fails must not leave an operator
/// watching every namespace behind for the next one.
struct Installed<'a> {
    plane: &'a ControlPlane,
    release: &'static str,
    namespace: &'static str,
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        // Already gone after a test's own `uninstall`: helm then fails, which is fine.
        let _ = run({
            let mut cmd = self.plane.helm();
            cmd.args([
                "uninstall",
                self.release,
                "--namespace",
                self.namespace,
                "--wait",
            ]);
            cmd
        });
    }
}

fn install<'a>(
    plane: &'a ControlPlane,
    env: &Env,
    image: &(String, String),
    extra: &[&str],
) -> Installed<'a> {
    let out = run({
        let mut cmd = plane.helm();
        cmd.current_dir(root())
            .args(["upgrade", "--install", env.release, "helm/mcall-operator"])
            .args(["--namespace", env.namespace, "--create-namespace"])
            .arg("--values")
            .arg(format!("helm/mcall-operator/values-{}.yaml", env.name))
            .arg("--set")
            .arg(format!("image.repository={}", image.0))
            .arg("--set")
            .arg(format!("image.tag={}", image.1))
            .args(["--set", "image.pullPolicy=IfNotPresent"])
            .arg("--set")
            .arg(format!("executor.image={}", shell_image(plane)))
            // The local cluster has no cert-manager: the chart generates the webhook's
            // certificate instead (prod keeps failurePolicy Fail).
            .args(["--set", "webhook.certManager.enabled=false"])
            .args(["--wait", "--timeout=180s"])
            .args(extra);
        cmd
    });
    if !out.status.success() {
        let pods = run({
            let mut cmd = plane.kubectl();
            cmd.args(["-n", env.namespace, "describe", "pods"]);
            cmd
        });
        panic!("helm install {}: {}\n{}", env.name, text(&out), text(&pods));
    }
    Installed {
        plane,
        release: env.release,
        namespace: env.namespace,
    }
}

fn uninstall(plane: &ControlPlane, env: &Env) {
    let out = run({
        let mut cmd = plane.helm();
        cmd.args([
            "uninstall",
            env.release,
            "--namespace",
            env.namespace,
            "--wait",
        ]);
        cmd
    });
    assert!(out.status.success(), "helm uninstall: {}", text(&out));
}

fn pods(plane: &ControlPlane, env: &Env) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={}", env.release);
    kubectl(
        plane,
        &[
            "-n",
            env.namespace,
            "get",
            "pods",
            "-l",
            &selector,
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

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
        let pods = pods(plane, &env);
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
    assert_eq!(pods(plane, &env).len(), 2, "staging runs two replicas");
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

/// The shell image (busybox), imported into the node once, for commands run in pods.
fn shell_image(plane: &ControlPlane) -> &'static String {
    use mcall_tests::image::{ShellFiles, shell_recipe};
    static SHELL: OnceLock<String> = OnceLock::new();
    SHELL.get_or_init(|| {
        let recipe = shell_recipe(&ShellFiles::discover().expect("busybox-static"));
        let image = Image::build(&recipe, &Platform::host()).expect("shell image");
        let archive = write_archive_file(&image, &plane.dir().join("shell.tar")).expect("archive");
        plane.import_image(&archive).expect("import");
        archive.reference.to_string()
    })
}

fn pod_task(name: &str, image: &str, input: &str, timeout: u32) -> String {
    format!(
        "apiVersion: mcall.tz.io/v1\nkind: McallTask\nmetadata:\n  name: {name}\nspec:\n  type: cmd\n  input: {input:?}\n  timeout: {timeout}\n  executor:\n    type: Pod\n    image: {image}\n"
    )
}

#[test]
fn commands_run_in_pods_of_their_own_with_the_same_semantics() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (plane, image) = cluster();
    let shell = shell_image(plane);
    let _installed = install(plane, &DEV, image, &[]);
    let ns = "mcall-pod-exec";
    kubectl(plane, &["create", "namespace", ns]);
    kubectl_apply(
        plane,
        ns,
        &pod_task("echo", shell, "echo hello from $(hostname)", 30),
    );
    kubectl_apply(
        plane,
        ns,
        &pod_task("exit3", shell, "echo failing; exit 3", 30),
    );
    kubectl_apply(plane, ns, &pod_task("slow", shell, "sleep 60", 3));
    kubectl_apply(
        plane,
        ns,
        &pod_task("no-image", "mcall.local/missing:1", "true", 30),
    );
    // A memory limit the command exceeds (busybox dd holds a 64 MiB block in memory).
    let oom = pod_task(
        "oom",
        shell,
        "dd if=/dev/zero of=/dev/null bs=64M count=1",
        30,
    ) + "  resources:\n    limits: {memory: 16Mi}\n";
    kubectl_apply(plane, ns, &oom);
    // A Secret's value reaches the command by reference and is masked in the status.
    kubectl(
        plane,
        &[
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=token=s3cr3t-value",
        ],
    );
    let secret = pod_task("secret", shell, "echo token=$TOKEN", 30)
        + "  environmentFrom:\n    - name: TOKEN\n      secretKeyRef: {name: creds, key: token}\n";
    kubectl_apply(plane, ns, &secret);

    // Its output comes from the pod (named after the task), and a success leaves no pod.
    let echo = wait_phase(plane, ns, "echo");
    assert_eq!(echo["phase"], "Succeeded", "{echo}");
    let output = echo["result"]["output"].as_str().unwrap_or_default();
    assert!(output.contains("hello from echo-"), "{echo}");
    // The exit code is the error code, the output still judged and reported.
    let exit3 = wait_phase(plane, ns, "exit3");
    assert_eq!(exit3["phase"], "Failed", "{exit3}");
    assert_eq!(exit3["result"]["errorCode"], "3", "{exit3}");
    assert!(
        exit3["result"]["output"]
            .as_str()
            .unwrap_or_default()
            .contains("failing")
    );
    // The timeout ends the pod, not only the wait for it.
    let slow = wait_phase(plane, ns, "slow");
    assert_eq!(slow["result"]["errorCode"], "Timeout", "{slow}");
    // A missing image is its own reason, not a timeout.
    let missing = wait_phase(plane, ns, "no-image");
    assert_eq!(
        missing["result"]["errorCode"], "ImagePullFailed",
        "{missing}"
    );

    let oom = wait_phase(plane, ns, "oom");
    assert_eq!(oom["result"]["errorCode"], "OOMKilled", "{oom}");
    let secret = wait_phase(plane, ns, "secret");
    assert_eq!(secret["phase"], "Succeeded", "{secret}");
    let shown = secret["result"]["output"].as_str().unwrap_or_default();
    assert!(
        shown.contains("token=***") && !shown.contains("s3cr3t"),
        "{secret}"
    );

    let pods = |selector: &str| {
        kubectl(
            plane,
            &["-n", ns, "get", "pods", "-l", selector, "-o", "name"],
        )
    };
    eventually("the finished pods to go", Duration::from_secs(30), || {
        (pods("mcall.tz.io/task in (echo,slow)").is_empty()).then_some(())
    });
    // A failed command's pod stays for `kubectl logs`, until its task is deleted.
    assert!(!pods("mcall.tz.io/task=exit3").is_empty());

    // Deleting a task whose command runs ends its pod (the process is gone, not orphaned).
    kubectl_apply(plane, ns, &pod_task("long", shell, "sleep 300", 600));
    eventually("the long command's pod", Duration::from_secs(60), || {
        (!pods("mcall.tz.io/task=long").is_empty()).then_some(())
    });
    kubectl(
        plane,
        &["-n", ns, "delete", "mcalltask", "long", "--wait=false"],
    );
    eventually(
        "the deleted task's pod to go",
        Duration::from_secs(60),
        || pods("mcall.tz.io/task=long").is_empty().then_some(()),
    );

    // A workflow step runs in a pod too (the step's executor, carried into its child task).
    let workflow = format!(
        "apiVersion: mcall.tz.io/v1\nkind: McallWorkflow\nmetadata:\n  name: wf\nspec:\n  tasks:\n    - name: step\n      type: cmd\n      input: hostname\n      executor: {{type: Pod, image: {shell}}}\n"
    );
    kubectl_apply(plane, ns, &workflow);
    let phase = eventually("the workflow to end", Duration::from_secs(60), || {
        let phase = kubectl(
            plane,
            &[
                "-n",
                ns,
                "get",
                "mcallworkflow",
                "wf",
                "-o",
                "jsonpath={.status.phase}",
            ],
        );
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
    });
    assert_eq!(phase, "Succeeded");
    let child = kubectl(
        plane,
        &[
            "-n",
            ns,
            "get",
            "mcalltasks",
            "-l",
            "mcall.tz.io/workflow=wf",
            "-o",
            "jsonpath={.items[0].status.result.output}",
        ],
    );
    assert!(child.trim().starts_with("wf-"), "the step ran on {child:?}");
    uninstall(plane, &DEV);
    kubectl(plane, &["delete", "namespace", ns, "--wait=false"]);
    kubectl(
        plane,
        &["delete", "namespace", DEV.namespace, "--wait=false"],
    );
}
