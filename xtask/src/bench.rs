//! `cargo xtask bench <which>`: measurements written to bench/results/ and summarized in
//! BENCHMARKS.md. Timing lives here, never in tests.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Warm `generate` (parse + validate + emit everything, no disk writes).
    Generate,
    /// One-shot tasks through the operator on a fresh control plane (1,000 by default).
    Tasks,
    /// Scheduled tasks on `@every 10s` (1,000 by default): schedule lag and memory.
    Schedule,
    /// Two replicas; the leader crashed and stopped 20 times each: time to the first run on the
    /// new leader, runs repeated, ticks not run.
    Failover,
    /// The operator started with 0, 1,000 and 10,000 tasks: time to ready and memory.
    Scale,
    /// McallWorkflows: per-step overhead of sequential chains, a 100-step fan-out, and a burst of
    /// 200 five-step workflows (steps/s against the plane's raw write rate, memory).
    Workflow,
    /// The local cluster: control plane and node start, pod create → Running (one at a time
    /// and 20 at once), the node processes' memory.
    Cluster,
    /// The Pod executor: a pod-mode `echo` task create → Succeeded, one at a time and 100 at
    /// once (the release operator on the host, commands in pods on the local node).
    Pods,
    /// The admission webhook: McallTask creates reviewed by it (admitted and refused) and without
    /// it; the API server's share of reviews answered within 5 ms.
    Admission,
}

pub fn run(root: &Path, which: Which) -> Result<()> {
    match which {
        Which::Generate => generate(root),
        Which::Tasks => tasks(root),
        Which::Schedule => schedule(root),
        Which::Failover => failover(root),
        Which::Scale => scale(root),
        Which::Workflow => workflow(root),
        Which::Cluster => cluster(root),
        Which::Pods => pods(root),
        Which::Admission => admission(root),
    }
}

fn generate(root: &Path) -> Result<()> {
    const RUNS: usize = 50;
    crate::generate::generate(root)?; // warm-up: file cache, allocator
    let mut samples: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            crate::generate::generate(root).map(|_| t.elapsed())
        })
        .collect::<Result<_>>()?;
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, p99, max) = (
        ms(samples[RUNS / 2]),
        ms(samples[RUNS * 99 / 100]),
        ms(samples[RUNS - 1]),
    );
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let result = format!(
        "{{\n  \"benchmark\": \"generate\",\n  \"runs\": {RUNS},\n  \"profile\": \"{profile}\",\n  \"p50_ms\": {p50:.2},\n  \"p99_ms\": {p99:.2},\n  \"max_ms\": {max:.2},\n  \"goal_ms\": 1000\n}}\n"
    );
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir).context("creating bench/results")?;
    std::fs::write(dir.join("generate.json"), &result)
        .context("writing bench/results/generate.json")?;
    println!("{result}");
    let row = format!(
        "| generate (warm, {profile}, {RUNS} runs) | {p50:.1} ms | {p99:.1} ms | ≤ 1000 ms |"
    );
    update_table(root, "generate", &row)
}

fn tasks(root: &Path) -> Result<()> {
    let count = std::env::var("MCALL_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let result = crate::bench_tasks::run(root, count)?;
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir).context("creating bench/results")?;
    std::fs::write(dir.join("tasks.json"), &result).context("writing bench/results/tasks.json")?;
    println!("{result}");
    let value: serde_json::Value = serde_json::from_str(&result)?;
    let low = format!(
        "| tasks, low load (20 one at a time, release) | {} ms | {} ms (max of 20) | p99 ≤ 150 ms |",
        value["low_load_p50_ms"], value["low_load_max_ms"]
    );
    update_table(root, "tasks, low load", &low)?;
    let burst = format!(
        "| tasks, burst ({count} created at once, release) | {} ms | {} ms | {} tasks/s vs raw status writes {}/s (goal ≥ 300/s or ≥ 50 %); {} of {count} Succeeded Events, the last {} s after the last Succeeded status; operator RSS {} MiB at the end of the burst, {} MiB 10 s later (goal ≤ 20), peak {} MiB |",
        value["p50_ms"],
        value["p99_ms"],
        value["tasks_per_second"],
        value["raw_status_writes_per_second"],
        value["succeeded_events"],
        value["events_trail_s"],
        value["operator_rss_mib"],
        value["operator_rss_settled_mib"],
        value["operator_peak_rss_mib"]
    );
    update_table(root, "tasks, burst", &burst)
}

