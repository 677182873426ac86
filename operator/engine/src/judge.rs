//! Turning what happened (exit status or response, plus output) into a verdict, an error code
//! and a message. Pure functions: every rule is tested without running anything.
//!
//! Order of the rules, the first failure decides:
//! 1. interrupted runs: spawn failure, timeout, cancellation, request failure;
//! 2. the status rule (exit code 0, or the HTTP status): a failure here succeeds anyway when
//!    `expectedFailureOutput` is set and found in the output, and no further rule applies;
//! 3. (HTTP) `responseHeaders`, then `expectedResponseBody`;
//! 4. `outputValidation`: failureCriteria, successCriteria, expectedOutput, jsonPath;
//! 5. `expect`.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crate::capture::Captured;
use crate::checks::OutputCheck;
use crate::cmd::CmdEnd;
use crate::expect::Subject;
use crate::http::HttpEnd;
use crate::outcome::Verdict;
use crate::plan::{InputPlan, TaskPlan};
use crate::text_match::quote;

pub(crate) const TIMEOUT: &str = "Timeout";
pub(crate) const CANCELLED: &str = "Cancelled";
pub(crate) const EXPECTATION_FAILED: &str = "ExpectationFailed";
pub(crate) const REQUEST_FAILED: &str = "RequestFailed";
pub(crate) const SPAWN_FAILED: &str = "SpawnFailed";

/// The judgement of one input's run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Judged {
    pub verdict: Verdict,
    pub error_code: Option<String>,
    pub message: Option<String>,
    pub http_status: Option<u16>,
}

impl Judged {
    fn succeeded(http_status: Option<u16>) -> Self {
        Judged {
            verdict: Verdict::Succeeded,
            error_code: None,
            message: None,
            http_status,
        }
    }

    fn failed(code: impl Into<String>, message: String, http_status: Option<u16>) -> Self {
        Judged {
            verdict: Verdict::Failed,
            error_code: Some(code.into()),
            message: Some(message),
            http_status,
        }
    }

    fn cancelled(what: &str) -> Self {
        Judged {
            verdict: Verdict::Cancelled,
            error_code: Some(CANCELLED.to_owned()),
            message: Some(format!("{what} was cancelled")),
            http_status: None,
        }
    }
}

/// How a finished run ended, for [`judge_ended`].
#[derive(Clone, Debug)]
pub enum Ended {
    /// A command exited with this code.
    Exited(i32),
    /// An HTTP request got a complete response with this status and these headers.
    Response {
        status: u16,
        headers: reqwest::header::HeaderMap,
    },
}

/// The verdict and message the engine gives `plan`'s input `index` after it ended as `ended`
/// with `output`: the very rules a real run goes through, without running anything, so fuzz
/// targets and tests can drive every check. `None` when the plan has no input `index`.
pub fn judge_ended(
    plan: &TaskPlan,
    index: usize,
    ended: Ended,
    output: &Captured,
) -> Option<(Verdict, Option<String>)> {
    let input = plan.inputs.get(index)?;
    let judged = match ended {
        // A wait status keeps the exit code in its second byte.
        Ended::Exited(code) => judge_cmd(
            plan,
            input,
            &CmdEnd::Exited(std::process::ExitStatus::from_raw((code & 0xff) << 8)),
            output,
        ),
        Ended::Response { status, headers } => {
            judge_http(plan, input, &HttpEnd::Response { status, headers }, output)
        }
    };
    Some((judged.verdict, judged.message))
}

/// How messages name an input: `command "echo hi"` or `GET http://host/path`.
pub(crate) fn describe_input(input: &InputPlan) -> String {
    match &input.url {
        Some(url) => {
            // A password in the URL is a credential even when nobody listed it for redaction.
            let mut shown = url.clone();
            if shown.password().is_some() {
                let _ = shown.set_password(Some("***"));
            }
            format!(
                "{} {}",
                input.kind.as_str().to_uppercase(),
                quote(shown.as_str())
            )
        }
        None => format!("command {}", quote(input.input.trim())),
    }
}

