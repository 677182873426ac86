//! `cargo xtask bench schedule`: N tasks on `@every 10s` (cmd `date +%s.%N`) against a fresh control
//! plane and the release-built operator. Records the schedule lag (when the command started, as
//! it printed it, − the scheduled time) p50/p99, the runs that were missed or skipped, and the
//! operator's RSS.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use kube::api::{DynamicObject, ListParams, PostParams};
use serde_json::json;

use crate::bench_tasks::{rss_kib, rss_split_json, tasks_api, with_operator};

pub fn run(root: &Path, count: usize, seconds: u64) -> Result<String> {
    with_operator(root, |plane, operator_pid| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let tasks = tasks_api(plane.admin_client().await?);
            tokio::time::sleep(Duration::from_secs(2)).await; // operator caches sync
            futures::stream::iter(0..count)
                .map(|i| {
                    let tasks = tasks.clone();
                    async move {
                        let task: DynamicObject = serde_json::from_value(json!({
                            "apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "metadata": {"name": format!("s-{i}")},
                            "spec": {"type": "cmd", "input": "date +%s.%N", "schedule": "@every 10s", "successfulRunsHistoryLimit": 10}
                        }))?;
                        tasks.create(&PostParams::default(), &task).await?;
                        Ok::<_, anyhow::Error>(())
                    }
                })
                .buffer_unordered(32)
                .try_collect::<Vec<_>>()
                .await?;
            // Every task has run once by one interval after the last create: from there on the
            // operator is in its steady state (no first status writes, no creations).
            let steady_from = k8s_openapi::jiff::Timestamp::now() + std::time::Duration::from_secs(10);
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            // Reading 1,000 tasks back loads the API server for a moment: runs due from here on
            // would measure this benchmark's own LIST, not the operator.
            let window_end = k8s_openapi::jiff::Timestamp::now();
            let rss_mib = rss_kib(operator_pid).unwrap_or(0) as f64 / 1024.0;
            let rss_split = rss_split_json(operator_pid);

            let (mut lags, mut steady) = (Vec::new(), Vec::new());
            let (mut not_run, mut runs) = (0usize, 0usize);
            for task in tasks.list(&ListParams::default()).await? {
                for record in task.data["status"]["history"].as_array().into_iter().flatten() {
                                        // The command prints when it actually started, in nanoseconds: status times
                    // are whole seconds.
                    let scheduled = record["scheduledTime"].as_str().and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
                    let started = record["output"].as_str().and_then(|o| o.trim().parse::<f64>().ok());
                    match (scheduled, started) {
                        // Due after the window: measures the LIST above.
                        (Some(s), Some(_)) if s >= window_end => {}
                        (Some(s), Some(t)) => {
                            runs += 1;
                            let lag = (t - s.as_millisecond() as f64 / 1000.0) * 1000.0;
                            lags.push(lag);
                            if s >= steady_from {
                                steady.push(lag);
                            }
                            if let Ok(path) = std::env::var("MCALL_BENCH_DUMP") {
                                use std::io::Write;
                                let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path)?;
                                writeln!(f, "{} {} {}", task.metadata.name.as_deref().unwrap_or(""), s, lags.last().unwrap())?;
                            }
                        }
                        _ => not_run += 1,
                    }
                }
            }
            anyhow::ensure!(!steady.is_empty(), "no scheduled run was recorded after the warm-up");
            lags.sort_by(f64::total_cmp);
            steady.sort_by(f64::total_cmp);
            let pct = |v: &[f64], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
            Ok(format!(
                "{{\n  \"benchmark\": \"schedule\",\n  \"tasks\": {count},\n  \"seconds\": {seconds},\n  \"runs\": {runs},\n  \"ticks_not_run\": {not_run},\n  \"lag_p50_ms\": {:.1},\n  \"lag_p99_ms\": {:.1},\n  \"lag_max_ms\": {:.1},\n  \"steady_runs\": {},\n  \"all_runs_lag_p50_ms\": {:.1},\n  \"all_runs_lag_p99_ms\": {:.1},\n  \"operator_rss_mib\": {rss_mib:.1},\n  {rss_split}\n}}\n",
                pct(&steady, 0.5),
                pct(&steady, 0.99),
                pct(&steady, 1.0),
                steady.len(),
                pct(&lags, 0.5),
                pct(&lags, 0.99),
            ))
        })
    })
}