fn schedule(root: &Path) -> Result<()> {
    let count = std::env::var("MCALL_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let result = crate::bench_schedule::run(root, count, 45)?;
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir).context("creating bench/results")?;
    // The default size keeps the plain name; other sizes are kept beside it.
    let file = if count == 1000 {
        "schedule.json".to_owned()
    } else {
        format!("schedule-{count}.json")
    };
    std::fs::write(dir.join(&file), &result)
        .with_context(|| format!("writing bench/results/{file}"))?;
    println!("{result}");
    let value: serde_json::Value = serde_json::from_str(&result)?;
    let row = format!(
        "| schedule lag, {count} tasks (@every 10s for 45 s, release; steady state) | {} ms | {} ms | p99 ≤ 100 ms; max {} ms over {} runs after the first interval; all {} runs incl. the creation burst: p50 {} ms, p99 {} ms; {} ticks not run; operator RSS {} MiB (goal ≤ 20) |",
        value["lag_p50_ms"],
        value["lag_p99_ms"],
        value["lag_max_ms"],
        value["steady_runs"],
        value["runs"],
        value["all_runs_lag_p50_ms"],
        value["all_runs_lag_p99_ms"],
        value["ticks_not_run"],
        value["operator_rss_mib"]
    );
    update_table(root, &format!("schedule lag, {count} tasks"), &row)
}

fn failover(root: &Path) -> Result<()> {
    let rounds = std::env::var("MCALL_BENCH_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let result = crate::bench_failover::run(root, rounds)?;
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir).context("creating bench/results")?;
    std::fs::write(dir.join("failover.json"), &result)
        .context("writing bench/results/failover.json")?;
    println!("{result}");
    let v: serde_json::Value = serde_json::from_str(&result)?;
    let row = format!(
        "| failover, {} crashes (SIGKILL) and {} graceful stops (SIGTERM) of the leader, 2 replicas (release) | crash {} ms, graceful {} ms | crash {} ms, graceful {} ms (max) | goal: crash ≤ 3 s, graceful ≤ 1 s to the first run on the new leader; one-shot runs repeated: {} after a crash (of {} created around them: runs that had written nothing yet run again, at least once), {} after a graceful stop; ticks: {} requests, {} recorded ({} succeeded), {} recorded twice, {} interrupted (not run), {} missed without a record |",
        v["crash_failovers"],
        v["graceful_failovers"],
        v["crash_to_first_run_p50_ms"],
        v["graceful_to_first_run_p50_ms"],
        v["crash_to_first_run_max_ms"],
        v["graceful_to_first_run_max_ms"],
        v["one_shot_runs_repeated_after_crash"],
        v["one_shot_tasks_per_stop"],
        v["one_shot_runs_repeated_after_graceful_stop"],
        v["tick_requests"],
        v["ticks_recorded"],
        v["ticks_succeeded"],
        v["ticks_recorded_twice"],
        v["ticks_interrupted_not_run"],
        v["ticks_missed_without_record"]
    );
    update_table(root, "failover", &row)
}

fn scale(root: &Path) -> Result<()> {
    let result = crate::bench_scale::run(root)?;
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir).context("creating bench/results")?;
    std::fs::write(dir.join("scale.json"), &result).context("writing bench/results/scale.json")?;
    println!("{result}");
    let v: serde_json::Value = serde_json::from_str(&result)?;
    for size in v["sizes"].as_array().into_iter().flatten() {
        let row = format!(
            "| scale, {} tasks in the cache (release; restart, settled {} s) | ready {} s | RSS {} MiB, peak {} MiB | goals: ≤ 20 MiB at 1,000, ≤ 60 MiB at 10,000; ready ≤ 5 s at 10,000 |",
            size["tasks"], v["settle_s"], size["ready_s"], size["rss_mib"], size["peak_rss_mib"]
        );
        update_table(root, &format!("scale, {} tasks", size["tasks"]), &row)?;
    }
    Ok(())
}

