//! Shared helpers of the operator's integration tests: the generated CRDs on the shared control
//! plane, an in-process operator scoped to one test namespace, and waiting on task status.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod cluster;
pub mod invalid;
pub mod process;
pub mod release;
pub mod webhook;
pub mod workflows;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use mcall::config::{CommandPolicy, OperatorConfig};
use mcall::server::Readiness;
use mcall_generated::{McallTask, McallTaskStatus, Phase};
use mcall_tests::{ControlPlane, create_test_namespace};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The shared plane with the generated CRDs installed and Established.
pub fn plane() -> &'static ControlPlane {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let plane = ControlPlane::shared();
    INSTALLED.get_or_init(|| {
        for args in [
            vec!["apply", "--server-side", "-f", "helm/mcall-operator/crds/"],
            vec![
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/mcalltasks.mcall.tz.io",
                "crd/mcallworkflows.mcall.tz.io",
            ],
        ] {
            let out = plane
                .kubectl()
                .current_dir(root())
                .args(&args)
                .output()
                .expect("kubectl starts");
            assert!(
                out.status.success(),
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    plane
}

pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    pub tasks: Api<McallTask>,
}

pub async fn test_env(prefix: &str) -> TestEnv {
    test_env_on(plane(), prefix).await
}

/// A test namespace on the shared plane that also runs kube-controller-manager (garbage
/// collection of owned objects, namespace deletion), with the chart's CRDs.
pub async fn test_env_with_gc(prefix: &str) -> TestEnv {
    test_env_on(ControlPlane::shared_with_controller_manager(), prefix).await
}

async fn test_env_on(plane: &ControlPlane, prefix: &str) -> TestEnv {
    let client = plane.admin_client().await.expect("admin client");
    let namespace = create_test_namespace(&client, prefix)
        .await
        .expect("namespace");
    let tasks = Api::namespaced(client.clone(), &namespace);
    TestEnv {
        client,
        namespace,
        tasks,
    }
}

/// An operator running in this test's runtime, watching only the test namespace.
pub struct Operator {
    pub shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Operator {
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.handle).await;
    }
}

pub fn config_for(env: &TestEnv) -> OperatorConfig {
    OperatorConfig {
        watch_namespaces: vec![env.namespace.clone()],
        commands: CommandPolicy::Namespaces(vec![env.namespace.clone()]),
        dependency_grace: Duration::from_secs(3),
        shutdown_grace: Duration::from_secs(2),
        ..OperatorConfig::default()
    }
}

pub fn start_operator(env: &TestEnv, config: OperatorConfig) -> Operator {
    start_operator_as(env.client.clone(), config)
}

/// The operator with `client`'s identity (a ServiceAccount's, say, so RBAC applies).
pub fn start_operator_as(client: Client, config: OperatorConfig) -> Operator {
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        let metrics = mcall::metrics::Metrics::default();
        mcall::controller::run(client, config, Readiness::default(), metrics, token)
            .await
            .expect("operator runs");
    });
    Operator { shutdown, handle }
}

/// Creates a McallTask from its spec (as JSON, so only what a user writes is sent).
pub async fn create_task(env: &TestEnv, name: &str, spec: Value) -> McallTask {
    let object: McallTask = serde_json::from_value(json!({
        "apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "metadata": {"name": name}, "spec": spec
    }))
    .expect("a valid McallTask");
    env.tasks
        .create(&PostParams::default(), &object)
        .await
        .expect("the API server accepts the task")
}

/// Waits until `check` holds for the task's status, or fails with the last status seen.
pub async fn wait_for(
    env: &TestEnv,
    name: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&McallTaskStatus) -> bool,
) -> McallTask {
    let deadline = Instant::now() + timeout;
    loop {
        let task = env.tasks.get(name).await.expect("the task exists");
        if task.status.as_ref().is_some_and(&check) {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: timed out waiting for {what}; status: {:#?}",
            task.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Follows every write of the task on a watch (so no version is missed, unlike polling) until
/// `check` holds for one, or fails after `timeout` naming `what` and the last status seen. `check`
/// sees the versions in order, starting with the current one (a re-list may show one again), and
/// may keep state across them, e.g. to assert something of every version or to count writes.
pub async fn watch_until(
    env: &TestEnv,
    name: &str,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut(&McallTask) -> bool,
) -> McallTask {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};

    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut versions = std::pin::pin!(
        watcher(env.tasks.clone(), config)
            .default_backoff()
            .applied_objects()
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        match tokio::time::timeout_at(deadline, versions.next()).await {
            Ok(Some(Ok(task))) => {
                if check(&task) {
                    return task;
                }
                last = Some(task);
            }
            // Re-established by the backoff; the versions go on from where they were.
            Ok(Some(Err(e))) => eprintln!("{name}: the watch failed, retrying: {e}"),
            Ok(None) => panic!("{name}: the watch ended while waiting for {what}"),
            Err(_) => panic!(
                "{name}: timed out after {timeout:?} waiting for {what}; last status: {:#?}",
                last.and_then(|t| t.status)
            ),
        }
    }
}

/// Polls `check` until it holds, or fails after `timeout` naming `what`.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn wait_for_phase(
    env: &TestEnv,
    name: &str,
    phase: Phase,
    timeout: Duration,
) -> McallTask {
    wait_for(env, name, timeout, &format!("phase {phase}"), |s| {
        s.phase == Some(phase)
    })
    .await
}

/// The reasons of the Events recorded for a task, oldest first.
pub async fn event_reasons(env: &TestEnv, name: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.client.clone(), &env.namespace);
    let mut list = events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items;
    list.retain(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name));
    list.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
    // A repeated Event is one object with a series count.
    list.into_iter()
        .flat_map(|e| {
            let times = e.series.as_ref().map_or(1, |s| s.count.max(1)) as usize;
            std::iter::repeat_n(e.reason.unwrap_or_default(), times)
        })
        .collect()
}

/// The reasons of the task's Events once `check` holds for them (Events trail the status).
pub async fn events_once(
    env: &TestEnv,
    name: &str,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reasons = event_reasons(env, name).await;
        if check(&reasons) {
            return reasons;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: timed out waiting for Events {what}; recorded: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a process whose command line contains `marker` is alive.
pub fn process_alive(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(marker)
            })
            .unwrap_or(false)
    })
}

/// Creates a Secret with one key in the test namespace.
pub async fn create_secret(env: &TestEnv, name: &str, key: &str, value: &str) {
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {key: value}}))
            .expect("a valid Secret");
    Api::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("the API server accepts the Secret");
}

/// A loopback HTTP server answering every request with `status` and `body`; it keeps the raw
/// requests it received, which also counts how often a task really ran.
pub async fn http_server(status: u16, body: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 16 * 1024];
                let mut request = Vec::new();
                // Read headers, then as much body as Content-Length says.
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&request).into_owned());
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nX-Service: mcall-test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, seen)
}
