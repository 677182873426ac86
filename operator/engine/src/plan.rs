//! [`TaskPlan::compile`]: a [`TaskRequest`] checked field by field and turned into something that
//! can run without further failure modes of its own (regexes compiled, URLs parsed, inputs split).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::checks::{HttpCheck, OutputCheck};
use crate::expect::{Expectation, parse_expectation};
use crate::invalid::InvalidSpec;
use crate::multi_input::{RawInput, input_kind, parse_inputs};
use crate::redact::Redactor;
use crate::request::{ExecutionMode, TaskKind, TaskRequest};
use crate::text_match::quote;

/// One input, ready to run.
#[derive(Clone, Debug)]
pub struct InputPlan {
    /// The input's `name`, or `input-<index>` (`input-0` for a single input).
    pub name: String,
    pub kind: TaskKind,
    /// The command or URL as written.
    pub input: String,
    /// The input's own `expect`, else the task's.
    pub(crate) expect: Option<Expectation>,
    /// The parsed URL of a get/post input.
    pub(crate) url: Option<Url>,
}

/// A request that passed validation: regexes compiled, inputs parsed, URLs checked.
#[derive(Clone, Debug)]
pub struct TaskPlan {
    pub(crate) inputs: Vec<InputPlan>,
    /// Whether `input` was a list (then the outcome reports each input).
    pub(crate) multi: bool,
    pub(crate) execution_mode: ExecutionMode,
    pub(crate) fail_fast: bool,
    pub(crate) timeout: Duration,
    pub(crate) retry_count: u32,
    pub(crate) http: HttpPlan,
    pub(crate) output_check: OutputCheck,
    pub(crate) environment: BTreeMap<String, String>,
    pub(crate) redactor: Redactor,
}

/// The HTTP side of a plan: request parts and response checks.
#[derive(Clone, Debug)]
pub(crate) struct HttpPlan {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<String>,
    pub(crate) check: HttpCheck,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) follow_redirects: bool,
    pub(crate) max_redirects: u32,
}

impl TaskPlan {
    /// Validates `request`. The error names the first field at fault; its message is redacted.
    pub fn compile(request: TaskRequest) -> Result<TaskPlan, InvalidSpec> {
        let redactor = Redactor::new(&request.redact);
        compile(request, &redactor).map_err(|mut e| {
            e.message = redactor.apply_to_message(&e.message);
            e
        })
    }

    /// The inputs in spec order (one for a plain `input`).
    pub fn inputs(&self) -> &[InputPlan] {
        &self.inputs
    }

    /// Whether any input runs a shell command (the controller gates `cmd` by namespace).
    pub fn uses_commands(&self) -> bool {
        self.inputs.iter().any(|i| i.kind == TaskKind::Cmd)
    }

    /// Whether `input` was a multi-input list.
    pub fn is_multi_input(&self) -> bool {
        self.multi
    }

    /// How long one attempt may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How many times a failed attempt is retried.
    pub fn retry_count(&self) -> u32 {
        self.retry_count
    }

    /// Masks this task's secret values in `text`, for messages the caller writes itself.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.apply_to_message(text)
    }
}

fn compile(request: TaskRequest, redactor: &Redactor) -> Result<TaskPlan, InvalidSpec> {
    if request.timeout.is_zero() {
        return Err(InvalidSpec::new(
            "spec.timeout",
            "must be at least 1 second",
        ));
    }
    if request.http.response_timeout.is_some_and(|t| t.is_zero()) {
        return Err(InvalidSpec::new(
            "spec.httpValidation.responseTimeout",
            "must be at least 1 second",
        ));
    }
    let task_expect = parse_expect(request.expect.as_deref(), "spec.expect")?;
    let (inputs, multi) = match parse_inputs(&request.input)? {
        None => {
            let input = compile_input(
                "input-0".to_owned(),
                request.kind,
                request.input.clone(),
                task_expect,
                "spec.input",
            )?;
            (vec![input], false)
        }
        Some(raw) => (compile_list(raw, request.kind, &task_expect)?, true),
    };
    let case_sensitive = request.output.as_ref().is_none_or(|o| o.case_sensitive);
    let http = HttpPlan {
        headers: request_headers(&request.http.headers)?,
        body: request.http.body.clone(),
        check: HttpCheck::compile(&request.http, case_sensitive)?,
        response_timeout: request.http.response_timeout,
        follow_redirects: request.http.follow_redirects,
        max_redirects: request.http.max_redirects,
    };
    let output_check = OutputCheck::compile(request.output.as_ref())?;
    check_environment(&request.environment)?;
    Ok(TaskPlan {
        inputs,
        multi,
        execution_mode: request.execution_mode,
        fail_fast: request.fail_fast,
        timeout: request.timeout,
        retry_count: request.retry_count,
        http,
        output_check,
        environment: request.environment,
        redactor: redactor.clone(),
    })
}

