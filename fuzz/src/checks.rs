//! httpValidation and outputValidation (text, regex, JSONPath) compiled, then judged.
//!
//! `TaskPlan::compile`, then `judge_ended` against a response (get) or an exit code (cmd), as a
//! finished run would be.
//!
//! Fields: flags (kind, bodyMatch, outputMatch, caseSensitive), expect, expectedResponseBody,
//! responseHeaders (`name: value` lines), expectedStatusCodes (comma separated),
//! expectedOutput, successCriteria, failureCriteria, expectedFailureOutput, jsonPath,
//! expectedJsonValue, the output or body, the status or exit code, the response's headers.

use http::{HeaderMap, HeaderName, HeaderValue};
use mcall_engine::{
    BodyMatch, Captured, Ended, HttpOptions, OutputMatch, OutputOptions, TaskKind, TaskPlan,
    TaskRequest, Verdict, judge_ended,
};

use crate::Fields;

const BODY_MATCHES: [BodyMatch; 3] = [BodyMatch::Contains, BodyMatch::Exact, BodyMatch::Regex];
const OUTPUT_MATCHES: [OutputMatch; 5] = [
    OutputMatch::Contains,
    OutputMatch::Exact,
    OutputMatch::Regex,
    OutputMatch::StartsWith,
    OutputMatch::EndsWith,
];

pub(crate) fn run(data: &[u8]) {
    let f = Fields::new(data);
    let http = f.choice(0, 0, 2) == 0;
    let Ok(plan) = TaskPlan::compile(request(&f, http)) else {
        return;
    };
    let output = Captured::of(f.text(11).as_bytes(), 64 * 1024);
    let status = f.text(12).trim().parse::<i64>().unwrap_or(200);
    let ended = || match http {
        true => Ended::Response {
            status: u16::try_from(status.clamp(100, 999)).unwrap_or(200),
            headers: response_headers(&f),
        },
        false => Ended::Exited(i32::try_from(status.clamp(0, 255)).unwrap_or(0)),
    };
    let judged = judge_ended(&plan, 0, ended(), &output).expect("a plan has an input 0");
    assert_eq!(
        Some(&judged),
        judge_ended(&plan, 0, ended(), &output).as_ref(),
        "judging is deterministic"
    );
    // Success carries no message; every other verdict explains itself.
    assert_eq!(
        judged.0 == Verdict::Succeeded,
        judged.1.is_none(),
        "{judged:?}"
    );
}

fn request(f: &Fields, http: bool) -> TaskRequest {
    let mut request = match http {
        true => TaskRequest::new(TaskKind::Get, "http://fuzz.invalid/"),
        false => TaskRequest::new(TaskKind::Cmd, "true"),
    };
    request.expect = f.owned(1);
    request.http = HttpOptions {
        expected_response_body: f.owned(2),
        body_match: BODY_MATCHES[f.choice(0, 1, BODY_MATCHES.len())],
        response_headers: f.pairs(3, ':').into_iter().collect(),
        expected_status_codes: f
            .text(4)
            .split(',')
            .filter_map(|c| c.trim().parse().ok())
            .collect(),
        ..HttpOptions::default()
    };
    request.output = Some(OutputOptions {
        expected_output: f.owned(5),
        output_match: OUTPUT_MATCHES[f.choice(0, 2, OUTPUT_MATCHES.len())],
        success_criteria: f.owned(6),
        failure_criteria: f.owned(7),
        case_sensitive: f.choice(0, 3, 2) == 0,
        expected_failure_output: f.owned(8),
        json_path: f.owned(9),
        expected_json_value: f.owned(10),
    });
    request
}

/// The response's headers; lines that are no valid header are left out, as no server sends them.
fn response_headers(f: &Fields) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in f.pairs(13, ':') {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.trim()),
            HeaderValue::try_from(value.trim()),
        ) {
            headers.append(name, value);
        }
    }
    headers
}
