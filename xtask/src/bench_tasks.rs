//! `cargo xtask bench tasks`: N one-shot tasks (cmd `true`, and get to a loopback server)
//! created at once against a fresh control plane and the release-built operator. Records
//! create→Succeeded latency (p50/p99), completed tasks per second, the raw rate at which a
//! minimal client can patch McallTask status on the same plane (the ceiling), and operator RSS.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use kube::api::{DynamicObject, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use mcall_tests::{ControlPlane, ControlPlaneOptions};
use serde_json::json;

use crate::bench_api::{
    counts_once, grown, raw_rates, request_counts, requests_per, tasks_resource,
};

pub fn run(root: &Path, count: usize) -> Result<String> {
    with_operator(root, |plane, operator_pid| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(measure(plane, count, operator_pid))
    })
}

/// Builds the release operator, starts a fresh control plane with the CRDs and a `bench`
/// namespace, runs the operator on it, and calls `f` with the plane and the operator's pid.
pub fn with_operator<T>(root: &Path, f: impl FnOnce(&ControlPlane, u32) -> Result<T>) -> Result<T> {
    let (binary, plane) = release_on_fresh_plane(root)?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::File::create(operator_log(&plane)).context("creating the operator log")?;
    // MCALL_BENCH_PROFILER (e.g. `heaptrack`) runs the operator under a profiler; the RSS
    // recorded is then the profiler's.
    let mut operator = match std::env::var_os("MCALL_BENCH_PROFILER") {
        Some(profiler) => {
            let mut command = Command::new(profiler);
            command.arg(&binary);
            command
        }
        None => Command::new(&binary),
    };
    let mut operator = operator
        .args(["operator", "--kubeconfig"])
        .arg(plane.kubeconfig_path())
        .args([
            "--namespaces",
            "bench",
            "--command-namespaces",
            "bench",
            "--max-concurrent-executions",
            "64",
        ])
        .args(["--port", &port.to_string(), "--bind-address", "127.0.0.1"])
        .env(
            "LOG_LEVEL",
            std::env::var("MCALL_BENCH_LOG_LEVEL").unwrap_or_else(|_| "WARN".to_owned()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting the operator")?;
    let result = f(&plane, operator.id());
    // By its kubeconfig, so an operator started under a profiler is stopped too.
    let _ = Command::new("pkill")
        .arg("-TERM")
        .arg("-f")
        .arg(plane.kubeconfig_path())
        .status();
    let _ = operator.wait();
    result
}

/// Where [`with_operator`] keeps the operator's log (at `MCALL_BENCH_LOG_LEVEL`, default WARN):
/// `MCALL_BENCH_OPERATOR_LOG`, or else a file in the plane's directory, gone with the plane.
pub fn operator_log(plane: &ControlPlane) -> std::path::PathBuf {
    std::env::var_os("MCALL_BENCH_OPERATOR_LOG")
        .map_or_else(|| plane.dir().join("operator.log"), Into::into)
}

/// Builds the release operator and starts a fresh control plane with the CRDs and the `bench`
/// namespaces; returns the operator binary and the plane.
pub fn release_on_fresh_plane(root: &Path) -> Result<(std::path::PathBuf, ControlPlane)> {
    let binary = release_binary(root)?;
    let plane = ControlPlane::start(ControlPlaneOptions::default())
        .context("starting the control plane")?;
    install_crds(&plane, root)?;
    Ok((binary, plane))
}

/// Builds the release `mcall` binary; its path. `MCALL_BENCH_OPERATOR` names another binary
/// instead (an earlier commit's, to compare before and after a change in one sitting).
pub fn release_binary(root: &Path) -> Result<std::path::PathBuf> {
    if let Some(binary) = std::env::var_os("MCALL_BENCH_OPERATOR") {
        return Ok(binary.into());
    }
    let args = [
        "build",
        "--release",
        "--quiet",
        "-p",
        "mcall",
        "--bin",
        "mcall",
    ];
    crate::run_command(root, "cargo", &args)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    Ok(target.join("release/mcall"))
}

/// The generated CRDs, Established, and the `bench` (watched) and `bench-raw` namespaces.
pub fn install_crds(plane: &ControlPlane, root: &Path) -> Result<()> {
    let kubectl = |args: &[&str]| -> Result<()> {
        let out = plane.kubectl().current_dir(root).args(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    kubectl(&["apply", "--server-side", "-f", "helm/mcall-operator/crds/"])?;
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/mcalltasks.mcall.tz.io",
        "crd/mcallworkflows.mcall.tz.io",
    ])?;
    kubectl(&["create", "namespace", "bench"])?;
    // Not watched by the operator: where the raw create rate is measured.
    kubectl(&["create", "namespace", "bench-raw"])?;
    Ok(())
}

/// The McallTask resource, untyped: xtask must build even when spec/ changed and `generated` is stale.
pub fn tasks_api(client: kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(client, "bench", &tasks_resource())
}

async fn measure(plane: &ControlPlane, count: usize, operator_pid: u32) -> Result<String> {
    let client = plane.admin_client().await?;
    let tasks = tasks_api(client.clone());
    let http_port = loopback_server().await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // operator caches sync

    // Watch first, so no Succeeded transition is missed.
    let (done, watch) = watch_succeeded(&tasks);

    // Low load first: one task at a time, each waited for, so the latency is the operator's own.
    let (low_p50, low_max) = low_load(&tasks, &done).await?;
    done.lock().await.clear();

    let requests_before = request_counts(&client).await?;
    let start = Instant::now();
    let created = create_burst(&tasks, count, http_port).await?;
    await_burst(&done, count).await?;
    let total = start.elapsed();
    let last_succeeded = Instant::now();
    watch.abort();
    // Events trail the statuses: count the operator's Event creates on the API server's metrics
    // (no watch of them during the burst, which would cost the plane and this client).
    let requests_after = counts_once(
        &client,
        &requests_before,
        "POST events",
        count,
        Duration::from_secs(60),
    )
    .await?;
    let events_published = grown(&requests_before, &requests_after, "POST events");
    let events_trail_s = last_succeeded.elapsed().as_secs_f64();
    let requests = serde_json::Value::Object(requests_per(
        &requests_before,
        &requests_after,
        count,
        |_| true,
    ));
    let (p50, p99) = burst_latencies(&created, &*done.lock().await);
    let rss_mib = rss_kib(operator_pid).unwrap_or(0) as f64 / 1024.0;
    let rss_split = rss_split_json(operator_pid);
    let throughput = count as f64 / total.as_secs_f64();
    let burst_end = Instant::now();

    // The ceiling: a minimal client writing status (16 in flight), operator idle by now. Each
    // way of patching is measured and the fastest one is the ceiling; Event creation is measured
    // too, since Events cost the plane like any other write.
    let raw = raw_rates(&client, &tasks, count.min(500), &|i| {
        format!("t-{}", i % count)
    })
    .await?;
    let raw_rate = raw.status_writes();
    // With the 1,000 tasks still there, once the operator has had a chance to hand freed memory
    // back (it trims every 10 s), and the high-water mark of the whole run.
    tokio::time::sleep(Duration::from_secs(11).saturating_sub(burst_end.elapsed())).await;
    let settled_mib = rss_kib(operator_pid).unwrap_or(0) as f64 / 1024.0;
    let peak_mib = status_kib(operator_pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;

    Ok(format!(
        "{{\n  \"benchmark\": \"tasks\",\n  \"low_load_p50_ms\": {low_p50:.1},\n  \"low_load_max_ms\": {low_max:.1},\n  \"tasks\": {count},\n  \"p50_ms\": {:.1},\n  \"p99_ms\": {:.1},\n  \"tasks_per_second\": {throughput:.1},\n  \"succeeded_events\": {events_published},\n  \"events_trail_s\": {events_trail_s:.2},\n  \"api_requests_per_task\": {requests},\n  \"raw_status_writes_per_second\": {raw_rate:.1},\n  \"raw_apply_per_second\": {:.1},\n  \"raw_merge_patch_per_second\": {:.1},\n  \"raw_replace_per_second\": {:.1},\n  \"raw_event_creates_per_second\": {:.1},\n  \"raw_task_creates_per_second\": {:.1},\n  \"operator_rss_mib\": {rss_mib:.1},\n  \"operator_rss_settled_mib\": {settled_mib:.1},\n  \"operator_peak_rss_mib\": {peak_mib:.1},\n  {rss_split}\n}}\n",
        p50, p99, raw.apply, raw.merge, raw.replace, raw.events, raw.creates,
    ))
}

/// When each task (by name) was first seen Succeeded.
type Succeeded = Arc<tokio::sync::Mutex<HashMap<String, Instant>>>;

/// Starts recording when tasks turn Succeeded; abort the handle to stop.
fn watch_succeeded(tasks: &Api<DynamicObject>) -> (Succeeded, tokio::task::JoinHandle<()>) {
    let done = Succeeded::default();
    let stream = watcher(tasks.clone(), watcher::Config::default()).applied_objects();
    let recorded = done.clone();
    let watch = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(task)) = stream.try_next().await {
            if task.data["status"]["phase"] == "Succeeded" {
                recorded
                    .lock()
                    .await
                    .entry(task.name_any())
                    .or_insert_with(Instant::now);
            }
        }
    });
    (done, watch)
}