fn compile_list(
    raw: Vec<RawInput>,
    default_kind: TaskKind,
    task_expect: &Option<Expectation>,
) -> Result<Vec<InputPlan>, InvalidSpec> {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut inputs = Vec::with_capacity(raw.len());
    for (i, item) in raw.into_iter().enumerate() {
        let kind = input_kind(&item, i, default_kind)?;
        let name = match item.name {
            None => format!("input-{i}"),
            Some(name) if name.trim().is_empty() => {
                return Err(InvalidSpec::new(
                    format!("spec.input[{i}].name"),
                    "must not be empty (leave it out to get \"input-<index>\")",
                ));
            }
            Some(name) => name,
        };
        if let Some(first) = names.insert(name.clone(), i) {
            return Err(InvalidSpec::new(
                format!("spec.input[{i}].name"),
                format!("duplicate name {name:?} (also spec.input[{first}])"),
            ));
        }
        let expect = match item.expect {
            Some(e) => parse_expect(Some(&e), &format!("spec.input[{i}].expect"))?,
            None => task_expect.clone(),
        };
        inputs.push(compile_input(
            name,
            kind,
            item.input,
            expect,
            &format!("spec.input[{i}].input"),
        )?);
    }
    Ok(inputs)
}

fn compile_input(
    name: String,
    kind: TaskKind,
    input: String,
    expect: Option<Expectation>,
    field: &str,
) -> Result<InputPlan, InvalidSpec> {
    if input.trim().is_empty() {
        return Err(InvalidSpec::new(field, "must not be empty"));
    }
    let url = if kind.is_http() {
        Some(parse_url(&input).map_err(|m| InvalidSpec::new(field, m))?)
    } else {
        None
    };
    Ok(InputPlan {
        name,
        kind,
        input,
        expect,
        url,
    })
}

/// An empty `expect` means no expectation (the CRD may hand over "" for an unset field).
fn parse_expect(expect: Option<&str>, field: &str) -> Result<Option<Expectation>, InvalidSpec> {
    match expect {
        Some(e) if !e.trim().is_empty() => parse_expectation(e)
            .map(Some)
            .map_err(|m| InvalidSpec::new(field, m)),
        _ => Ok(None),
    }
}

fn parse_url(input: &str) -> Result<Url, String> {
    let trimmed = input.trim();
    let shown = quote(trimmed);
    let url = Url::parse(trimmed).map_err(|e| {
        format!("{shown} is not an http(s) URL ({e}); get and post need e.g. https://host/path")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{shown} is not an http(s) URL (scheme {:?}); get and post need e.g. https://host/path",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown} has no host"));
    }
    Ok(url)
}

fn request_headers(headers: &BTreeMap<String, String>) -> Result<HeaderMap, InvalidSpec> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let field = format!("spec.headers.{name}");
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| InvalidSpec::new(&field, "not a valid HTTP header name"))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            InvalidSpec::new(&field, "the value has characters HTTP headers cannot carry")
        })?;
        // Header values often come from Secrets (tokens): keep them out of debug output.
        value.set_sensitive(true);
        map.insert(header, value);
    }
    Ok(map)
}

