//! One attempt: a single input, or several run sequentially or in parallel with failFast.
//!
//! The task `timeout` bounds the whole attempt: sequential inputs share it, and an input whose
//! turn comes after it elapsed is skipped.

use std::sync::OnceLock;

use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::commands::CommandRunner;
use crate::judge::seconds;
use crate::outcome::{Limits, Verdict};
use crate::plan::TaskPlan;
use crate::request::ExecutionMode;
use crate::runner::{Attempt, InputResult, run_input};

/// Runs attempt `number` of the plan's inputs.
pub(crate) async fn run_attempt(
    plan: &TaskPlan,
    limits: &Limits,
    commands: &dyn CommandRunner,
    number: u32,
    cancel: &CancellationToken,
) -> Vec<InputResult> {
    let attempt = Attempt {
        number,
        deadline: Instant::now() + plan.timeout,
    };
    match plan.execution_mode {
        ExecutionMode::Sequential => sequential(plan, limits, commands, attempt, cancel).await,
        ExecutionMode::Parallel => parallel(plan, limits, commands, attempt, cancel).await,
    }
}

async fn sequential(
    plan: &TaskPlan,
    limits: &Limits,
    commands: &dyn CommandRunner,
    attempt: Attempt,
    cancel: &CancellationToken,
) -> Vec<InputResult> {
    let deadline = attempt.deadline;
    let mut results = Vec::with_capacity(plan.inputs.len());
    let mut stop: Option<String> = None;
    for input in &plan.inputs {
        if stop.is_none() && !results.is_empty() {
            if cancel.is_cancelled() {
                stop = Some("the task was cancelled".to_owned());
            } else if Instant::now() >= deadline {
                stop = Some(format!(
                    "the task timeout of {} elapsed before this input's turn",
                    seconds(plan.timeout)
                ));
            }
        }
        if let Some(reason) = &stop {
            results.push(InputResult::skipped(input, reason));
            continue;
        }
        let result = run_input(plan, input, limits, commands, attempt, cancel).await;
        match result.verdict {
            Verdict::Failed if plan.fail_fast => {
                stop = Some(format!(
                    "input {:?} failed and failFast is set",
                    result.name
                ));
            }
            Verdict::Cancelled => stop = Some("the task was cancelled".to_owned()),
            _ => {}
        }
        results.push(result);
    }
    results
}

/// Inputs of one parallel task running at once, at most: a task of 256 inputs is one execution
/// slot, and must not become 256 processes and 256 output buffers.
pub const PARALLEL_INPUTS: usize = 16;

/// The inputs run concurrently inside this one future ([`PARALLEL_INPUTS`] at a time: the next
/// starts as soon as any ends; results in input order), so borrowing the plan is enough.
/// failFast cancels a child token that only the inputs watch, not the caller's: running inputs
/// are killed and waiting ones never start. The task timeout bounds the whole attempt: an input
/// whose turn comes after it elapsed is skipped, as in sequential mode.
async fn parallel(
    plan: &TaskPlan,
    limits: &Limits,
    commands: &dyn CommandRunner,
    attempt: Attempt,
    cancel: &CancellationToken,
) -> Vec<InputResult> {
    let deadline = attempt.deadline;
    let fail_fast = cancel.child_token();
    let first_failure: OnceLock<String> = OnceLock::new();
    // Collected first: a stream over the borrowing closure would not be provably Send.
    let runs: Vec<_> = plan
        .inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let fail_fast = &fail_fast;
            let first_failure = &first_failure;
            async move {
                if Instant::now() >= deadline && !fail_fast.is_cancelled() {
                    let reason = format!(
                        "the task timeout of {} elapsed before this input's turn",
                        seconds(plan.timeout)
                    );
                    return (index, InputResult::skipped(input, &reason));
                }
                let result = run_input(plan, input, limits, commands, attempt, fail_fast).await;
                if result.verdict == Verdict::Failed && plan.fail_fast {
                    let _ = first_failure.set(result.name.clone());
                    fail_fast.cancel();
                }
                (index, result)
            }
        })
        .collect();
    let mut finished: Vec<(usize, InputResult)> = futures::stream::iter(runs)
        .buffer_unordered(PARALLEL_INPUTS)
        .collect()
        .await;
    finished.sort_by_key(|(index, _)| *index);
    let mut results: Vec<InputResult> = finished.into_iter().map(|(_, r)| r).collect();
    if let Some(failed) = first_failure.get()
        && !cancel.is_cancelled()
    {
        for result in results
            .iter_mut()
            .filter(|r| r.verdict == Verdict::Cancelled)
        {
            result.message = Some(format!(
                "cancelled because input {failed:?} failed and failFast is set"
            ));
        }
    }
    results
}
