//! Running one input to a judged result.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::capture::Captured;
use crate::commands::{Command, CommandRunner};
use crate::http::{HttpSettings, run_http};
use crate::judge::{CANCELLED, describe_input, judge_cmd, judge_http};
use crate::outcome::{Limits, Verdict};
use crate::plan::{InputPlan, TaskPlan};
use crate::request::TaskKind;

/// Which attempt runs (0 = the first, n = retry n) and when it must have ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attempt {
    pub number: u32,
    pub deadline: Instant,
}

/// One input's result within an attempt. Text is raw here; redaction happens when reporting.
#[derive(Clone, Debug)]
pub(crate) struct InputResult {
    pub name: String,
    pub verdict: Verdict,
    pub error_code: Option<String>,
    pub message: Option<String>,
    pub http_status: Option<u16>,
    pub output: Captured,
    pub duration: Duration,
    /// Of a get/post that got a whole response.
    pub response_time: Option<Duration>,
}

impl InputResult {
    pub(crate) fn skipped(input: &InputPlan, reason: &str) -> Self {
        InputResult {
            name: input.name.clone(),
            verdict: Verdict::Skipped,
            error_code: None,
            message: Some(format!("skipped: {reason}")),
            http_status: None,
            output: Captured::default(),
            duration: Duration::ZERO,
            response_time: None,
        }
    }
}

/// Bytes to keep while running: enough for the checks (`match_window`) and for the report, plus
/// the longest secret, so the report can drop a secret's cut-off start and still fill its cap.
pub(crate) fn keep_bytes(plan: &TaskPlan, limits: &Limits) -> usize {
    limits
        .match_window
        .max(limits.output_cap)
        .max(limits.input_output_cap)
        .saturating_add(plan.redactor.longest())
}

fn cancelled_before_start(input: &InputPlan) -> InputResult {
    InputResult {
        name: input.name.clone(),
        verdict: Verdict::Cancelled,
        error_code: Some(CANCELLED.to_owned()),
        message: Some(format!(
            "{} was cancelled before it started",
            describe_input(input)
        )),
        http_status: None,
        output: Captured::default(),
        duration: Duration::ZERO,
        response_time: None,
    }
}

pub(crate) async fn run_input(
    plan: &TaskPlan,
    input: &InputPlan,
    limits: &Limits,
    commands: &dyn CommandRunner,
    attempt: Attempt,
    cancel: &CancellationToken,
) -> InputResult {
    let deadline = attempt.deadline;
    let started = Instant::now();
    let keep = keep_bytes(plan, limits);
    if cancel.is_cancelled() {
        // Nothing started, so nothing to kill: say so without spawning.
        return cancelled_before_start(input);
    }
    let (judged, output, response_time) = match input.kind {
        TaskKind::Cmd => {
            let command = Command {
                input_name: &input.name,
                attempt: attempt.number,
                script: &input.input,
                environment: &plan.environment,
                keep,
                deadline,
                kill_grace: limits.kill_grace,
            };
            let run = commands.run(command, cancel).await;
            (
                judge_cmd(plan, input, &run.end, &run.output),
                run.output,
                None,
            )
        }
        TaskKind::Get | TaskKind::Post => {
            let settings = HttpSettings {
                plan: &plan.http,
                task_timeout: plan.timeout,
                keep,
                deadline,
            };
            let run = run_http(input, &settings, cancel).await;
            (
                judge_http(plan, input, &run.end, &run.output),
                run.output,
                run.response_time,
            )
        }
    };
    let duration = started.elapsed();
    // The checks have read the window; the report needs its cap plus room to drop a cut secret.
    let mut output = output;
    output.keep_first(
        limits
            .output_cap
            .max(limits.input_output_cap)
            .saturating_add(plan.redactor.longest()),
    );
    tracing::debug!(
        input = %input.name,
        kind = %input.kind,
        verdict = %judged.verdict,
        error_code = judged.error_code.as_deref().unwrap_or(""),
        duration_ms = duration.as_millis() as u64,
        "input finished"
    );
    InputResult {
        name: input.name.clone(),
        verdict: judged.verdict,
        error_code: judged.error_code,
        message: judged.message,
        http_status: judged.http_status,
        output,
        duration,
        response_time,
    }
}
