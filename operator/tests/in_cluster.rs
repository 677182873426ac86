//! The operator as users run it: the chart installed on the local node (kubelet + containerd),
//! the operator in its pod with the chart's ServiceAccount and only the generated RBAC, its
//! image built from this test's `mcall` binary and imported (there is no registry). Needs root.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("command starts")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// kubectl; its stdout, panicking with its output on failure.
fn kubectl(plane: &ControlPlane, args: &[&str]) -> String {
    let out = run({
        let mut cmd = plane.kubectl();
        cmd.args(args);
        cmd
    });
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn kubectl_apply(plane: &ControlPlane, namespace: &str, manifest: &str) {
    let mut child = plane
        .kubectl()
        .args(["-n", namespace, "apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kubectl apply: {}", text(&out));
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
fn install(plane: &ControlPlane, env: &Env, image: &(String, String), extra: &[&str]) {
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

/// Polls `check` every 200 ms until it returns Some; panics naming `what` after `timeout`.
fn eventually<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    eventually_or(what, timeout, check).unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Like [`eventually`], `None` after `timeout`.
fn eventually_or<T>(
    _what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn task_status(plane: &ControlPlane, namespace: &str, name: &str) -> Value {
    let json = kubectl(
        plane,
        &["-n", namespace, "get", "mcalltask", name, "-o", "json"],
    );
    serde_json::from_str::<Value>(&json).unwrap()["status"].clone()
}

fn wait_phase(plane: &ControlPlane, namespace: &str, name: &str) -> Value {
    eventually(&format!("{name} to end"), Duration::from_secs(60), || {
        let status = task_status(plane, namespace, name);
        matches!(status["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(status)
    })
}

/// An HTTP server on the node address (reachable from pods): path → times requested.
type Seen = Arc<Mutex<HashMap<String, usize>>>;

fn recorder() -> (u16, Seen) {
    let listener = TcpListener::bind((NODE_IP, 0)).expect("bind on the node address");
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            *log.lock().unwrap().entry(path).or_default() += 1;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (port, seen)
}

/// A Service `recorder` on port 80 whose endpoint is the recorder at the node address.
fn recorder_service(port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: recorder
spec:
  ports: [{{name: http, port: 80, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: recorder-node
  labels:
    kubernetes.io/service-name: recorder
addressType: IPv4
endpoints:
  - addresses: ["{NODE_IP}"]
ports:
  - name: http
    port: {port}
    protocol: TCP
"#
    )
}

fn count(seen: &Seen, path: &str) -> usize {
    seen.lock().unwrap().get(path).copied().unwrap_or(0)
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
        install(plane, &env, image, &[]);
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
        let write = run({
            let mut cmd = plane.kubectl();
            cmd.args([
                "-n",
                env.namespace,
                "exec",
                pod,
                "--",
                "sh",
                "-c",
                "touch /probe",
            ]);
            cmd
        });
        assert!(
            !write.status.success(),
            "{}: the root file system is writable",
            env.name
        );

        // The operator in its pod (in-cluster config, the chart's ServiceAccount and RBAC)
        // runs a task in its namespace: an HTTP check of `http://recorder.<namespace>.svc`, a
        // Service (cluster DNS, kube-proxy) whose endpoint is this test's server.
        kubectl_apply(plane, env.namespace, &recorder_service(port));
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
    install(
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
    std::thread::sleep(Duration::from_secs(3));
    let status = task_status(plane, env.namespace, "tick");
    let history = status["history"].as_array().cloned().unwrap_or_default();
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
    let succeeded = history.iter().filter(|r| r["phase"] == "Succeeded").count();
    assert_eq!(
        count(&seen, "/tick"),
        succeeded,
        "requests vs. succeeded runs: {status}"
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
    install(plane, &env, image, &[]);
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
