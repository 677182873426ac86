//! McallTask spec → the engine's request. Pure: environment values from Secrets and ConfigMaps
//! are resolved by the caller and passed in.

use std::collections::BTreeMap;
use std::time::Duration;

use mcall_engine as engine;
use mcall_generated as api;

/// Values resolved from `environmentFrom`; Secret values are redacted from every output.
#[derive(Clone, Debug, Default)]
pub struct ResolvedEnvironment {
    pub values: BTreeMap<String, String>,
    pub secrets: Vec<String>,
}

pub fn task_request(
    spec: &api::McallTaskSpec,
    resolved: ResolvedEnvironment,
) -> engine::TaskRequest {
    let mut environment = spec.environment.clone().unwrap_or_default();
    environment.extend(resolved.values);
    engine::TaskRequest {
        kind: task_kind(spec.r#type),
        input: spec.input.clone().unwrap_or_default(),
        expect: spec.expect.clone(),
        timeout: Duration::from_secs(u64::try_from(spec.timeout).unwrap_or(1).max(1)),
        retry_count: u32::try_from(spec.retry_count).unwrap_or(0),
        execution_mode: match spec.execution_mode {
            api::ExecutionMode::Sequential => engine::ExecutionMode::Sequential,
            api::ExecutionMode::Parallel => engine::ExecutionMode::Parallel,
        },
        fail_fast: spec.fail_fast,
        http: http_options(spec, &environment),
        output: spec.output_validation.as_ref().map(output_options),
        environment,
        redact: resolved.secrets,
    }
}

pub fn task_kind(t: api::TaskType) -> engine::TaskKind {
    match t {
        api::TaskType::Cmd => engine::TaskKind::Cmd,
        api::TaskType::Get => engine::TaskKind::Get,
        api::TaskType::Post => engine::TaskKind::Post,
    }
}

/// Replaces `$(NAME)` with the value of environment variable NAME (Kubernetes' syntax), so a
/// header can carry a Secret through `environmentFrom`; unknown names stay as written.
fn expand(value: &str, environment: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')').map(|end| (&after[..end], end)) {
            Some((name, end)) if environment.contains_key(name) => {
                out.push_str(&environment[name]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("$(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn http_options(
    spec: &api::McallTaskSpec,
    environment: &BTreeMap<String, String>,
) -> engine::HttpOptions {
    let headers = spec
        .headers
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), expand(v, environment)))
        .collect();
    let mut http = engine::HttpOptions {
        headers,
        body: spec.body.clone(),
        ..Default::default()
    };
    if let Some(v) = &spec.http_validation {
        http.expected_status_codes = v
            .expected_status_codes
            .iter()
            .flatten()
            .filter_map(|c| u16::try_from(*c).ok())
            .collect();
        http.expected_response_body = v.expected_response_body.clone();
        http.body_match = match v.response_body_match {
            api::BodyMatch::Contains => engine::BodyMatch::Contains,
            api::BodyMatch::Exact => engine::BodyMatch::Exact,
            api::BodyMatch::Regex => engine::BodyMatch::Regex,
        };
        http.response_headers = v.response_headers.clone().unwrap_or_default();
        http.response_timeout = v
            .response_timeout
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs);
        http.follow_redirects = v.follow_redirects;
        http.max_redirects = u32::try_from(v.max_redirects).unwrap_or(0);
    }
    http
}

fn output_options(v: &api::OutputValidation) -> engine::OutputOptions {
    engine::OutputOptions {
        expected_output: v.expected_output.clone(),
        output_match: match v.output_match {
            api::OutputMatch::Contains => engine::OutputMatch::Contains,
            api::OutputMatch::Exact => engine::OutputMatch::Exact,
            api::OutputMatch::Regex => engine::OutputMatch::Regex,
            api::OutputMatch::StartsWith => engine::OutputMatch::StartsWith,
            api::OutputMatch::EndsWith => engine::OutputMatch::EndsWith,
        },
        success_criteria: v.success_criteria.clone(),
        failure_criteria: v.failure_criteria.clone(),
        case_sensitive: v.case_sensitive,
        expected_failure_output: v.expected_failure_output.clone(),
        json_path: v.json_path.clone(),
        expected_json_value: v.expected_json_value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> api::McallTaskSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn maps_every_field_the_engine_uses() {
        let s = spec(
            r#"
type: post
input: http://127.0.0.1:1/x
expect: "200"
timeout: 7
retryCount: 2
executionMode: parallel
failFast: true
headers: {X-A: b}
body: "{}"
httpValidation: {expectedStatusCodes: [201], expectedResponseBody: ok, responseBodyMatch: regex, responseTimeout: 3, followRedirects: false, maxRedirects: 2}
outputValidation: {expectedOutput: x, outputMatch: endsWith, caseSensitive: false, jsonPath: $.a, expectedJsonValue: "1"}
environment: {A: "1", B: plain}
"#,
        );
        let resolved = ResolvedEnvironment {
            values: BTreeMap::from([("B".into(), "from-secret".into())]),
            secrets: vec!["from-secret".into()],
        };
        let r = task_request(&s, resolved);
        assert_eq!(r.kind, engine::TaskKind::Post);
        assert_eq!(r.timeout, Duration::from_secs(7));
        assert_eq!(r.retry_count, 2);
        assert_eq!(r.execution_mode, engine::ExecutionMode::Parallel);
        assert!(r.fail_fast);
        assert_eq!(r.http.expected_status_codes, vec![201]);
        assert_eq!(r.http.body_match, engine::BodyMatch::Regex);
        assert_eq!(r.http.response_timeout, Some(Duration::from_secs(3)));
        assert!(!r.http.follow_redirects);
        assert_eq!(r.http.max_redirects, 2);
        assert_eq!(r.http.body.as_deref(), Some("{}"));
        assert_eq!(r.http.headers["X-A"], "b");
        let o = r.output.unwrap();
        assert_eq!(o.output_match, engine::OutputMatch::EndsWith);
        assert!(!o.case_sensitive);
        assert_eq!(r.environment["A"], "1");
        assert_eq!(
            r.environment["B"], "from-secret",
            "environmentFrom wins over a plain value"
        );
        assert_eq!(r.redact, vec!["from-secret".to_owned()]);
    }

    #[test]
    fn header_values_expand_environment_variables() {
        let env = BTreeMap::from([("TOKEN".to_owned(), "abc".to_owned())]);
        assert_eq!(expand("Bearer $(TOKEN)", &env), "Bearer abc");
        assert_eq!(expand("$(TOKEN)$(TOKEN)", &env), "abcabc");
        assert_eq!(expand("$(MISSING) and $(", &env), "$(MISSING) and $(");
        assert_eq!(expand("plain", &env), "plain");
    }

    #[test]
    fn defaults_come_from_the_generated_types() {
        let r = task_request(
            &spec("type: cmd\ninput: 'true'\n"),
            ResolvedEnvironment::default(),
        );
        assert_eq!(r.timeout, Duration::from_secs(30));
        assert_eq!(r.retry_count, 0);
        assert_eq!(r.execution_mode, engine::ExecutionMode::Sequential);
        assert!(r.http.follow_redirects);
        assert!(r.output.is_none());
    }
}
