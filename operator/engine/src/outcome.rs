//! The engine's output types, and the knobs that bound its resources.

use std::fmt;
use std::time::{Duration, SystemTime};

/// Resource bounds and timings that are operator configuration, not task spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of output reported in [`TaskOutcome::output`] (a marker says how much was cut).
    pub output_cap: usize,
    /// Bytes of output reported per input in [`InputOutcome::output`].
    pub input_output_cap: usize,
    /// Bytes of output kept while running, for `expect` and the output checks. Larger than
    /// `output_cap` so a 20 KiB JSON body can still be checked; the rest is only counted.
    pub match_window: usize,
    /// Time between SIGTERM and SIGKILL of a command's process group; also how long the engine
    /// waits for background processes to release the output pipes after the shell exits.
    pub kill_grace: Duration,
    /// Delay before the first retry; doubles for each further retry.
    pub retry_base: Duration,
    /// Longest nominal delay between two attempts (jitter may lengthen a wait up to twice it).
    pub retry_cap: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            output_cap: 4096,
            input_output_cap: 1024,
            match_window: 1024 * 1024,
            kill_grace: Duration::from_secs(2),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// The backoff between attempts: `retry_base` doubling to `retry_cap`, with jitter (see
    /// [`crate::Backoff`]).
    pub fn backoff(&self) -> crate::Backoff {
        crate::Backoff {
            first: self.retry_base,
            max: self.retry_cap,
        }
    }
}

/// How a task, or one of its inputs, ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Ran and met every expectation.
    Succeeded,
    /// Ran (or timed out) and did not meet an expectation.
    Failed,
    /// Stopped by cancellation: the caller's token, or failFast in parallel mode.
    Cancelled,
    /// Never started (an input after a failFast stop, a cancellation or the task timeout).
    Skipped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Succeeded => "Succeeded",
            Verdict::Failed => "Failed",
            Verdict::Cancelled => "Cancelled",
            Verdict::Skipped => "Skipped",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something the caller may want to report while a task runs.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    /// A retry starts now. `attempt` is the 1-based number of this retry (the first retry is 1),
    /// so it equals [`TaskOutcome::retries`] from now on, and `at` is
    /// [`TaskOutcome::last_retry_at`]. `reason` is the failed attempt's message (redacted).
    Retrying {
        attempt: u32,
        at: SystemTime,
        reason: String,
    },
}

/// The result of executing a plan (the `execute` function).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskOutcome {
    /// Succeeded, Failed or Cancelled (never Skipped).
    pub verdict: Verdict,
    /// Output of the last attempt, secrets redacted, cut to `output_cap` with a marker such as
    /// `\n…[truncated 10485760 bytes]`. Several inputs are shown one after another under
    /// `=== <name> (<verdict>) ===` headers.
    pub output: String,
    /// Exit code (`"1"`), HTTP status (`"503"`), or `Timeout`, `Cancelled`, `ExpectationFailed`,
    /// `RequestFailed`, `SpawnFailed`. `None` on success.
    pub error_code: Option<String>,
    /// What failed and what was expected, naming the input. `None` on success.
    pub error_message: Option<String>,
    /// HTTP status of the (first failed, else last) HTTP input that got a response.
    pub http_status: Option<u16>,
    /// For a single get/post input: how long its last request took, from sending it to the end
    /// of the response body (per input in [`TaskOutcome::inputs`]).
    pub response_time: Option<Duration>,
    /// When the first attempt started.
    pub started_at: SystemTime,
    /// From the first attempt's start to the end, backoff included.
    pub duration: Duration,
    /// Retries made (0 when the first attempt decided).
    pub retries: u32,
    /// When the last retry started.
    pub last_retry_at: Option<SystemTime>,
    /// One per input, in spec order, when `input` was a list; empty for a single input.
    pub inputs: Vec<InputOutcome>,
}

/// One input's part of the last attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct InputOutcome {
    /// The input's `name`, or `input-<index>`.
    pub name: String,
    pub verdict: Verdict,
    /// As [`TaskOutcome::error_code`]; `Skipped` inputs carry none.
    pub error_code: Option<String>,
    /// Why it failed, was cancelled or skipped.
    pub error_message: Option<String>,
    pub duration: Duration,
    /// Of a get/post input that got a whole response: from sending the request to the end of
    /// the body.
    pub response_time: Option<Duration>,
    /// Redacted, cut to `input_output_cap`.
    pub output: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let limits = Limits {
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(30),
            ..Limits::default()
        };
        let delays: Vec<u64> = (1..=7)
            .map(|n| limits.backoff().nominal(n).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(limits.backoff().nominal(100), Duration::from_secs(30));
        let wait = limits.backoff().delay(2);
        assert!(wait >= Duration::from_secs(2) && wait < Duration::from_secs(4));
    }

    #[test]
    fn defaults_match_the_documented_limits() {
        let l = Limits::default();
        assert_eq!((l.output_cap, l.input_output_cap), (4096, 1024));
        assert_eq!(l.kill_grace, Duration::from_secs(2));
        assert_eq!(l.retry_base, Duration::from_secs(1));
        assert_eq!(l.retry_cap, Duration::from_secs(30));
    }
}
