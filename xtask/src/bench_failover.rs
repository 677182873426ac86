//! `cargo xtask bench failover`: two release-built replicas on a fresh control plane; the leader
//! is crashed (SIGKILL) or stopped (SIGTERM) again and again, and the stopped replica restarts as
//! a follower each time. Per failover: how long from the signal until the new leader runs a
//! one-shot task created at that moment (a loopback server timestamps every request), and how
//! late the first tick after the signal starts. Over all of them: one-shot tasks and ticks that
//! ran twice, and ticks never run (recorded Interrupted, or missed without a record).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use mcall_tests::ControlPlane;
use serde_json::json;

use crate::bench_tasks::tasks_api;

/// The scheduled check's interval: longer than a failover, so a tick that falls into one is not
/// superseded by the next before a leader runs it.
const TICK: Duration = Duration::from_secs(3);

/// One-shot tasks created just before each signal: runs in flight when the leader goes.
const BURST: usize = 10;

/// Requests the loopback server saw: path → arrival times.
type Seen = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Crash,
    Graceful,
}

pub fn run(root: &Path, rounds: usize) -> Result<String> {
    let (binary, plane) = crate::bench_tasks::release_on_fresh_plane(root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(measure(&plane, &binary, rounds))
}

struct Replicas<'a> {
    plane: &'a ControlPlane,
    binary: &'a Path,
    running: BTreeMap<&'static str, Child>,
}

impl Replicas<'_> {
    fn spawn(&mut self, name: &'static str) -> Result<()> {
        let child = Command::new(self.binary)
            .args(["operator", "--kubeconfig"])
            .arg(self.plane.kubeconfig_path())
            .args(["--namespaces", "bench", "--command-namespaces", "bench"])
            .args(["--port", "0", "--bind-address", "127.0.0.1"])
            .env("POD_NAME", name)
            .env("LOG_LEVEL", "WARN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a replica")?;
        self.running.insert(name, child);
        Ok(())
    }

    fn signal(&mut self, name: &str, stop: Stop) -> Result<Child> {
        let child = self.running.remove(name).context("no such replica")?;
        let sig = match stop {
            Stop::Crash => "-KILL",
            Stop::Graceful => "-TERM",
        };
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()?;
        Ok(child)
    }
}

impl Drop for Replicas<'_> {
    fn drop(&mut self) {
        for child in self.running.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn leader(client: &kube::Client) -> Option<&'static str> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "bench");
    let holder = leases
        .get_opt("mcall-operator")
        .await
        .ok()??
        .spec?
        .holder_identity?;
    ["a", "b"]
        .into_iter()
        .find(|n| holder.starts_with(&format!("{n}-")))
}

async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("waited a minute for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One failover's measurements.
struct Round {
    stop: Stop,
    /// Signal → first request of the one-shot task created at the signal.
    to_first_run: Duration,
}

async fn measure(plane: &ControlPlane, binary: &Path, rounds: usize) -> Result<String> {
    let client = plane.admin_client().await?;
    let tasks = tasks_api(client.clone());
    let (port, seen) = server().await?;
    let mut replicas = Replicas {
        plane,
        binary,
        running: BTreeMap::new(),
    };
    replicas.spawn("a")?;
    until("a leader", async || leader(&client).await).await?;
    replicas.spawn("b")?;
    let spec = json!({"type": "get", "input": format!("http://127.0.0.1:{port}/tick"),
        "schedule": format!("@every {}s", TICK.as_secs()), "startingDeadlineSeconds": 60,
        "successfulRunsHistoryLimit": 100, "failedRunsHistoryLimit": 100});
    create(&tasks, "tick", spec).await?;
    let mut results = Vec::new();
    for round in 0..rounds * 2 {
        let stop = if round.is_multiple_of(2) {
            Stop::Crash
        } else {
            Stop::Graceful
        };
        results.push(failover(&client, &tasks, &mut replicas, &seen, port, round, stop).await?);
    }
    summarize(&tasks, &seen, &results).await
}

#[allow(clippy::too_many_arguments, reason = "a benchmark round's context")]
async fn failover(
    client: &kube::Client,
    tasks: &Api<kube::api::DynamicObject>,
    replicas: &mut Replicas<'_>,
    seen: &Seen,
    port: u16,
    round: usize,
    stop: Stop,
) -> Result<Round> {
    let old = until("a leader", async || leader(client).await).await?;
    let new = if old == "a" { "b" } else { "a" };
    // Steady: the follower is up and the schedule runs.
    let ticks = count(seen, "/tick");
    until("a tick before the failover", async || {
        (count(seen, "/tick") > ticks).then_some(())
    })
    .await?;
    // The signal lands at a different point of the tick interval each round (tenths of it,
    // spread), so failovers meet claimed ticks at every distance.
    let phase = TICK.mul_f64((round * 7 % 10) as f64 / 10.0);
    tokio::time::sleep(phase).await;
    for i in 0..BURST {
        let input = format!("http://127.0.0.1:{port}/burst-{round}-{i}");
        create(
            tasks,
            &format!("burst-{round}-{i}"),
            json!({"type": "get", "input": input}),
        )
        .await?;
    }
    let signalled = Instant::now();
    let mut stopped = replicas.signal(old, stop)?;
    let probe = format!("/probe-{round}");
    let input = format!("http://127.0.0.1:{port}{probe}");
    create(
        tasks,
        &format!("probe-{round}"),
        json!({"type": "get", "input": input}),
    )
    .await?;
    let first = until("the probe's run on the new leader", async || {
        first(seen, &probe)
    })
    .await?;
    until("the new leader", async || {
        (leader(client).await == Some(new)).then_some(())
    })
    .await?;
    tokio::task::spawn_blocking(move || stopped.wait()).await??;
    replicas.spawn(old)?;
    Ok(Round {
        stop,
        to_first_run: first.saturating_duration_since(signalled),
    })
}

async fn create(
    tasks: &Api<kube::api::DynamicObject>,
    name: &str,
    spec: serde_json::Value,
) -> Result<()> {
    let object: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "mcall.tz.io/v1", "kind": "McallTask",
        "metadata": {"name": name}, "spec": spec
    }))?;
    tasks.create(&PostParams::default(), &object).await?;
    Ok(())
}