fn check_environment(environment: &BTreeMap<String, String>) -> Result<(), InvalidSpec> {
    for (name, value) in environment {
        let field = format!("spec.environment.{name}");
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(InvalidSpec::new(
                field,
                "not a valid environment variable name",
            ));
        }
        if value.contains('\0') {
            return Err(InvalidSpec::new(field, "the value contains a NUL byte"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{OutputMatch, OutputOptions};

    fn compile_err(f: impl FnOnce(&mut TaskRequest)) -> InvalidSpec {
        let mut req = TaskRequest::new(TaskKind::Cmd, "echo hi");
        f(&mut req);
        TaskPlan::compile(req).unwrap_err()
    }

    #[test]
    fn single_input_plan() {
        let plan =
            TaskPlan::compile(TaskRequest::new(TaskKind::Get, "http://127.0.0.1:1/x")).unwrap();
        assert_eq!(plan.inputs().len(), 1);
        assert_eq!(plan.inputs()[0].name, "input-0");
        assert!(!plan.is_multi_input());
        assert!(!plan.uses_commands());
        assert!(plan.inputs()[0].url.is_some());
    }

    #[test]
    fn multi_input_defaults_and_overrides() {
        let mut req = TaskRequest::new(
            TaskKind::Get,
            r#"[{"input":"http://a/"},{"type":"cmd","input":"true","name":"local","expect":"x"}]"#,
        );
        req.expect = Some("ok".into());
        let plan = TaskPlan::compile(req).unwrap();
        let inputs = plan.inputs();
        assert_eq!(inputs[0].name, "input-0");
        assert_eq!(inputs[0].kind, TaskKind::Get);
        assert_eq!(inputs[1].name, "local");
        assert_eq!(inputs[1].kind, TaskKind::Cmd);
        assert!(plan.uses_commands());
        assert!(plan.is_multi_input());
        let own = inputs[1].expect.as_ref().unwrap();
        let subject = |text| crate::expect::Subject {
            text,
            lines: 1,
            status: Some(0),
            is_http: false,
        };
        assert!(own.matches(&subject("x")) && !own.matches(&subject("ok")));
        assert!(inputs[0].expect.as_ref().unwrap().matches(&subject("ok")));
    }

    #[test]
    fn invalid_specs_name_the_field() {
        type Case = (
            Box<dyn FnOnce(&mut TaskRequest)>,
            &'static str,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                Box::new(|r| r.expect = Some("regex:(".into())),
                "spec.expect",
                "invalid regex",
            ),
            (
                Box::new(|r| r.expect = Some("$count >".into())),
                "spec.expect",
                "malformed numeric test",
            ),
            (
                Box::new(|r| r.input = "  ".into()),
                "spec.input",
                "must not be empty",
            ),
            (
                Box::new(|r| {
                    r.kind = TaskKind::Get;
                    r.input = "example.com/health".into();
                }),
                "spec.input",
                "not an http(s) URL",
            ),
            (
                Box::new(|r| {
                    r.kind = TaskKind::Post;
                    r.input = "ftp://example.com/".into();
                }),
                "spec.input",
                "scheme \"ftp\"",
            ),
            (
                Box::new(|r| {
                    r.input = r#"[{"input":"true"},{"type":"get","input":"nope"}]"#.into()
                }),
                "spec.input[1].input",
                "not an http(s) URL",
            ),
            (
                Box::new(|r| r.input = r#"[{"input":"true","expect":"a||b"}]"#.into()),
                "spec.input[0].expect",
                "empty alternative",
            ),
            (
                Box::new(|r| {
                    r.input = r#"[{"input":"true","name":"a"},{"input":"false","name":"a"}]"#.into()
                }),
                "spec.input[1].name",
                "duplicate name",
            ),
            (
                Box::new(|r| r.input = "[{\"input\": ".into()),
                "spec.input",
                "malformed multi-input JSON",
            ),
            (
                Box::new(|r| {
                    r.output = Some(OutputOptions {
                        expected_output: Some("[".into()),
                        output_match: OutputMatch::Regex,
                        ..OutputOptions::default()
                    })
                }),
                "spec.outputValidation.expectedOutput",
                "invalid regex",
            ),
            (
                Box::new(|r| {
                    r.http.headers.insert("X-Token".into(), "a\nb".into());
                }),
                "spec.headers.X-Token",
                "cannot carry",
            ),
            (
                Box::new(|r| {
                    r.environment.insert("A=B".into(), "x".into());
                }),
                "spec.environment.A=B",
                "not a valid",
            ),
            (
                Box::new(|r| r.timeout = Duration::ZERO),
                "spec.timeout",
                "at least",
            ),
        ];
        for (set, field, needle) in cases {
            let err = compile_err(set);
            assert_eq!(err.field, field, "{err}");
            assert!(err.message.contains(needle), "{err}");
        }
    }

    #[test]
    fn invalid_spec_messages_are_redacted() {
        let err = compile_err(|r| {
            r.kind = TaskKind::Get;
            r.input = "host/?token=hunter2".into();
            r.redact = vec!["hunter2".into()];
        });
        assert!(!err.message.contains("hunter2"), "{err}");
        assert!(err.message.contains("***"), "{err}");
    }

    #[test]
    fn empty_expect_means_none() {
        let mut req = TaskRequest::new(TaskKind::Cmd, "true");
        req.expect = Some(" ".into());
        let plan = TaskPlan::compile(req).unwrap();
        assert!(plan.inputs()[0].expect.is_none());
    }
}
