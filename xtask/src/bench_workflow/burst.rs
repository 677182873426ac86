//! The burst: 200 five-step diamonds (a → b, c, d → e) created at once. Steps per second, the
//! API requests a step costs (the API server's own counts before and after, Events included),
//! the plane's raw write rates measured right after (as `bench tasks` does), and the operator's
//! resident memory during the burst and once settled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::{DynamicObject, ListParams};
use serde_json::{Map, Value, json};

use super::seen::Seen;
use super::{create, ours, round, sizes, stats};
use crate::bench_api::{
    Counts, RawRates, counts_once, grown, is_write, mean_latency_ms, raw_rates, request_counts,
    requests_per, slow_requests,
};
use crate::bench_tasks::{rss_kib, rss_split_json, status_kib, tasks_api};

const WORKFLOWS: usize = 200;
const STEPS: usize = 5;
fn diamond() -> Value {
    let step = |name: &str, deps: &[&str]| {
        let mut step = json!({"name": name, "type": "cmd", "input": "true"});
        if !deps.is_empty() {
            step["dependencies"] = json!(deps);
        }
        step
    };
    json!({"concurrency": 3, "tasks": [
        step("a", &[]),
        step("b", &["a"]),
        step("c", &["a"]),
        step("d", &["a"]),
        step("e", &["b", "c", "d"]),
    ]})
}

pub async fn run(
    client: &kube::Client,
    workflows: &Api<DynamicObject>,
    seen: &Seen,
    operator_pid: u32,
) -> Result<Value> {
    let before = request_counts(client).await?;
    let rss_before = mib(rss_kib(operator_pid));
    let sampler = RssSampler::start(operator_pid);
    let burst = match create_and_await(workflows, seen).await {
        Ok(burst) => burst,
        Err(e) => {
            let slow = match request_counts(client).await {
                Ok(after) => json!(slow_requests(&before, &after, |_| true)).to_string(),
                Err(e) => e.to_string(),
            };
            bail!(
                "{e:#}\nrequests the API server took over 0.4 s for since the burst began: {slow}"
            );
        }
    };
    let rss_end = mib(rss_kib(operator_pid));
    let rss_split: Value = serde_json::from_str(&format!("{{{}}}", rss_split_json(operator_pid)))?;
    let rss_sampled = sampler.stop().await?;
    let burst_end = Instant::now();
    let steps = WORKFLOWS * STEPS;
    let steps_per_second = steps as f64 / ((burst.last - burst.start) / 1000.0);
    let cost = cost(client, &before, seen, burst.last).await?;

    // The ceiling, onto the burst's own children (their runs ended: the operator only looks).
    let targets: Vec<String> = seen.read(|log| {
        log.steps
            .iter()
            .filter(|((wf, _), _)| wf.starts_with("burst-"))
            .map(|(_, s)| s.name.clone())
            .collect()
    });
    let tasks = tasks_api(client.clone());
    let raw = raw_rates(client, &tasks, 500, &|i| targets[i % targets.len()].clone()).await?;
    let ceiling = ceiling(&cost.per_step, &raw);
    // Ten seconds after the burst, with its children still cached, and the high-water mark.
    tokio::time::sleep(Duration::from_secs(11).saturating_sub(burst_end.elapsed())).await;
    Ok(json!({
        "workflows": WORKFLOWS,
        "steps_per_workflow": STEPS,
        "shape": "a → b, c, d → e (concurrency 3), each `true`",
        "total_s": round((burst.last - burst.start) / 1000.0, 2),
        "steps_per_second": round(steps_per_second, 1),
        "workflow_create_to_succeeded_ms": stats(&burst.latencies),
        "events_created": cost.events_created,
        "events_expected": steps + 2 * WORKFLOWS,
        "events_trail_s": round(cost.events_trail_s, 2),
        "api_requests_per_step": cost.per_step,
        "sizes": sizes(workflows, "burst-0").await?,
        "api_writes_per_step": round(cost.writes_per_step, 2),
        "api_conflicts_per_step": round(cost.conflicts_per_step, 2),
        "api_mean_latency_ms": cost.latency_ms,
        "api_requests_over_400ms": cost.slow,
        "api_writes_per_second": round(steps_per_second * cost.writes_per_step, 1),
        "raw_status_writes_per_second": round(raw.status_writes(), 1),
        "raw_apply_per_second": round(raw.apply, 1),
        "raw_merge_patch_per_second": round(raw.merge, 1),
        "raw_replace_per_second": round(raw.replace, 1),
        "raw_event_creates_per_second": round(raw.events, 1),
        "raw_task_creates_per_second": round(raw.creates, 1),
        "share_of_raw_status_writes": round(steps_per_second * cost.writes_per_step / raw.status_writes(), 2),
        "ceiling_steps_per_second": round(ceiling, 1),
        "share_of_ceiling": round(steps_per_second / ceiling, 2),
        "operator_rss_mib_before": rss_before,
        "operator_rss_mib_end_of_burst": rss_end,
        "operator_rss_mib_max_sampled": rss_sampled,
        "operator_rss_mib_settled": mib(rss_kib(operator_pid)),
        "operator_peak_rss_mib": mib(status_kib(operator_pid, "VmHWM:")),
        "operator_rss_split_end_of_burst": rss_split,
        "goal_rss_mib": 30,
    }))
}

/// The burst's timing, in milliseconds since the benchmark's anchor.
struct Burst {
    /// Before the first create request.
    start: f64,
    /// The last workflow seen Succeeded.
    last: f64,
    /// Each workflow's create request sent → it was seen Succeeded.
    latencies: Vec<f64>,
}

