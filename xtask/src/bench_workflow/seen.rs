//! What the benchmark's own watches of the `bench` namespace saw, each change stamped with the
//! monotonic clock as it arrived: when each step's child task first appeared and first ended,
//! the time its command printed (`date +%s.%N`), and when each workflow ended. Status times are
//! whole seconds; these are what the benchmark measures with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::bench_api::{tasks_resource, workflows_resource};

/// One step's child task, in milliseconds since the benchmark's anchor.
#[derive(Clone, Debug, Default)]
pub struct Step {
    pub name: String,
    /// First seen (its creation, as a watch delivers it).
    pub created: f64,
    /// First seen Succeeded or Failed.
    pub ended: Option<f64>,
    /// When its command started, by the command's own clock (`date +%s.%N` as its output).
    pub command: Option<f64>,
}

/// A workflow's end, in milliseconds since the anchor.
#[derive(Clone, Debug)]
pub struct End {
    pub at: f64,
    pub phase: String,
    pub message: String,
}

#[derive(Default)]
pub struct Log {
    /// By (workflow, step): the child task's labels.
    pub steps: HashMap<(String, String), Step>,
    pub ended: HashMap<String, End>,
    /// Watches whose first list is done.
    synced: usize,
}

impl Log {
    /// The steps of `workflow`, by step name.
    pub fn steps_of(&self, workflow: &str) -> HashMap<&str, &Step> {
        self.steps
            .iter()
            .filter(|((wf, _), _)| wf == workflow)
            .map(|((_, step), s)| (step.as_str(), s))
            .collect()
    }
}

/// The watches and what they saw.
pub struct Seen {
    /// The operator: every wait ends when it exits.
    operator: Operator,
    log: Arc<Mutex<Log>>,
    changed: tokio::sync::watch::Sender<()>,
    anchor: Instant,
    /// The anchor by the wall clock, in seconds since the Unix epoch.
    anchor_unix: f64,
    watches: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Seen {
    fn drop(&mut self) {
        for watch in &self.watches {
            watch.abort();
        }
    }
}

impl Seen {
    /// Starts watching the tasks and workflows of `bench`; returns once both have listed.
    pub async fn start(client: &Client, operator: Operator) -> Result<Seen> {
        let anchor = Instant::now();
        let anchor_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_secs_f64();
        let mut seen = Seen {
            operator,
            log: Arc::default(),
            changed: tokio::sync::watch::Sender::new(()),
            anchor,
            anchor_unix,
            watches: Vec::new(),
        };
        for (resource, record) in [
            (tasks_resource(), record_task as Record),
            (workflows_resource(), record_workflow as Record),
        ] {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "bench", &resource);
            seen.watches.push(seen.spawn(api, record));
        }
        seen.until(
            "the benchmark's watches to list",
            Duration::from_secs(30),
            |log| (log.synced == 2).then_some(()),
        )
        .await?;
        Ok(seen)
    }

    fn spawn(&self, api: Api<DynamicObject>, record: Record) -> tokio::task::JoinHandle<()> {
        let (log, changed, anchor, anchor_unix) = (
            self.log.clone(),
            self.changed.clone(),
            self.anchor,
            self.anchor_unix,
        );
        tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                // Stamped before anything else is done with it.
                let at = anchor.elapsed().as_secs_f64() * 1000.0;
                match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        record(&mut log.lock().expect("not poisoned"), &o, at, anchor_unix);
                    }
                    Ok(watcher::Event::InitDone) => log.lock().expect("not poisoned").synced += 1,
                    Ok(_) => continue,
                    Err(e) => {
                        eprintln!("bench watch: {e}");
                        continue;
                    }
                }
                changed.send_replace(());
            }
        })
    }

    /// `at` in milliseconds since the anchor.
    pub fn ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.anchor).as_secs_f64() * 1000.0
    }

    /// Milliseconds since the anchor now.
    pub fn now(&self) -> f64 {
        self.ms(Instant::now())
    }

    /// Waits until `check` finds what it looks for in the log, for at most `limit`, and while
    /// the operator runs.
    pub async fn until<T>(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&Log) -> Option<T>,
    ) -> Result<T> {
        let mut changed = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            changed.borrow_and_update();
            if let Some(found) = check(&self.log.lock().expect("not poisoned")) {
                return Ok(found);
            }
            if self.operator.exited() {
                bail!(
                    "the operator exited while the benchmark waited for {what}; its log ends:\n{}",
                    self.operator.log_tail()
                );
            }
            // Woken by a change, or to look at the operator again.
            let next = deadline.min(tokio::time::Instant::now() + Duration::from_millis(200));
            if tokio::time::timeout_at(next, changed.changed())
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                bail!("waited {limit:?} for {what}");
            }
        }
    }

    /// Waits until the workflow `name` ended; fails if it did not succeed.
    pub async fn succeeded(&self, name: &str, limit: Duration) -> Result<End> {
        let end = self
            .until(&format!("workflow {name} to end"), limit, |log| {
                log.ended.get(name).cloned()
            })
            .await?;
        if end.phase != "Succeeded" {
            bail!("workflow {name} ended {}: {}", end.phase, end.message);
        }
        Ok(end)
    }

    /// Reads the log.
    pub fn read<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        f(&self.log.lock().expect("not poisoned"))
    }
}

/// The operator process the benchmark runs, and its log.
pub struct Operator {
    pub pid: u32,
    pub log: std::path::PathBuf,
}

impl Operator {
    /// Whether the process is gone (or a zombie: it is the benchmark's child).
    fn exited(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid)).map_or(true, |s| {
            s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
    }

    /// The last warnings and errors of its log, without terminal colours.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.starts_with("error"))
            .map(strip_colours)
            .collect();
        if lines.is_empty() {
            return format!("(no warnings in {})", self.log.display());
        }
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence ends with its first letter.
            chars.by_ref().find(char::is_ascii_alphabetic);
        } else {
            out.push(c);
        }
    }
    out
}

/// Records one object a watch delivered at `at` (ms since the anchor).
type Record = fn(&mut Log, &DynamicObject, f64, f64);

fn record_task(log: &mut Log, task: &DynamicObject, at: f64, anchor_unix: f64) {
    let labels = task.labels();
    let (Some(workflow), Some(step)) = (
        labels.get("mcall.tz.io/workflow"),
        labels.get("mcall.tz.io/step"),
    ) else {
        return;
    };
    let entry = log
        .steps
        .entry((workflow.clone(), step.clone()))
        .or_insert_with(|| Step {
            name: task.name_any(),
            created: at,
            ..Step::default()
        });
    let status = &task.data["status"];
    if entry.ended.is_none() && matches!(status["phase"].as_str(), Some("Succeeded" | "Failed")) {
        entry.ended = Some(at);
        entry.command = status["result"]["output"]
            .as_str()
            .and_then(|o| o.trim().parse::<f64>().ok())
            .map(|unix| (unix - anchor_unix) * 1000.0);
    }
}

fn record_workflow(log: &mut Log, workflow: &DynamicObject, at: f64, _: f64) {
    let status = &workflow.data["status"];
    let phase = status["phase"].as_str().unwrap_or_default();
    let ended = matches!(phase, "Succeeded" | "Failed")
        && !status["completionTime"].is_null()
        && status["nextRetryTime"].is_null();
    if ended {
        log.ended.entry(workflow.name_any()).or_insert_with(|| End {
            at,
            phase: phase.to_owned(),
            message: status["message"].as_str().unwrap_or_default().to_owned(),
        });
    }
}
