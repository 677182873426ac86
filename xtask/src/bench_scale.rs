//! `cargo xtask bench scale`: the release-built operator started on a plane that already holds
//! 0, 1,000 and 10,000 McallTasks (scheduled yearly, so none runs; their status already written
//! by an earlier start). Records the time from start until it leads with its caches synced (the
//! log line that says so), and its resident memory once settled and at its peak.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use mcall_tests::ControlPlane;
use serde_json::json;

use crate::bench_tasks::{rss_kib, status_kib, tasks_api};

/// The sizes measured, in tasks.
const SIZES: [usize; 3] = [0, 1_000, 10_000];
/// How long the operator runs before its memory is read: reconciles of every task are done.
const SETTLE: Duration = Duration::from_secs(10);

pub fn run(root: &Path) -> Result<String> {
    let (binary, plane) = crate::bench_tasks::release_on_fresh_plane(root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    let mut created = 0;
    for size in SIZES {
        let tasks = runtime
            .block_on(async { Ok::<_, anyhow::Error>(tasks_api(plane.admin_client().await?)) })?;
        runtime.block_on(create(&tasks, created, size))?;
        created = size;
        // A first start writes every new task's status (its next run); the measured one finds
        // them written, as a restarted or failed-over operator does.
        let mut settling = start(&plane, &binary)?;
        settling.ready_within(Duration::from_secs(120))?;
        std::thread::sleep(SETTLE);
        settling.stop()?;
        let mut measured = start(&plane, &binary)?;
        let ready = measured.ready_within(Duration::from_secs(120))?;
        std::thread::sleep(SETTLE);
        let pid = measured.child.id();
        let rss = rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
        let peak = status_kib(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
        measured.stop()?;
        rows.push(format!(
            "    {{\"tasks\": {size}, \"ready_s\": {:.2}, \"rss_mib\": {rss:.1}, \"peak_rss_mib\": {peak:.1}}}",
            ready.as_secs_f64()
        ));
    }
    Ok(format!(
        "{{\n  \"benchmark\": \"scale\",\n  \"settle_s\": {},\n  \"sizes\": [\n{}\n  ]\n}}\n",
        SETTLE.as_secs(),
        rows.join(",\n")
    ))
}

/// Creates tasks `from..to`, 32 requests at a time.
async fn create(tasks: &Api<DynamicObject>, from: usize, to: usize) -> Result<()> {
    let results: Vec<Result<()>> = futures::stream::iter(from..to)
        .map(|i| async move {
            let object: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "mcall.tz.io/v1", "kind": "McallTask",
                "metadata": {"name": format!("scale-{i}")},
                "spec": {"type": "get", "input": "http://127.0.0.1:9/", "schedule": "0 0 1 1 *"}
            }))?;
            tasks.create(&PostParams::default(), &object).await?;
            Ok(())
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

struct Started {
    child: Child,
    started: Instant,
    /// When the operator logged that it leads with its caches synced.
    synced: std::sync::mpsc::Receiver<Instant>,
}

fn start(plane: &ControlPlane, binary: &Path) -> Result<Started> {
    let mut child = Command::new(binary)
        .args(["operator", "--kubeconfig"])
        .arg(plane.kubeconfig_path())
        .args([
            "--namespaces",
            "bench",
            "--port",
            "0",
            "--bind-address",
            "127.0.0.1",
        ])
        .env("LOG_LEVEL", "INFO")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the operator")?;
    let log = BufReader::new(child.stderr.take().context("the operator's stderr")?);
    let (tx, synced) = std::sync::mpsc::channel();
    // Reads every line, so the operator never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in log.lines().map_while(Result::ok) {
            if line.contains("caches synced") {
                let _ = tx.send(Instant::now());
            }
        }
    });
    Ok(Started {
        child,
        started: Instant::now(),
        synced,
    })
}

impl Started {
    /// From the start until the operator says it leads with its caches synced.
    fn ready_within(&mut self, limit: Duration) -> Result<Duration> {
        let at = self.synced.recv_timeout(limit).with_context(|| {
            format!("the operator did not report synced caches within {limit:?}")
        })?;
        Ok(at.saturating_duration_since(self.started))
    }

    fn stop(mut self) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the operator exited with {status}");
        }
        Ok(())
    }
}
