//! Tests of the judging rules (kept beside `judge.rs` so that file stays about the rules).

use std::process::ExitStatus;

use reqwest::header::{HeaderMap, HeaderValue};

use super::*;
use crate::request::{OutputOptions, TaskKind, TaskRequest};

fn plan(kind: TaskKind, f: impl FnOnce(&mut TaskRequest)) -> TaskPlan {
    let input = if kind == TaskKind::Cmd {
        "run-it"
    } else {
        "http://svc.local/health"
    };
    let mut req = TaskRequest::new(kind, input);
    f(&mut req);
    TaskPlan::compile(req).unwrap()
}

fn out(text: &str) -> Captured {
    Captured {
        text: text.to_owned(),
        omitted: 0,
        lines: text.lines().filter(|l| !l.trim().is_empty()).count() as u64,
    }
}

fn exited(code: i32) -> CmdEnd {
    CmdEnd::Exited(ExitStatus::from_raw(code << 8))
}

fn cmd(p: &TaskPlan, end: CmdEnd, text: &str) -> Judged {
    judge_cmd(p, &p.inputs()[0], &end, &out(text))
}

fn response(status: u16) -> HttpEnd {
    HttpEnd::Response {
        status,
        headers: HeaderMap::new(),
    }
}

fn http(p: &TaskPlan, end: HttpEnd, body: &str) -> Judged {
    judge_http(p, &p.inputs()[0], &end, &out(body))
}

fn code(j: &Judged) -> &str {
    j.error_code.as_deref().unwrap_or("")
}

#[test]
fn exit_code_zero_succeeds_and_nonzero_fails_with_the_code() {
    let p = plan(TaskKind::Cmd, |_| {});
    assert_eq!(cmd(&p, exited(0), "").verdict, Verdict::Succeeded);
    let j = cmd(&p, exited(2), "");
    assert_eq!((j.verdict, code(&j)), (Verdict::Failed, "2"));
    assert_eq!(
        j.message.as_deref(),
        Some("command \"run-it\" exited with code 2")
    );
}

#[test]
fn signals_map_to_128_plus_n() {
    let p = plan(TaskKind::Cmd, |_| {});
    let j = cmd(&p, CmdEnd::Exited(ExitStatus::from_raw(9)), "");
    assert_eq!(code(&j), "137");
    assert!(j.message.unwrap().contains("killed by signal 9"));
}

#[test]
fn interruptions_have_named_codes() {
    let p = plan(TaskKind::Cmd, |r| r.timeout = Duration::from_secs(7));
    let j = cmd(&p, CmdEnd::TimedOut, "");
    assert_eq!(code(&j), "Timeout");
    assert!(j.message.unwrap().contains("within the timeout of 7s"));
    let j = cmd(&p, CmdEnd::Cancelled, "");
    assert_eq!((j.verdict, code(&j)), (Verdict::Cancelled, "Cancelled"));
    let j = cmd(&p, CmdEnd::SpawnFailed("ENOENT".into()), "");
    assert_eq!(code(&j), "SpawnFailed");
}

#[test]
fn expected_failure_output_turns_a_failure_into_success() {
    let p = plan(TaskKind::Cmd, |r| {
        r.output = Some(OutputOptions {
            expected_failure_output: Some("not found".into()),
            expected_output: Some("never checked".into()),
            ..OutputOptions::default()
        })
    });
    assert_eq!(
        cmd(&p, exited(1), "x: not found").verdict,
        Verdict::Succeeded
    );
    let j = cmd(&p, exited(1), "permission denied");
    assert_eq!(code(&j), "1");
    assert!(
        j.message
            .unwrap()
            .contains("expected failure's output must contain \"not found\""),
    );
}

#[test]
fn output_validation_failures_are_expectation_failed() {
    let p = plan(TaskKind::Cmd, |r| {
        r.output = Some(OutputOptions {
            failure_criteria: Some("contains:WARN".into()),
            ..OutputOptions::default()
        })
    });
    let j = cmd(&p, exited(0), "WARN disk");
    assert_eq!(code(&j), "ExpectationFailed");
    assert!(j.message.unwrap().contains("failureCriteria"));
}

#[test]
fn expect_is_checked_last_and_named_in_the_message() {
    let p = plan(TaskKind::Cmd, |r| {
        r.expect = Some("ready|$count > 2".into())
    });
    assert_eq!(cmd(&p, exited(0), "ready").verdict, Verdict::Succeeded);
    assert_eq!(cmd(&p, exited(0), "a\nb\nc\n").verdict, Verdict::Succeeded);
    let j = cmd(&p, exited(0), "starting");
    assert_eq!(code(&j), "ExpectationFailed");
    assert_eq!(
        j.message.as_deref(),
        Some("command \"run-it\": output does not match expect \"ready|$count > 2\"")
    );
}

#[test]
fn a_status_test_in_expect_waives_the_exit_code_rule() {
    let p = plan(TaskKind::Cmd, |r| r.expect = Some("$status == 1".into()));
    assert_eq!(cmd(&p, exited(1), "").verdict, Verdict::Succeeded);
    let j = cmd(&p, exited(0), "");
    assert_eq!(code(&j), "ExpectationFailed");
}

