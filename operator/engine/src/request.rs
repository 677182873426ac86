//! The engine's input: everything it needs from a McallTask spec, as plain data.
//!
//! The controller and `mcall run` both convert the Kubernetes spec into a [`TaskRequest`]; nothing
//! here is validated yet ([`crate::TaskPlan::compile`] does that), so a bad spec can still be
//! reported field by field instead of failing a conversion.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What one input runs: a shell command or an HTTP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// `/bin/sh -c <input>`.
    Cmd,
    /// HTTP GET of the URL in `input`.
    Get,
    /// HTTP POST to the URL in `input`, with the request body.
    Post,
}

impl TaskKind {
    /// The spelling used in the CRD (`cmd`, `get`, `post`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Cmd => "cmd",
            TaskKind::Get => "get",
            TaskKind::Post => "post",
        }
    }

    /// Whether this kind is an HTTP request.
    pub fn is_http(self) -> bool {
        matches!(self, TaskKind::Get | TaskKind::Post)
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of the `FromStr` impls of this module: the rejected text and what was accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {value:?}, expected one of: {expected}")]
pub struct UnknownVariant {
    /// The text that did not parse.
    pub value: String,
    /// The accepted spellings, comma separated.
    pub expected: &'static str,
}

impl FromStr for TaskKind {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cmd" => Ok(TaskKind::Cmd),
            "get" => Ok(TaskKind::Get),
            "post" => Ok(TaskKind::Post),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                expected: "cmd, get, post",
            }),
        }
    }
}

/// How several inputs run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExecutionMode {
    /// One after another, in the order given.
    #[default]
    Sequential,
    /// All at once.
    Parallel,
}

impl FromStr for ExecutionMode {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sequential" => Ok(ExecutionMode::Sequential),
            "parallel" => Ok(ExecutionMode::Parallel),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                expected: "sequential, parallel",
            }),
        }
    }
}

/// How `httpValidation.expectedResponseBody` is compared with the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BodyMatch {
    /// The body contains the expected text.
    #[default]
    Contains,
    /// The body equals the expected text (trailing line breaks ignored).
    Exact,
    /// The expected text is a regex that matches somewhere in the body.
    Regex,
}

impl FromStr for BodyMatch {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "contains" => Ok(BodyMatch::Contains),
            "exact" => Ok(BodyMatch::Exact),
            "regex" => Ok(BodyMatch::Regex),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                expected: "contains, exact, regex",
            }),
        }
    }
}

/// How `outputValidation.expectedOutput` is compared with the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputMatch {
    /// The output contains the expected text.
    #[default]
    Contains,
    /// The output equals the expected text (trailing line breaks ignored).
    Exact,
    /// The expected text is a regex that matches somewhere in the output.
    Regex,
    /// The output starts with the expected text.
    StartsWith,
    /// The output ends with the expected text (trailing line breaks ignored).
    EndsWith,
}

impl FromStr for OutputMatch {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "contains" => Ok(OutputMatch::Contains),
            "exact" => Ok(OutputMatch::Exact),
            "regex" => Ok(OutputMatch::Regex),
            "startsWith" => Ok(OutputMatch::StartsWith),
            "endsWith" => Ok(OutputMatch::EndsWith),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                expected: "contains, exact, regex, startsWith, endsWith",
            }),
        }
    }
}

/// Everything the engine needs from a McallTask spec, unvalidated.
#[derive(Clone, Debug)]
pub struct TaskRequest {
    /// The task's `type`; also the kind of every input of a multi-input list that names none.
    pub kind: TaskKind,
    /// A command, a URL, or a JSON list of inputs (see [`crate::TaskPlan::compile`]).
    pub input: String,
    /// The `expect` expression (grammar in [`crate::expect`]); per-input `expect` overrides it.
    pub expect: Option<String>,
    /// How long one attempt (all of its inputs) may take.
    pub timeout: Duration,
    /// How many times a failed attempt is retried.
    pub retry_count: u32,
    /// How several inputs run.
    pub execution_mode: ExecutionMode,
    /// Stop (sequential) or cancel the others (parallel) at the first failing input.
    pub fail_fast: bool,
    /// Request options and response checks of get/post inputs.
    pub http: HttpOptions,
    /// Output checks, for commands and HTTP bodies alike.
    pub output: Option<OutputOptions>,
    /// Environment variables added to a command's minimal environment.
    pub environment: BTreeMap<String, String>,
    /// Values (e.g. from Secrets) that must never appear in outputs or messages: replaced by "***".
    pub redact: Vec<String>,
}