/// Creates the workflows, 32 requests in flight, and waits until every one has succeeded.
async fn create_and_await(workflows: &Api<DynamicObject>, seen: &Seen) -> Result<Burst> {
    let start = seen.now();
    let created: Vec<(String, f64)> = futures::stream::iter(0..WORKFLOWS)
        .map(|j| async move {
            let name = format!("burst-{j}");
            let at = seen.now();
            create(workflows, &name, diamond()).await?;
            Ok::<_, anyhow::Error>((name, at))
        })
        .buffer_unordered(32)
        .try_collect()
        .await?;
    let limit = Duration::from_secs(300);
    let ended = seen
        .until("the burst's workflows to end", limit, |log| {
            created
                .iter()
                .map(|(name, _)| log.ended.get(name).cloned())
                .collect::<Option<Vec<_>>>()
        })
        .await;
    let ends = match ended {
        Ok(ends) => ends,
        Err(e) => {
            let waiting: Vec<&str> = seen.read(|log| {
                let waiting = created.iter().map(|(name, _)| name.as_str());
                waiting.filter(|n| !log.ended.contains_key(*n)).collect()
            });
            bail!("{e}: {}", not_ended(workflows, &waiting).await);
        }
    };
    let mut latencies = Vec::new();
    for (end, (name, at)) in ends.iter().zip(&created) {
        if end.phase != "Succeeded" {
            bail!("workflow {name} ended {}: {}", end.phase, end.message);
        }
        latencies.push(end.at - at);
    }
    let last = ends.iter().map(|e| e.at).fold(f64::MIN, f64::max);
    Ok(Burst {
        start,
        last,
        latencies,
    })
}

/// What the workflows that did not end show (the first few): their status and their children's.
async fn not_ended(workflows: &Api<DynamicObject>, names: &[&str]) -> String {
    let tasks = tasks_api(workflows.clone().into_client());
    let mut report = format!("{} did not end", names.len());
    for name in names.iter().take(3) {
        let status = match workflows.get(name).await {
            Ok(w) => w.data["status"].clone(),
            Err(e) => json!(e.to_string()),
        };
        let selector = format!("mcall.tz.io/workflow={name}");
        let children: Vec<Value> = match tasks.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list.items.into_iter().map(|t| json!({"name": t.metadata.name, "resourceVersion": t.metadata.resource_version, "status": t.data["status"]})).collect(),
            Err(e) => vec![json!(e.to_string())],
        };
        report += &format!("\n{name}: status {status}\nchildren {}", json!(children));
    }
    report
}

/// What the burst cost the API server, per step.
struct Cost {
    /// Requests per step by verb and resource (conflicts also apart, as `409 …`).
    per_step: Map<String, Value>,
    /// Of those, the writes.
    writes_per_step: f64,
    /// Of those, the ones refused as conflicts (409).
    conflicts_per_step: f64,
    /// Requests of every kind (the operator's Lease renewals too) the API server took over 0.4 s
    /// for, during the burst.
    slow: Map<String, Value>,
    /// The API server's mean time per request, by verb and resource.
    latency_ms: Map<String, Value>,
    events_created: usize,
    /// The last workflow seen Succeeded → the last Event counted.
    events_trail_s: f64,
}

async fn cost(client: &kube::Client, before: &Counts, seen: &Seen, last: f64) -> Result<Cost> {
    // One Event per step and two per run (started, ended), published in the background.
    let expected = WORKFLOWS * (STEPS + 2);
    let limit = Duration::from_secs(60);
    let after = counts_once(client, before, "POST events", expected, limit).await?;
    let events_trail_s = (seen.now() - last) / 1000.0;
    let per_step = requests_per(before, &after, WORKFLOWS * STEPS, |key| ours(key, true));
    let writes_per_step = per_step
        .iter()
        .filter(|(key, _)| is_write(key))
        .filter_map(|(_, per)| per.as_f64())
        .sum();
    let conflicts_per_step = per_step
        .iter()
        .filter(|(key, _)| key.starts_with("409 "))
        .filter_map(|(_, per)| per.as_f64())
        .sum();
    Ok(Cost {
        slow: slow_requests(before, &after, |_| true),
        conflicts_per_step,
        latency_ms: mean_latency_ms(before, &after, |key| ours(key, true)),
        per_step,
        writes_per_step,
        events_created: grown(before, &after, "POST events"),
        events_trail_s,
    })
}

/// The steps per second the plane could take with this mix of requests at its raw rates: each
/// create at the raw create rate, each Event at the raw Event rate, every other write at the raw
/// status-write rate (reads and conflicts are left out).
fn ceiling(per_step: &Map<String, Value>, raw: &RawRates) -> f64 {
    let seconds_per_step: f64 = per_step
        .iter()
        .filter(|(key, _)| is_write(key))
        .filter_map(|(key, per)| {
            let rate = match key.as_str() {
                "POST events" => raw.events,
                k if k.starts_with("POST ") => raw.creates,
                _ => raw.status_writes(),
            };
            per.as_f64().map(|per| per / rate)
        })
        .sum();
    1.0 / seconds_per_step
}

fn mib(kib: Option<u64>) -> f64 {
    round(kib.unwrap_or(0) as f64 / 1024.0, 1)
}

/// The operator's resident memory, read every 100 ms until stopped: the highest seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut highest = 0;
            while !stopped.load(Ordering::Relaxed) {
                highest = highest.max(rss_kib(pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            highest
        });
        RssSampler { stop, task }
    }

    /// The highest RSS seen, in MiB.
    async fn stop(self) -> Result<f64> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(mib(Some(self.task.await?)))
    }
}
