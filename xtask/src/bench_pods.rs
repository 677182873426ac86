//! `cargo xtask bench pods`: the Pod executor end to end. The release operator runs on the host
//! against a fresh plane with a node, every command in a pod of the shell image
//! (`--default-executor Pod`). Measured from the bench's own polling every 20 ms: an `echo` task
//! from its create to `Succeeded`, one at a time; then 100 such tasks created at once (each
//! create → Succeeded, the whole burst's throughput, the most pods seen at once, none failed:
//! what does not fit the operator's execution slots or the node waits instead of failing).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use mcall_tests::{ControlPlane, ControlPlaneOptions};
use serde_json::json;

use crate::bench_api::{grown, request_counts};
use crate::bench_cluster::{percentiles, shell_image, wait_for_service_account};
use crate::bench_tasks::{install_crds, release_binary, tasks_api};

/// Tasks run one at a time.
const ONE_AT_A_TIME: usize = 20;
/// Tasks created at once.
const BURST: usize = 100;
/// The operator's execution slots (its default).
const SLOTS: usize = 32;

pub fn run(root: &Path) -> Result<String> {
    let binary = release_binary(root)?;
    let plane = ControlPlane::start(ControlPlaneOptions {
        node: true,
        ..Default::default()
    })
    .context("starting a plane with a node")?;
    install_crds(&plane, root)?;
    let shell = shell_image(&plane)?.reference.to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log_path = plane.dir().join("operator.log");
    let operator = || -> Result<std::process::Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        Command::new(&binary)
            .args(["operator", "--kubeconfig"])
            .arg(plane.kubeconfig_path())
            .args(["--namespaces", "bench", "--command-namespaces", "bench"])
            .args(["--default-executor", "Pod", "--executor-image", &shell])
            .args(["--max-concurrent-executions", &SLOTS.to_string()])
            .args(["--port", &port.to_string(), "--bind-address", "127.0.0.1"])
            .env("LOG_LEVEL", "WARN")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting the operator")
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Supervised as a Deployment would: an operator that exits (it stops when it loses its
    // Lease to a starved API server) is started again, and the restarts are counted.
    let done = std::sync::atomic::AtomicBool::new(false);
    let (result, restarts) = std::thread::scope(|scope| -> Result<_> {
        let supervisor = scope.spawn(|| -> Result<usize> {
            let mut restarts = 0;
            let mut child = operator()?;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if child.try_wait()?.is_some() {
                    restarts += 1;
                    child = operator()?;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
            Ok(restarts)
        });
        let result = runtime.block_on(measure(&plane));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let restarts = supervisor.join().expect("the supervisor does not panic")?;
        Ok((result, restarts))
    })?;
    Ok(result?.replace(
        "\n}\n",
        &format!(",\n  \"operator_restarts\": {restarts}\n}}\n"),
    ))
}

fn echo_task(name: &str) -> Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "mcall.tz.io/v1", "kind": "McallTask",
        "metadata": {"name": name},
        "spec": {"type": "cmd", "input": "echo done", "timeout": 120}
    }))?)
}

fn phase(task: &DynamicObject) -> Option<&str> {
    task.data["status"]["phase"].as_str()
}

async fn measure(plane: &ControlPlane) -> Result<String> {
    let client = plane.admin_client().await?;
    wait_for_service_account(&client, "bench").await?;
    let tasks = tasks_api(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    // The first one also waits for the operator's caches; it is not counted.
    let mut one = Vec::new();
    for i in 0..=ONE_AT_A_TIME {
        let name = format!("one-{i}");
        let created = Instant::now();
        tasks
            .create(&PostParams::default(), &echo_task(&name)?)
            .await?;
        let took = succeeded(&tasks, &name, created).await?;
        if i > 0 {
            one.push(took);
        }
    }
    let names: Vec<String> = (0..BURST).map(|i| format!("burst-{i}")).collect();
    let before = request_counts(&client).await?;
    let created = Instant::now();
    for name in &names {
        tasks
            .create(&PostParams::default(), &echo_task(name)?)
            .await?;
    }
    let (burst, peak_pods, failed) = burst_done(&tasks, &pods, created).await?;
    let total = created.elapsed();
    let after = request_counts(&client).await?;
    // Pods created, and creates answered "already exists": a restarted operator following a
    // pod its predecessor created (each task's command must run exactly once).
    let conflicts = grown(&before, &after, "409 POST pods");
    let pods_created = grown(&before, &after, "POST pods") - conflicts;
    let pod_reads = grown(&before, &after, "GET pods");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (one_p50, one_p99) = percentiles(&one);
    let (burst_p50, burst_p99) = percentiles(&burst);
    Ok(format!(
        "{{\n  \"benchmark\": \"pods\",\n  \"one_at_a_time\": {ONE_AT_A_TIME},\n  \"echo_task_succeeded_p50_ms\": {:.0},\n  \"echo_task_succeeded_p99_ms\": {:.0},\n  \"burst\": {BURST},\n  \"operator_slots\": {SLOTS},\n  \"burst_succeeded_p50_ms\": {:.0},\n  \"burst_succeeded_p99_ms\": {:.0},\n  \"burst_total_s\": {:.2},\n  \"burst_tasks_per_second\": {:.1},\n  \"burst_peak_pods\": {peak_pods},\n  \"burst_failed\": {failed},\n  \"burst_pods_created\": {pods_created},\n  \"burst_pods_followed_after_a_restart\": {conflicts},\n  \"burst_pod_reads\": {pod_reads}\n}}\n",
        ms(one_p50),
        ms(one_p99),
        ms(burst_p50),
        ms(burst_p99),
        total.as_secs_f64(),
        BURST as f64 / total.as_secs_f64(),
    ))
}

/// Create → Succeeded of one task, polled every 20 ms.
async fn succeeded(tasks: &Api<DynamicObject>, name: &str, since: Instant) -> Result<Duration> {
    loop {
        let task = tasks.get(name).await?;
        match phase(&task) {
            Some("Succeeded") => return Ok(since.elapsed()),
            Some("Failed" | "Skipped") => bail!("task {name} ended {:?}", task.data["status"]),
            _ => {}
        }
        if since.elapsed() > Duration::from_secs(120) {
            bail!("task {name} not done after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each burst task's create → end (listed every 20 ms), the most pods seen at once, and how
/// many failed.
async fn burst_done(
    tasks: &Api<DynamicObject>,
    pods: &Api<Pod>,
    created: Instant,
) -> Result<(Vec<Duration>, usize, usize)> {
    let mut done = std::collections::HashMap::new();
    let (mut peak, mut failed) = (0, 0);
    while done.len() < BURST {
        if created.elapsed() > Duration::from_secs(600) {
            bail!("{} of {BURST} tasks done after 600 s", done.len());
        }
        for task in tasks.list(&Default::default()).await? {
            let name = task.metadata.name.clone().unwrap_or_default();
            let ended = matches!(phase(&task), Some("Succeeded" | "Failed"));
            if name.starts_with("burst-") && ended && !done.contains_key(&name) {
                failed += usize::from(phase(&task) == Some("Failed"));
                done.insert(name, created.elapsed());
            }
        }
        peak = peak.max(pods.list(&Default::default()).await?.items.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((done.into_values().collect(), peak, failed))
}