#[test]
fn http_status_rules() {
    let p = plan(TaskKind::Get, |_| {});
    assert_eq!(http(&p, response(204), "").verdict, Verdict::Succeeded);
    let j = http(&p, response(503), "down");
    assert_eq!((code(&j), j.http_status), ("503", Some(503)));
    assert_eq!(
        j.message.as_deref(),
        Some("GET \"http://svc.local/health\" returned status 503, expected any 2xx")
    );
    let p = plan(TaskKind::Get, |r| r.http.expected_status_codes = vec![503]);
    assert_eq!(http(&p, response(503), "").verdict, Verdict::Succeeded);
    assert_eq!(code(&http(&p, response(200), "")), "200");
    let p = plan(TaskKind::Get, |r| r.expect = Some("$status == 404".into()));
    assert_eq!(http(&p, response(404), "").verdict, Verdict::Succeeded);
    assert_eq!(code(&http(&p, response(200), "")), "ExpectationFailed");
}

#[test]
fn http_expect_matches_status_or_body() {
    let p = plan(TaskKind::Get, |r| r.expect = Some("200|204".into()));
    assert_eq!(http(&p, response(200), "").verdict, Verdict::Succeeded);
    let j = http(&p, response(201), "created");
    assert_eq!(code(&j), "ExpectationFailed");
    assert!(
        j.message
            .unwrap()
            .contains("response does not match expect")
    );
}

#[test]
fn http_headers_then_body_then_output_validation() {
    let p = plan(TaskKind::Get, |r| {
        r.http.response_headers.insert("x-ok".into(), "yes".into());
        r.http.expected_response_body = Some("alive".into());
        r.output = Some(OutputOptions {
            json_path: Some("$.a".into()),
            ..OutputOptions::default()
        });
    });
    let mut headers = HeaderMap::new();
    headers.insert("x-ok", HeaderValue::from_static("yes"));
    let ok = HttpEnd::Response {
        status: 200,
        headers: headers.clone(),
    };
    assert_eq!(http(&p, ok, r#"{"a":"alive"}"#).verdict, Verdict::Succeeded);
    let j = http(&p, response(200), r#"{"a":"alive"}"#);
    assert!(j.message.unwrap().contains("no header x-ok"));
    let j = http(
        &p,
        HttpEnd::Response {
            status: 200,
            headers: headers.clone(),
        },
        r#"{"b":"dead"}"#,
    );
    assert!(
        j.message
            .unwrap()
            .contains("response body must contain \"alive\"")
    );
    let j = http(
        &p,
        HttpEnd::Response {
            status: 200,
            headers,
        },
        "alive",
    );
    assert!(j.message.unwrap().contains("not JSON"));
}

#[test]
fn http_failures() {
    let p = plan(TaskKind::Post, |_| {});
    let j = http(
        &p,
        HttpEnd::Failed {
            reason: "connection refused".into(),
            status: None,
        },
        "",
    );
    assert_eq!(code(&j), "RequestFailed");
    assert!(
        j.message
            .unwrap()
            .starts_with("POST \"http://svc.local/health\" failed")
    );
    let j = http(
        &p,
        HttpEnd::TimedOut {
            limit: Duration::from_millis(1500),
            by_response_timeout: true,
        },
        "",
    );
    assert_eq!(code(&j), "Timeout");
    assert!(
        j.message
            .unwrap()
            .contains("within 1.5s (httpValidation.responseTimeout)")
    );
}

#[test]
fn url_passwords_never_reach_messages() {
    let p = TaskPlan::compile(TaskRequest::new(
        TaskKind::Get,
        "http://admin:pa55@svc.local/x",
    ))
    .unwrap();
    let j = http(&p, response(500), "");
    let message = j.message.unwrap();
    assert!(!message.contains("pa55"), "{message}");
    assert!(
        message.contains("http://admin:***@svc.local/x"),
        "{message}"
    );
}

#[test]
fn judge_ended_applies_the_rules_of_a_real_run() {
    let p = plan(TaskKind::Cmd, |r| r.expect = Some("ready".into()));
    let (verdict, message) = judge_ended(&p, 0, Ended::Exited(0), &out("ready\n")).unwrap();
    assert_eq!((verdict, message), (Verdict::Succeeded, None));
    let (verdict, message) = judge_ended(&p, 0, Ended::Exited(3), &out("ready\n")).unwrap();
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(message, cmd(&p, exited(3), "ready\n").message);

    let p = plan(TaskKind::Get, |r| r.http.expected_status_codes = vec![204]);
    let ended = Ended::Response {
        status: 200,
        headers: HeaderMap::new(),
    };
    let (verdict, message) = judge_ended(&p, 0, ended, &out("")).unwrap();
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(message, http(&p, response(200), "").message);
    assert!(judge_ended(&p, 1, Ended::Exited(0), &out("")).is_none());
}
