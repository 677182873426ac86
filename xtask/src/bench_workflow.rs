//! `cargo xtask bench workflow`: McallWorkflows through the release-built operator on a fresh
//! control plane (issue 13). Three shapes, one operator process, one after another:
//!
//! - **chain**: ten workflows of ten sequential steps, run one after another: the time from one
//!   step's end to the next step's command (the per-step overhead), and where it goes;
//! - **fan-out**: workflows of 100 independent steps with `concurrency: 100`: creation → the
//!   workflow Succeeded;
//! - **burst** ([`burst`]): 200 five-step diamonds created at once: steps per second, what a step
//!   costs the API server, the plane's raw write rates, and the operator's memory.
//!
//! Everything is timed by the benchmark's own watches as their events arrive ([`seen`]): status
//! times are whole seconds.

mod burst;
mod seen;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{DynamicObject, PostParams};
use kube::{Api, Client};
use mcall_tests::ControlPlane;
use serde_json::{Value, json};

use crate::bench_api::{
    Counts, counts_once, is_write, mean_latency_ms, request_counts, requests_per,
    workflows_resource,
};
use crate::bench_tasks::{operator_log, with_operator};
use seen::{Operator, Seen, Step};

/// Sequential chains run, one after another, and their steps.
const CHAINS: usize = 10;
const CHAIN_STEPS: usize = 10;
/// Fan-out workflows run, one after another, and their (independent) steps.
const FANOUTS: usize = 3;
const FANOUT_STEPS: usize = 100;
/// How long one chain or fan-out workflow may take.
const LIMIT: Duration = Duration::from_secs(60);

pub fn run(root: &Path) -> Result<String> {
    with_operator(root, |plane, operator_pid| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(measure(plane, operator_pid))
    })
}

async fn measure(plane: &ControlPlane, operator_pid: u32) -> Result<String> {
    let client = plane.admin_client().await?;
    let workflows: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "bench", &workflows_resource());
    let operator = Operator {
        pid: operator_pid,
        log: operator_log(plane),
    };
    let seen = Seen::start(&client, operator).await?;
    let counts = request_counts(&client).await?;
    // Instead of a fixed wait for the operator: a small workflow run to its end (the operator
    // leads, its caches are synced, its connections are open).
    create(&workflows, "warm-up", chain_spec(2, "true")).await?;
    seen.succeeded("warm-up", LIMIT).await?;
    let chain = chain(&client, &workflows, &seen).await?;
    let fanout = fanout(&client, &workflows, &seen).await?;
    // The Events of the runs so far (one per step, two per run) are out before the burst is
    // counted: they are published in the background, a little after the statuses.
    let events = (2 + 2) + CHAINS * (CHAIN_STEPS + 2) + FANOUTS * (FANOUT_STEPS + 2);
    let after = counts_once(&client, &counts, "POST events", events, LIMIT).await?;
    let published = crate::bench_api::grown(&counts, &after, "POST events");
    if published < events {
        eprintln!("only {published} of {events} Events before the burst; going on");
    }
    let burst = burst::run(&client, &workflows, &seen, operator_pid).await?;
    let result = json!({
        "benchmark": "workflow",
        "chain": chain,
        "fanout": fanout,
        "burst": burst,
    });
    Ok(serde_json::to_string_pretty(&result)? + "\n")
}

async fn create(workflows: &Api<DynamicObject>, name: &str, spec: Value) -> Result<()> {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "mcall.tz.io/v1", "kind": "McallWorkflow",
        "metadata": {"name": name}, "spec": spec
    }))?;
    workflows
        .create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating workflow {name}"))?;
    Ok(())
}

/// Steps `s0` → `s1` → … each depending on the one before, all running `input`.
fn chain_spec(steps: usize, input: &str) -> Value {
    let tasks: Vec<Value> = (0..steps)
        .map(|i| {
            let mut step = json!({"name": format!("s{i}"), "type": "cmd", "input": input});
            if i > 0 {
                step["dependencies"] = json!([format!("s{}", i - 1)]);
            }
            step
        })
        .collect();
    json!({ "tasks": tasks })
}