fn workflow(root: &Path) -> Result<()> {
    let result = crate::bench_workflow::run(root)?;
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir).context("creating bench/results")?;
    std::fs::write(dir.join("workflow.json"), &result)
        .context("writing bench/results/workflow.json")?;
    println!("{result}");
    let v: serde_json::Value = serde_json::from_str(&result)?;
    let (c, f, b) = (&v["chain"], &v["fanout"], &v["burst"]);
    let chain = format!(
        "| workflow, chain ({} chains of {} sequential steps, one after another, release) | {} ms | {} ms (max of {}) | per-step overhead (a step seen ended → the next step's command started) ≤ 50 ms (stretch 25); of it: to the next child seen created p50 {} ms, child → its command p50 {} ms; whole chain {} ms per step (p50; max {}) |",
        c["chains"],
        c["steps"],
        c["overhead_per_step_ms"]["p50"],
        c["overhead_per_step_ms"]["max"],
        c["overhead_per_step_ms"]["n"],
        c["handoff_ms"]["p50"],
        c["pickup_ms"]["p50"],
        c["chain_per_step_ms"]["p50"],
        c["chain_per_step_ms"]["max"]
    );
    update_table(root, "workflow, chain", &chain)?;
    let fanout = format!(
        "| workflow, fan-out ({} independent steps, concurrency {}, {} runs, release) | {} ms | {} ms (max) | creation → Succeeded ≤ 2000 ms; p50: last child created at {} ms, last ended at {} ms, workflow Succeeded {} ms after it |",
        f["steps"],
        f["concurrency"],
        f["workflows"],
        f["create_to_succeeded_ms"]["p50"],
        f["create_to_succeeded_ms"]["max"],
        f["create_to_last_child_created_ms"]["p50"],
        f["create_to_last_child_ended_ms"]["p50"],
        f["last_child_ended_to_workflow_end_ms"]["p50"]
    );
    update_table(root, "workflow, fan-out", &fanout)?;
    let writes: Vec<String> = b["api_requests_per_step"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| crate::bench_api::is_write(k))
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let percent = |v: &serde_json::Value| format!("{:.0} %", v.as_f64().unwrap_or(0.0) * 100.0);
    let burst = format!(
        "| workflow, burst ({} {}-step diamonds created at once, release) | {} ms | {} ms | {} steps/s; a step costs {} API writes ({}), {} of them refused as conflicts (409); for that mix the plane's raw rates allow {} steps/s: {} of it ({} writes/s vs raw status writes {}/s); operator RSS {} MiB before, {} MiB at the end of the burst (max sampled {}), {} MiB 10 s later, peak {} MiB (goal ≤ 30) |",
        b["workflows"],
        b["steps_per_workflow"],
        b["workflow_create_to_succeeded_ms"]["p50"],
        b["workflow_create_to_succeeded_ms"]["p99"],
        b["steps_per_second"],
        b["api_writes_per_step"],
        writes.join(", "),
        b["api_conflicts_per_step"],
        b["ceiling_steps_per_second"],
        percent(&b["share_of_ceiling"]),
        b["api_writes_per_second"],
        b["raw_status_writes_per_second"],
        b["operator_rss_mib_before"],
        b["operator_rss_mib_end_of_burst"],
        b["operator_rss_mib_max_sampled"],
        b["operator_rss_mib_settled"],
        b["operator_peak_rss_mib"]
    );
    update_table(root, "workflow, burst", &burst)
}

