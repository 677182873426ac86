//! `mcall run -f task.yaml`: run a McallTask file locally, without a cluster.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use mcall_engine::{Limits, TaskPlan, Verdict};
use mcall_generated::McallTask;
use tokio_util::sync::CancellationToken;

use crate::request::{ResolvedEnvironment, task_request};

/// Runs the task in `path`, prints the outcome, and returns whether it succeeded.
pub async fn run(path: &Path) -> Result<bool> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // Without the source snippet the parser's message is one line that names the line and column.
    let task: McallTask =
        serde_saphyr::from_str_with_options(&text, serde_saphyr::options! { with_snippet: false })
            .with_context(|| format!("{} is not a McallTask", path.display()))?;
    if task
        .spec
        .environment_from
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        bail!(
            "spec.environmentFrom reads Secrets and ConfigMaps from a cluster; `mcall run` has none (use spec.environment)"
        );
    }
    let plan = TaskPlan::compile(task_request(&task.spec, ResolvedEnvironment::default()))
        .map_err(|e| anyhow::anyhow!("{} has an invalid spec: {e}", path.display()))?;
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let observer = |event: mcall_engine::EngineEvent| {
        let mcall_engine::EngineEvent::Retrying {
            attempt, reason, ..
        } = event;
        eprintln!("retry {attempt}: {reason}");
    };
    let outcome = mcall_engine::execute(&plan, &Limits::default(), cancel, &observer).await;
    let name = task.metadata.name.as_deref().unwrap_or("task");
    println!(
        "{name}: {:?} in {} ms",
        outcome.verdict,
        outcome.duration.as_millis()
    );
    if let Some(code) = &outcome.error_code {
        println!("  code: {code}");
    }
    if let Some(message) = &outcome.error_message {
        println!("  error: {message}");
    }
    for input in &outcome.inputs {
        println!(
            "  input {}: {:?} {}",
            input.name,
            input.verdict,
            input.error_code.as_deref().unwrap_or("")
        );
    }
    if !outcome.output.is_empty() {
        println!("  output:\n{}", indent(&outcome.output));
    }
    Ok(outcome.verdict == Verdict::Succeeded)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