/// A chain's timings, in milliseconds, over all chains.
#[derive(Default)]
struct ChainTimes {
    /// Creation of the workflow → it was seen Succeeded, over its steps.
    per_step: Vec<f64>,
    /// A step seen ended → the next step's command started: handoff + pickup.
    overhead: Vec<f64>,
    /// A step seen ended → the next step's child seen created (the workflow controller).
    handoff: Vec<f64>,
    /// A child seen created → its command started (the task controller, the process spawn).
    pickup: Vec<f64>,
    /// A command started → its child seen ended (the command, the result's status write).
    finish: Vec<f64>,
    /// The workflow's create request sent → its first child seen created (the first status
    /// write comes first: it starts the run).
    first: Vec<f64>,
    /// The last step seen ended → the workflow seen Succeeded.
    last: Vec<f64>,
}

impl ChainTimes {
    fn add(&mut self, created: f64, ended: f64, steps: &[Step]) -> Result<()> {
        let ended_of = |s: &Step| s.ended.with_context(|| format!("{} never ended", s.name));
        let command_of = |s: &Step| {
            s.command
                .with_context(|| format!("{}: no `date +%s.%N` in its output", s.name))
        };
        self.per_step.push((ended - created) / steps.len() as f64);
        self.first.push(steps[0].created - created);
        self.last.push(ended - ended_of(&steps[steps.len() - 1])?);
        for s in steps {
            self.pickup.push(command_of(s)? - s.created);
            self.finish.push(ended_of(s)? - command_of(s)?);
        }
        for pair in steps.windows(2) {
            self.handoff.push(pair[1].created - ended_of(&pair[0])?);
            self.overhead
                .push(command_of(&pair[1])? - ended_of(&pair[0])?);
        }
        Ok(())
    }
}

async fn chain(client: &Client, workflows: &Api<DynamicObject>, seen: &Seen) -> Result<Value> {
    let before = request_counts(client).await?;
    let mut times = ChainTimes::default();
    for k in 0..CHAINS {
        let name = format!("chain-{k}");
        let created = seen.now();
        create(workflows, &name, chain_spec(CHAIN_STEPS, "date +%s.%N")).await?;
        let end = seen.succeeded(&name, LIMIT).await?;
        let steps: Vec<Step> = seen
            .read(|log| {
                let of = log.steps_of(&name);
                (0..CHAIN_STEPS)
                    .map(|i| of.get(format!("s{i}").as_str()).map(|s| (*s).clone()))
                    .collect::<Option<_>>()
            })
            .with_context(|| format!("{name}: a step's child was never seen"))?;
        times.add(created, end.at, &steps)?;
    }
    let after = request_counts(client).await?;
    Ok(json!({
        "cost": cost(&before, &after, CHAINS * CHAIN_STEPS),
        "chains": CHAINS,
        "steps": CHAIN_STEPS,
        "step_input": "date +%s.%N",
        "goal_overhead_per_step_ms": 50,
        "overhead_per_step_ms": stats(&times.overhead),
        "chain_per_step_ms": stats(&times.per_step),
        "handoff_ms": stats(&times.handoff),
        "pickup_ms": stats(&times.pickup),
        "finish_ms": stats(&times.finish),
        "create_to_first_child_ms": stats(&times.first),
        "last_step_to_workflow_end_ms": stats(&times.last),
    }))
}