pub(crate) fn judge_cmd(
    plan: &TaskPlan,
    input: &InputPlan,
    end: &CmdEnd,
    output: &Captured,
) -> Judged {
    let what = describe_input(input);
    let status = match end {
        CmdEnd::SpawnFailed(reason) => {
            return Judged::failed(
                SPAWN_FAILED,
                format!("{what} could not be started with /bin/sh: {reason}"),
                None,
            );
        }
        CmdEnd::TimedOut => {
            return Judged::failed(
                TIMEOUT,
                format!(
                    "{what} did not finish within the timeout of {}; its process group was killed",
                    seconds(plan.timeout)
                ),
                None,
            );
        }
        CmdEnd::Cancelled => return Judged::cancelled(&what),
        CmdEnd::Failed {
            error_code,
            message,
        } => return Judged::failed(error_code.clone(), format!("{what}: {message}"), None),
        CmdEnd::Exited(status) => status,
    };
    let code = status.code();
    let subject = Subject {
        text: &output.text,
        lines: output.lines,
        status: code.map(i64::from),
        is_http: false,
    };
    let waived = input.expect.as_ref().is_some_and(|e| e.tests_status());
    if code != Some(0) && !waived {
        if plan.output_check.is_expected_failure(&output.text) {
            return Judged::succeeded(None);
        }
        let (error_code, how) = match (code, status.signal()) {
            (Some(code), _) => (code.to_string(), format!("exited with code {code}")),
            (None, Some(signal)) => (
                (128 + signal).to_string(),
                format!("was killed by signal {signal}"),
            ),
            (None, None) => ("-1".to_owned(), "ended without an exit code".to_owned()),
        };
        let message = with_hint(format!("{what} {how}"), &plan.output_check);
        return Judged::failed(error_code, message, None);
    }
    judge_output(plan, input, &what, &subject, None)
}

pub(crate) fn judge_http(
    plan: &TaskPlan,
    input: &InputPlan,
    end: &HttpEnd,
    output: &Captured,
) -> Judged {
    let what = describe_input(input);
    let (status, headers) = match end {
        HttpEnd::Failed { reason, status } => {
            return Judged::failed(REQUEST_FAILED, format!("{what} failed: {reason}"), *status);
        }
        HttpEnd::TimedOut {
            limit,
            by_response_timeout,
        } => {
            let setting = if *by_response_timeout {
                "httpValidation.responseTimeout"
            } else {
                "the task timeout"
            };
            return Judged::failed(
                TIMEOUT,
                format!(
                    "{what} got no complete response within {} ({setting})",
                    seconds(*limit)
                ),
                None,
            );
        }
        HttpEnd::Cancelled => return Judged::cancelled(&what),
        HttpEnd::Response { status, headers } => (*status, headers),
    };
    let subject = Subject {
        text: &output.text,
        lines: output.lines,
        status: Some(i64::from(status)),
        is_http: true,
    };
    let check = &plan.http.check;
    let waived = input.expect.as_ref().is_some_and(|e| e.tests_status());
    if let Err(reason) = check.check_status(status, waived) {
        if plan.output_check.is_expected_failure(&output.text) {
            return Judged::succeeded(Some(status));
        }
        let message = with_hint(format!("{what} returned {reason}"), &plan.output_check);
        return Judged::failed(status.to_string(), message, Some(status));
    }
    if let Err(reason) = check
        .check_headers(headers)
        .and_then(|()| check.check_body(&output.text))
    {
        return Judged::failed(
            EXPECTATION_FAILED,
            format!("{what}: {reason}"),
            Some(status),
        );
    }
    judge_output(plan, input, &what, &subject, Some(status))
}

/// The rules shared by commands and HTTP bodies: outputValidation, then expect.
fn judge_output(
    plan: &TaskPlan,
    input: &InputPlan,
    what: &str,
    subject: &Subject<'_>,
    http_status: Option<u16>,
) -> Judged {
    if let Err(reason) = plan.output_check.check(subject.text) {
        return Judged::failed(EXPECTATION_FAILED, format!("{what}: {reason}"), http_status);
    }
    if let Some(expect) = &input.expect
        && !expect.matches(subject)
    {
        let noun = if subject.is_http {
            "response"
        } else {
            "output"
        };
        return Judged::failed(
            EXPECTATION_FAILED,
            format!(
                "{what}: {noun} does not match expect {}",
                quote(expect.source())
            ),
            http_status,
        );
    }
    Judged::succeeded(http_status)
}

fn with_hint(message: String, check: &OutputCheck) -> String {
    match check.expected_failure_hint() {
        Some(hint) => format!("{message} ({hint})"),
        None => message,
    }
}

/// `30s`, `1.5s`: durations as a user wrote them in the spec.
pub(crate) fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
