//! [`execute`]: attempts with retries and exponential backoff, and the final [`TaskOutcome`].

use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cmd::LocalCommands;
use crate::commands::CommandRunner;
use crate::fanout::run_attempt;
use crate::judge::{CANCELLED, TIMEOUT};
use crate::outcome::{EngineEvent, InputOutcome, Limits, TaskOutcome, Verdict};
use crate::plan::TaskPlan;
use crate::redact::{Redactor, report};
use crate::runner::InputResult;

/// Runs `plan` to its outcome: one attempt, plus up to `retry_count` retries of failed attempts
/// (never of cancelled ones), waiting `limits.backoff().delay(n)` (jittered) before retry `n`. `observer` hears of
/// each retry as it starts. Cancelling `cancel` stops the running attempt (process groups are
/// killed) or the backoff wait promptly, with [`Verdict::Cancelled`].
pub async fn execute(
    plan: &TaskPlan,
    limits: &Limits,
    cancel: CancellationToken,
    observer: &(dyn Fn(EngineEvent) + Send + Sync),
) -> TaskOutcome {
    execute_with(plan, limits, &LocalCommands, cancel, observer).await
}

/// [`execute`], with `cmd` inputs run by `commands` instead of as local processes.
pub async fn execute_with(
    plan: &TaskPlan,
    limits: &Limits,
    commands: &dyn CommandRunner,
    cancel: CancellationToken,
    observer: &(dyn Fn(EngineEvent) + Send + Sync),
) -> TaskOutcome {
    let started_at = SystemTime::now();
    let start = Instant::now();
    let mut retries = 0;
    let mut last_retry_at = None;
    loop {
        let results = run_attempt(plan, limits, commands, retries, &cancel).await;
        let summary = summarize(plan, &results, &cancel);
        let build = |summary: Summary, retries| {
            outcome(
                plan,
                limits,
                &results,
                summary,
                started_at,
                start,
                retries,
                last_retry_at,
            )
        };
        if summary.verdict != Verdict::Failed || retries >= plan.retry_count {
            return build(summary, retries);
        }
        let next = retries + 1;
        // A retry the predecessor of a taken-over run started: its backoff was waited out, and
        // it was announced, then.
        let taken_over = commands.started_already(next).await;
        let delay = match taken_over {
            true => Duration::ZERO,
            false => limits.backoff().delay(next),
        };
        let reason = plan.redact(summary.message.as_deref().unwrap_or("the attempt failed"));
        tracing::info!(retry = next, of = plan.retry_count, delay_ms = delay.as_millis() as u64, %reason, "attempt failed, retrying");
        tokio::select! {
            () = cancel.cancelled() => {
                let summary = Summary {
                    verdict: Verdict::Cancelled,
                    error_code: Some(CANCELLED.to_owned()),
                    message: Some(format!(
                        "cancelled while waiting for retry {next} of {}; the last attempt failed: {reason}",
                        plan.retry_count
                    )),
                    http_status: summary.http_status,
                };
                return build(summary, retries);
            }
            () = tokio::time::sleep(delay) => {}
        }
        retries = next;
        let at = SystemTime::now();
        last_retry_at = Some(at);
        if !taken_over {
            observer(EngineEvent::Retrying {
                attempt: retries,
                at,
                reason,
            });
        }
    }
}

/// The task-level reading of one attempt (messages still unredacted).
struct Summary {
    verdict: Verdict,
    error_code: Option<String>,
    message: Option<String>,
    http_status: Option<u16>,
}

fn summarize(plan: &TaskPlan, results: &[InputResult], cancel: &CancellationToken) -> Summary {
    if !plan.multi {
        let only = &results[0];
        return Summary {
            verdict: only.verdict,
            error_code: only.error_code.clone(),
            message: only.message.clone(),
            http_status: only.http_status,
        };
    }
    let first_failed = results.iter().find(|r| r.verdict == Verdict::Failed);
    let http_status = first_failed
        .and_then(|r| r.http_status)
        .or_else(|| results.iter().rev().find_map(|r| r.http_status));
    let unsuccessful: Vec<&InputResult> = results
        .iter()
        .filter(|r| r.verdict != Verdict::Succeeded)
        .collect();
    if unsuccessful.is_empty() {
        return Summary {
            verdict: Verdict::Succeeded,
            error_code: None,
            message: None,
            http_status,
        };
    }
    // Cancelled by the caller: reported as such even if some input had failed first.
    let verdict = if cancel.is_cancelled() {
        Verdict::Cancelled
    } else {
        Verdict::Failed
    };
    let error_code = match (verdict, first_failed) {
        (Verdict::Cancelled, _) => Some(CANCELLED.to_owned()),
        (_, Some(failed)) => failed.error_code.clone(),
        // Only skipped inputs: the attempt ran out of time between two inputs.
        (_, None) => Some(TIMEOUT.to_owned()),
    };
    // Failures first (they explain the rest), a few at most: the message lands in status.
    const SHOWN: usize = 3;
    let mut ordered = unsuccessful.clone();
    ordered.sort_by_key(|r| match r.verdict {
        Verdict::Failed => 0,
        Verdict::Cancelled => 1,
        _ => 2,
    });
    let mut parts: Vec<String> = ordered
        .iter()
        .take(SHOWN)
        .map(|r| {
            format!(
                "{:?}: {}",
                r.name,
                r.message.as_deref().unwrap_or(r.verdict.as_str())
            )
        })
        .collect();
    if ordered.len() > SHOWN {
        parts.push(format!("and {} more", ordered.len() - SHOWN));
    }
    Summary {
        verdict,
        error_code,
        message: Some(format!(
            "{} of {} inputs did not succeed: {}",
            unsuccessful.len(),
            results.len(),
            parts.join("; ")
        )),
        http_status,
    }
}