async fn fanout(client: &Client, workflows: &Api<DynamicObject>, seen: &Seen) -> Result<Value> {
    let before = request_counts(client).await?;
    let tasks: Vec<Value> = (0..FANOUT_STEPS)
        .map(|i| json!({"name": format!("p{i}"), "type": "cmd", "input": "true"}))
        .collect();
    let spec = json!({"concurrency": FANOUT_STEPS, "tasks": tasks});
    let (mut total, mut first, mut all_created, mut all_ended, mut to_end) =
        (vec![], vec![], vec![], vec![], vec![]);
    for k in 0..FANOUTS {
        let name = format!("fanout-{k}");
        let created = seen.now();
        create(workflows, &name, spec.clone()).await?;
        let end = seen.succeeded(&name, LIMIT).await?;
        let (count, first_created, last_created, last_ended) = seen.read(|log| {
            let steps = log.steps_of(&name);
            let max = |v: &mut dyn Iterator<Item = f64>| v.fold(f64::MIN, f64::max);
            (
                steps.len(),
                steps.values().map(|s| s.created).fold(f64::MAX, f64::min),
                max(&mut steps.values().map(|s| s.created)),
                max(&mut steps.values().filter_map(|s| s.ended)),
            )
        });
        anyhow::ensure!(
            count == FANOUT_STEPS,
            "{name}: {count} of {FANOUT_STEPS} children seen"
        );
        total.push(end.at - created);
        first.push(first_created - created);
        all_created.push(last_created - created);
        all_ended.push(last_ended - created);
        to_end.push(end.at - last_ended);
    }
    let after = request_counts(client).await?;
    Ok(json!({
        "cost": cost(&before, &after, FANOUTS * FANOUT_STEPS),
        "sizes": sizes(workflows, &format!("fanout-{}", FANOUTS - 1)).await?,
        "workflows": FANOUTS,
        "steps": FANOUT_STEPS,
        "concurrency": FANOUT_STEPS,
        "goal_ms": 2000,
        "create_to_succeeded_ms": stats(&total),
        "create_to_first_child_ms": stats(&first),
        "create_to_last_child_created_ms": stats(&all_created),
        "create_to_last_child_ended_ms": stats(&all_ended),
        "last_child_ended_to_workflow_end_ms": stats(&to_end),
    }))
}

/// Whether a key of the API server's counts is about the resources a workflow step costs: its
/// task, its workflow, and (`with_events`) Events.
fn ours(key: &str, with_events: bool) -> bool {
    let resource = key.rsplit(' ').next().and_then(|r| r.split('/').next());
    match resource {
        Some("mcalltasks" | "mcallworkflows") => true,
        Some("events") => with_events,
        _ => false,
    }
}

/// The requests per step between `before` and `after`, and the API server's mean time per
/// request. Without Events: they trail the statuses, and are counted in the burst.
fn cost(before: &Counts, after: &Counts, steps: usize) -> Value {
    let per_step = requests_per(before, after, steps, |key| ours(key, false));
    let writes: f64 = per_step
        .iter()
        .filter(|(key, _)| is_write(key))
        .filter_map(|(_, per)| per.as_f64())
        .sum();
    json!({
        "api_requests_per_step": per_step,
        "api_writes_per_step_without_events": round(writes, 2),
        "api_mean_latency_ms": mean_latency_ms(before, after, |key| ours(key, false)),
    })
}

/// The bytes (as JSON) of the status of workflow `name`, which every status write carries, and of
/// its `managedFields`.
async fn sizes(workflows: &Api<DynamicObject>, name: &str) -> Result<Value> {
    let workflow = workflows.get(name).await?;
    Ok(json!({
        "status_bytes": serde_json::to_vec(&workflow.data["status"])?.len(),
        "managed_fields_bytes": serde_json::to_vec(&workflow.metadata.managed_fields)?.len(),
    }))
}

/// p50, p99 and max of `values` (to 0.1), and how many there were.
fn stats(values: &[f64]) -> Value {
    if values.is_empty() {
        return json!({"n": 0});
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |p: f64| round(sorted[((sorted.len() - 1) as f64 * p).round() as usize], 1);
    json!({"n": sorted.len(), "p50": at(0.5), "p99": at(0.99), "max": at(1.0)})
}

/// `value` rounded to `places` decimals, for the JSON.
fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}