fn cluster(root: &Path) -> Result<()> {
    let result = crate::bench_cluster::run()?;
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir).context("creating bench/results")?;
    std::fs::write(dir.join("cluster.json"), &result)
        .context("writing bench/results/cluster.json")?;
    println!("{result}");
    let v: serde_json::Value = serde_json::from_str(&result)?;
    let starts = |key: &str| {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| format!("{x} s"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let rss = v["rss_mib"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, x)| format!("{k} {x} MiB"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let start = format!(
        "| cluster start (control plane, then node Ready; {} fresh starts) | plane {} | node {} | node Ready in ≤ 5 s; RSS {rss} |",
        v["starts"],
        starts("plane_ready_s"),
        starts("node_ready_s")
    );
    update_table(root, "cluster start", &start)?;
    let pods = format!(
        "| cluster pods (create → Running, {} pods) | one at a time {} ms, 20 at once {} ms | {} ms, {} ms | — |",
        v["pods"],
        v["pod_running_one_at_a_time_p50_ms"],
        v["pod_running_burst_p50_ms"],
        v["pod_running_one_at_a_time_p99_ms"],
        v["pod_running_burst_p99_ms"]
    );
    update_table(root, "cluster pods", &pods)?;
    let runs = format!(
        "| cluster runs (an `echo` to completion, {} each, one at a time) | bare pod {} ms, Job {} ms | {} ms, {} ms | pod executor: p50 ≤ 1.5 s |",
        v["pods"],
        v["echo_pod_succeeded_p50_ms"],
        v["echo_job_complete_p50_ms"],
        v["echo_pod_succeeded_p99_ms"],
        v["echo_job_complete_p99_ms"]
    );
    update_table(root, "cluster runs", &runs)
}

fn pods(root: &Path) -> Result<()> {
    let result = crate::bench_pods::run(root)?;
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir).context("creating bench/results")?;
    std::fs::write(dir.join("pods.json"), &result).context("writing bench/results/pods.json")?;
    println!("{result}");
    let v: serde_json::Value = serde_json::from_str(&result)?;
    let one = format!(
        "| pod executor, one at a time (an `echo` task create → Succeeded, {} tasks) | {} ms | {} ms | p50 ≤ 1.5 s |",
        v["one_at_a_time"], v["echo_task_succeeded_p50_ms"], v["echo_task_succeeded_p99_ms"]
    );
    update_table(root, "pod executor, one at a time", &one)?;
    let burst = format!(
        "| pod executor, burst ({} at once, {} execution slots) | {} ms | {} ms | all {} in {} s ({} tasks/s), {} failed, {} pods created ({} followed by a restarted operator), at most {} pods at once, {} operator restarts (Lease lost while the node started the pods), {} pod reads |",
        v["burst"],
        v["operator_slots"],
        v["burst_succeeded_p50_ms"],
        v["burst_succeeded_p99_ms"],
        v["burst"],
        v["burst_total_s"],
        v["burst_tasks_per_second"],
        v["burst_failed"],
        v["burst_pods_created"],
        v["burst_pods_followed_after_a_restart"],
        v["burst_peak_pods"],
        v["operator_restarts"],
        v["burst_pod_reads"]
    );
    update_table(root, "pod executor, burst", &burst)
}

fn admission(root: &Path) -> Result<()> {
    let result = crate::bench_admission::run(root)?;
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir).context("creating bench/results")?;
    std::fs::write(dir.join("admission.json"), &result)
        .context("writing bench/results/admission.json")?;
    println!("{result}");
    let v: serde_json::Value = serde_json::from_str(&result)?;
    let percent = |key: &str| v[key].as_f64().unwrap_or(0.0) * 100.0;
    let row = format!(
        "| admission webhook (McallTask creates, {} each, one at a time) | create {} ms (refused {} ms, with 2 dependencies {} ms, no webhook {} ms) | create {} ms (refused {} ms, with 2 dependencies {} ms, no webhook {} ms) | p99 ≤ 5 ms in the webhook: {:.1} % of admitted, {:.1} % of refused and {:.1} % of dependent reviews within 5 ms (API server's histogram) |",
        v["creates"],
        v["create_with_webhook_p50_ms"],
        v["create_refused_p50_ms"],
        v["create_dependent_p50_ms"],
        v["create_without_webhook_p50_ms"],
        v["create_with_webhook_p99_ms"],
        v["create_refused_p99_ms"],
        v["create_dependent_p99_ms"],
        v["create_without_webhook_p99_ms"],
        percent("admitted_within_5ms_share"),
        percent("refused_within_5ms_share"),
        percent("dependent_within_5ms_share")
    );
    update_table(root, "admission webhook", &row)
}

/// Replaces (or adds) the row of `name` in BENCHMARKS.md.
pub(crate) fn update_table(root: &Path, name: &str, row: &str) -> Result<()> {
    let path = root.join("BENCHMARKS.md");
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nRecorded by `cargo xtask bench <name>`; raw results in `bench/results/`.\n\n| benchmark | p50 | p99 | goal |\n|---|---|---|---|\n".to_owned()
    });
    let prefix = format!("| {name} ");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    match lines.iter().position(|l| l.starts_with(&prefix)) {
        Some(i) => lines[i] = row.to_owned(),
        // A new row goes after the table's last row, above any notes.
        None => {
            let after = lines
                .iter()
                .rposition(|l| l.starts_with('|'))
                .map_or(lines.len(), |i| i + 1);
            lines.insert(after, row.to_owned());
        }
    }
    text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).context("writing BENCHMARKS.md")
}