impl TaskRequest {
    /// A request with the CRD's defaults: 30 s timeout, no retries, sequential, no checks.
    pub fn new(kind: TaskKind, input: impl Into<String>) -> Self {
        TaskRequest {
            kind,
            input: input.into(),
            expect: None,
            timeout: Duration::from_secs(30),
            retry_count: 0,
            execution_mode: ExecutionMode::Sequential,
            fail_fast: false,
            http: HttpOptions::default(),
            output: None,
            environment: BTreeMap::new(),
            redact: Vec::new(),
        }
    }
}

/// Request options and response checks for get/post (`spec.headers`, `spec.body`,
/// `spec.httpValidation`).
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Request headers.
    pub headers: BTreeMap<String, String>,
    /// Request body, sent by post inputs only.
    pub body: Option<String>,
    /// Status codes counted as success; empty means any 2xx.
    pub expected_status_codes: Vec<u16>,
    /// Expected response body, compared as `body_match` says.
    pub expected_response_body: Option<String>,
    /// How `expected_response_body` is compared.
    pub body_match: BodyMatch,
    /// Headers the response must carry: value compared exactly, or `regex:<pattern>`.
    pub response_headers: BTreeMap<String, String>,
    /// How long one request may take; the task timeout when absent.
    pub response_timeout: Option<Duration>,
    /// Whether redirects are followed.
    pub follow_redirects: bool,
    /// Most redirects followed before the request fails.
    pub max_redirects: u32,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            headers: BTreeMap::new(),
            body: None,
            expected_status_codes: Vec::new(),
            expected_response_body: None,
            body_match: BodyMatch::Contains,
            response_headers: BTreeMap::new(),
            response_timeout: None,
            follow_redirects: true,
            max_redirects: 10,
        }
    }
}

/// Output checks (`spec.outputValidation`), applied to command output and HTTP bodies.
#[derive(Clone, Debug)]
pub struct OutputOptions {
    /// Expected output, compared as `output_match` says.
    pub expected_output: Option<String>,
    /// How `expected_output` is compared.
    pub output_match: OutputMatch,
    /// `empty`, `notEmpty`, `contains:<text>` or `regex:<pattern>` that must hold.
    pub success_criteria: Option<String>,
    /// Same grammar; when it holds the input fails even with exit code 0.
    pub failure_criteria: Option<String>,
    /// Whether text comparisons are case-sensitive (also used for the HTTP body match).
    pub case_sensitive: bool,
    /// A failing command (or rejected HTTP status) whose output contains this counts as success.
    pub expected_failure_output: Option<String>,
    /// RFC 9535 JSONPath into the output parsed as JSON.
    pub json_path: Option<String>,
    /// Expected value at `json_path`: JSON when it parses, else a string.
    pub expected_json_value: Option<String>,
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions {
            expected_output: None,
            output_match: OutputMatch::Contains,
            success_criteria: None,
            failure_criteria: None,
            // The CRD default: comparisons are case-sensitive unless asked otherwise.
            case_sensitive: true,
            expected_failure_output: None,
            json_path: None,
            expected_json_value: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        for kind in [TaskKind::Cmd, TaskKind::Get, TaskKind::Post] {
            assert_eq!(kind.as_str().parse::<TaskKind>(), Ok(kind));
        }
        let err = "put".parse::<TaskKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown value \"put\", expected one of: cmd, get, post"
        );
    }

    #[test]
    fn enums_parse_crd_spellings() {
        assert_eq!("parallel".parse(), Ok(ExecutionMode::Parallel));
        assert_eq!("regex".parse(), Ok(BodyMatch::Regex));
        assert_eq!("startsWith".parse(), Ok(OutputMatch::StartsWith));
        assert_eq!("endsWith".parse(), Ok(OutputMatch::EndsWith));
        assert!("starts_with".parse::<OutputMatch>().is_err());
    }

    #[test]
    fn defaults_follow_the_crd() {
        let http = HttpOptions::default();
        assert!(http.follow_redirects);
        assert_eq!(http.max_redirects, 10);
        assert_eq!(http.body_match, BodyMatch::Contains);
        assert!(OutputOptions::default().case_sensitive);
        let req = TaskRequest::new(TaskKind::Cmd, "true");
        assert_eq!(req.timeout, Duration::from_secs(30));
        assert_eq!(req.execution_mode, ExecutionMode::Sequential);
    }
}