fn count(seen: &Seen, path: &str) -> usize {
    seen.lock().unwrap().get(path).map_or(0, Vec::len)
}

fn first(seen: &Seen, path: &str) -> Option<Instant> {
    seen.lock()
        .unwrap()
        .get(path)
        .and_then(|t| t.first().copied())
}

/// Repeats of one-shot runs, and what the scheduled check's history says.
async fn summarize(
    tasks: &Api<kube::api::DynamicObject>,
    seen: &Seen,
    rounds: &[Round],
) -> Result<String> {
    let stats = |stop: Stop| {
        let mut ms: Vec<f64> = rounds
            .iter()
            .filter(|r| r.stop == stop)
            .map(|r| r.to_first_run.as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        (ms[ms.len() / 2], ms[ms.len() - 1])
    };
    let (crash_p50, crash_max) = stats(Stop::Crash);
    let (graceful_p50, graceful_max) = stats(Stop::Graceful);
    let requests = seen.lock().unwrap().clone();
    // Rounds alternate: even ones crash the leader, odd ones stop it.
    let repeats = |stop: Stop| -> usize {
        requests
            .iter()
            .filter_map(|(path, times)| {
                let rest = path
                    .strip_prefix("/burst-")
                    .or_else(|| path.strip_prefix("/probe-"))?;
                let round: usize = rest.split('-').next()?.parse().ok()?;
                let crashed = round.is_multiple_of(2);
                (crashed == (stop == Stop::Crash)).then(|| times.len().saturating_sub(1))
            })
            .sum()
    };
    let (crash_repeats, graceful_repeats) = (repeats(Stop::Crash), repeats(Stop::Graceful));
    let tick = tasks.get("tick").await?;
    let history = tick.data["status"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut scheduled: Vec<Timestamp> = history
        .iter()
        .filter_map(|r| r["scheduledTime"].as_str()?.parse().ok())
        .collect();
    scheduled.sort();
    let recorded_twice = scheduled.windows(2).filter(|w| w[0] == w[1]).count();
    scheduled.dedup();
    let missed: i64 = scheduled
        .windows(2)
        .map(|w| (w[1].duration_since(w[0]).as_millis() as i64 + 500) / TICK.as_millis() as i64 - 1)
        .sum();
    let interrupted = history
        .iter()
        .filter(|r| r["errorCode"] == "Interrupted")
        .count();
    let succeeded = history.iter().filter(|r| r["phase"] == "Succeeded").count();
    Ok(format!(
        "{{\n  \"benchmark\": \"failover\",\n  \"crash_failovers\": {},\n  \"one_shot_tasks_per_stop\": {},\n  \"graceful_failovers\": {},\n  \"crash_to_first_run_p50_ms\": {crash_p50:.0},\n  \"crash_to_first_run_max_ms\": {crash_max:.0},\n  \"graceful_to_first_run_p50_ms\": {graceful_p50:.0},\n  \"graceful_to_first_run_max_ms\": {graceful_max:.0},\n  \"one_shot_runs_repeated_after_crash\": {crash_repeats},\n  \"one_shot_runs_repeated_after_graceful_stop\": {graceful_repeats},\n  \"tick_requests\": {},\n  \"ticks_recorded\": {},\n  \"ticks_succeeded\": {succeeded},\n  \"ticks_recorded_twice\": {recorded_twice},\n  \"ticks_interrupted_not_run\": {interrupted},\n  \"ticks_missed_without_record\": {missed}\n}}\n",
        rounds.iter().filter(|r| r.stop == Stop::Crash).count(),
        (BURST + 1) * rounds.len() / 2,
        rounds.iter().filter(|r| r.stop == Stop::Graceful).count(),
        requests.get("/tick").map_or(0, Vec::len),
        history.len(),
    ))
}

/// A loopback HTTP server answering 200 and recording each request's path and arrival.
async fn server() -> Result<(u16, Seen)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let Ok(n) = socket.read(&mut buf).await else {
                    return;
                };
                let at = Instant::now();
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                log.lock().unwrap().entry(path).or_default().push(at);
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    Ok((port, seen))
}