/// Creates the burst's `count` tasks `t-0…`, 32 in flight, alternately a cmd `true` and a get
/// of the loopback server: each name with the moment its create was sent.
async fn create_burst(
    tasks: &Api<DynamicObject>,
    count: usize,
    http_port: u16,
) -> Result<Vec<(String, Instant)>> {
    futures::stream::iter(0..count)
        .map(|i| async move {
            let spec = if i % 2 == 0 {
                json!({"type": "cmd", "input": "true"})
            } else {
                json!({"type": "get", "input": format!("http://127.0.0.1:{http_port}/")})
            };
            let name = format!("t-{i}");
            let task: DynamicObject = serde_json::from_value(json!({"apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "metadata": {"name": name}, "spec": spec}))?;
            let t0 = Instant::now();
            tasks.create(&PostParams::default(), &task).await?;
            Ok::<_, anyhow::Error>((name, t0))
        })
        .buffer_unordered(32)
        .try_collect()
        .await
}

/// Waits until all `count` burst tasks have been seen Succeeded, at most 300 s.
async fn await_burst(done: &Succeeded, count: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let burst_done =
        |done: &HashMap<String, Instant>| done.keys().filter(|k| k.starts_with("t-")).count();
    while burst_done(&*done.lock().await) < count {
        if Instant::now() > deadline {
            bail!(
                "only {} of {count} tasks succeeded within 300 s",
                burst_done(&*done.lock().await)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Creation → Succeeded of the burst's tasks, in ms: p50 and p99.
fn burst_latencies(created: &[(String, Instant)], done: &HashMap<String, Instant>) -> (f64, f64) {
    let mut latencies: Vec<f64> = created
        .iter()
        .map(|(name, t0)| done[name].duration_since(*t0).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    (pct(0.5), pct(0.99))
}

/// Creation → Succeeded seen (`done`), in ms, of 20 tasks created one at a time: p50 and max.
async fn low_load(
    tasks: &Api<DynamicObject>,
    done: &tokio::sync::Mutex<HashMap<String, Instant>>,
) -> Result<(f64, f64)> {
    let mut low_load = Vec::new();
    for i in 0..20 {
        let name = format!("low-{i}");
        let task: DynamicObject = serde_json::from_value(
            json!({"apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "metadata": {"name": name}, "spec": {"type": "cmd", "input": "true"}}),
        )?;
        let t0 = Instant::now();
        tasks.create(&PostParams::default(), &task).await?;
        loop {
            if let Some(at) = done.lock().await.get(&name) {
                low_load.push(at.duration_since(t0).as_secs_f64() * 1000.0);
                break;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "{name} did not succeed within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    low_load.sort_by(f64::total_cmp);
    Ok((low_load[low_load.len() / 2], low_load[low_load.len() - 1]))
}

/// A loopback HTTP server answering 200 to everything, for the get tasks.
async fn loopback_server() -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    Ok(port)
}

/// The operator's resident memory split into anonymous (heap, stacks) and file-backed (its own
/// code) parts, in MiB, as `"anon_mib": …, "file_mib": …` JSON members.
pub fn rss_split_json(pid: u32) -> String {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    format!(
        "\"operator_rss_anon_mib\": {:.1},\n  \"operator_rss_file_mib\": {:.1}",
        field("Rss_Anon:").max(field("Pss_Anon:")),
        field("Pss_File:")
    )
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// A `kB` field of `/proc/<pid>/status`, such as `VmHWM:` (the peak RSS).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