#[allow(clippy::too_many_arguments)] // a private assembly step; a struct would only rename them
fn outcome(
    plan: &TaskPlan,
    limits: &Limits,
    results: &[InputResult],
    summary: Summary,
    started_at: SystemTime,
    start: Instant,
    retries: u32,
    last_retry_at: Option<SystemTime>,
) -> TaskOutcome {
    let redactor = &plan.redactor;
    let redact = |m: Option<String>| m.map(|m| redactor.apply_to_message(&m));
    let (output, inputs) = if plan.multi {
        let inputs: Vec<InputOutcome> = results
            .iter()
            .map(|r| InputOutcome {
                name: r.name.clone(),
                verdict: r.verdict,
                error_code: r.error_code.clone(),
                error_message: redact(r.message.clone()),
                duration: r.duration,
                response_time: r.response_time,
                output: report(
                    &r.output.text,
                    r.output.omitted,
                    limits.input_output_cap,
                    redactor,
                ),
            })
            .collect();
        (combined_output(&inputs, limits.output_cap), inputs)
    } else {
        let only = &results[0].output;
        let output = report(&only.text, only.omitted, limits.output_cap, redactor);
        (output, Vec::new())
    };
    TaskOutcome {
        verdict: summary.verdict,
        output,
        error_code: summary.error_code,
        error_message: redact(summary.message),
        http_status: summary.http_status,
        response_time: (!plan.multi)
            .then(|| results.first().and_then(|r| r.response_time))
            .flatten(),
        started_at,
        duration: start.elapsed(),
        retries,
        last_retry_at,
        inputs,
    }
}

/// Every input that ran, under a header, within the task's cap.
fn combined_output(inputs: &[InputOutcome], cap: usize) -> String {
    let mut text = String::new();
    for input in inputs.iter().filter(|i| i.verdict != Verdict::Skipped) {
        text.push_str(&format!("=== {} ({}) ===\n", input.name, input.verdict));
        text.push_str(&input.output);
        if !input.output.ends_with('\n') {
            text.push('\n');
        }
    }
    // The parts are redacted already.
    report(&text, 0, cap, &Redactor::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{TaskKind, TaskRequest};

    fn assert_send<T: Send>(_: &T) {}

    /// Every attempt exits 1; `taken_over` says which retries a predecessor started.
    struct FailingRunner {
        taken_over: Vec<u32>,
    }

    impl CommandRunner for FailingRunner {
        fn run<'a>(
            &'a self,
            _: crate::commands::Command<'a>,
            _: &'a CancellationToken,
        ) -> crate::commands::CommandFuture<'a> {
            use std::os::unix::process::ExitStatusExt;
            Box::pin(async {
                crate::commands::CommandRun {
                    end: crate::commands::CommandEnd::Exited(std::process::ExitStatus::from_raw(
                        1 << 8,
                    )),
                    output: crate::commands::Captured::default(),
                }
            })
        }

        fn started_already(
            &self,
            attempt: u32,
        ) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + '_>> {
            Box::pin(std::future::ready(self.taken_over.contains(&attempt)))
        }
    }

    /// The virtual time two failing attempts take (the clock is paused: only backoffs count).
    async fn time_for_two_attempts(runner: &FailingRunner) -> Duration {
        let mut request = TaskRequest::new(TaskKind::Cmd, "false");
        request.retry_count = 1;
        let plan = TaskPlan::compile(request).unwrap();
        let limits = Limits {
            retry_base: Duration::from_secs(60),
            ..Limits::default()
        };
        let start = Instant::now();
        let announced = std::sync::atomic::AtomicU32::new(0);
        let observer = |_| {
            announced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let outcome =
            execute_with(&plan, &limits, runner, CancellationToken::new(), &observer).await;
        assert_eq!((outcome.verdict, outcome.retries), (Verdict::Failed, 1));
        let expected = u32::from(runner.taken_over.is_empty());
        assert_eq!(
            announced.into_inner(),
            expected,
            "Retrying announced by whoever started it"
        );
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_a_predecessor_started_is_followed_without_waiting_or_announcing_it_again() {
        let fresh = time_for_two_attempts(&FailingRunner { taken_over: vec![] }).await;
        assert!(fresh >= Duration::from_secs(60), "{fresh:?}");
        let replayed = time_for_two_attempts(&FailingRunner {
            taken_over: vec![1],
        })
        .await;
        assert_eq!(replayed, Duration::ZERO);
    }

    #[test]
    fn the_execution_future_is_send() {
        // The controller spawns executions on a multi-threaded runtime.
        let plan = TaskPlan::compile(TaskRequest::new(TaskKind::Cmd, "true")).unwrap();
        let limits = Limits::default();
        let future = execute(&plan, &limits, CancellationToken::new(), &|_| {});
        assert_send(&future);
    }
}
