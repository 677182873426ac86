//! get/post against a loopback server: status rules, body and header checks, redirects,
//! timeouts, request body and headers, expect and outputValidation on bodies.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, request, run};
use mcall_engine::{BodyMatch, OutputMatch, OutputOptions, TaskKind, Verdict};

#[tokio::test]
async fn get_200_succeeds_and_reports_the_body() {
    let server = TestServer::start().await;
    let outcome = run(request(TaskKind::Get, server.url("/ok"))).await;
    assert_eq!(outcome.verdict, Verdict::Succeeded, "{outcome:?}");
    assert_eq!(outcome.output, "hello ok");
    assert_eq!(outcome.http_status, Some(200));
    assert_eq!(outcome.error_code, None);
    assert!(outcome.inputs.is_empty());
    assert_eq!(server.count("/ok"), 1);
    let recorded = &server.requests()[0];
    assert_eq!(recorded.method, "GET");
    assert!(recorded.headers["user-agent"].starts_with("mcall/"));
}

#[tokio::test]
async fn status_defaults_to_any_2xx() {
    let server = TestServer::start().await;
    let ok = run(request(TaskKind::Get, server.url("/status/204"))).await;
    assert_eq!(ok.verdict, Verdict::Succeeded, "{ok:?}");
    let down = run(request(TaskKind::Get, server.url("/status/503"))).await;
    assert_eq!(down.verdict, Verdict::Failed);
    assert_eq!(down.error_code.as_deref(), Some("503"));
    assert_eq!(down.http_status, Some(503));
    assert_eq!(down.output, "status 503");
    let message = down.error_message.unwrap();
    assert!(message.contains("/status/503"), "{message}");
    assert!(message.contains("expected any 2xx"), "{message}");
}

#[tokio::test]
async fn explicit_status_codes_replace_the_default() {
    let server = TestServer::start().await;
    let mut req = request(TaskKind::Get, server.url("/status/503"));
    req.http.expected_status_codes = vec![503, 504];
    assert_eq!(run(req).await.verdict, Verdict::Succeeded);
    let mut req = request(TaskKind::Get, server.url("/ok"));
    req.http.expected_status_codes = vec![201];
    let outcome = run(req).await;
    assert_eq!(outcome.error_code.as_deref(), Some("200"));
    assert!(
        outcome
            .error_message
            .unwrap()
            .contains("expected one of 201")
    );
}

#[tokio::test]
async fn expect_forms_on_http() {
    let server = TestServer::start().await;
    let cases = [
        ("/ok", "200|204", Verdict::Succeeded),
        ("/status/204", "200 | 204", Verdict::Succeeded),
        ("/status/201", "200|204", Verdict::Failed),
        ("/ok", "hello", Verdict::Succeeded),
        ("/ok", "bye", Verdict::Failed),
        ("/ok", "regex:^hello \\w+$", Verdict::Succeeded),
        ("/lines", "$count == 3", Verdict::Succeeded),
        ("/lines", "$count > 3", Verdict::Failed),
        ("/status/404", "$status == 404", Verdict::Succeeded),
        ("/ok", "$status == 404", Verdict::Failed),
        ("/status/500", "$status >= 500", Verdict::Succeeded),
    ];
    for (path, expect, verdict) in cases {
        let mut req = request(TaskKind::Get, server.url(path));
        req.expect = Some(expect.to_owned());
        let outcome = run(req).await;
        assert_eq!(outcome.verdict, verdict, "{path} {expect}: {outcome:?}");
        if verdict == Verdict::Failed && path == "/ok" {
            assert_eq!(outcome.error_code.as_deref(), Some("ExpectationFailed"));
            assert!(outcome.error_message.unwrap().contains(expect));
        }
    }
}

#[tokio::test]
async fn body_match_forms() {
    let server = TestServer::start().await;
    let cases = [
        ("ello", BodyMatch::Contains, true, Verdict::Succeeded),
        ("HELLO", BodyMatch::Contains, true, Verdict::Failed),
        ("HELLO", BodyMatch::Contains, false, Verdict::Succeeded),
        ("hello ok", BodyMatch::Exact, true, Verdict::Succeeded),
        ("hello", BodyMatch::Exact, true, Verdict::Failed),
        (
            "^hello (ok|fine)$",
            BodyMatch::Regex,
            true,
            Verdict::Succeeded,
        ),
        ("^HELLO", BodyMatch::Regex, false, Verdict::Succeeded),
        ("^ok", BodyMatch::Regex, true, Verdict::Failed),
    ];
    for (expected, how, case_sensitive, verdict) in cases {
        let mut req = request(TaskKind::Get, server.url("/ok"));
        req.http.expected_response_body = Some(expected.to_owned());
        req.http.body_match = how;
        req.output = Some(OutputOptions {
            case_sensitive,
            ..OutputOptions::default()
        });
        let outcome = run(req).await;
        assert_eq!(outcome.verdict, verdict, "{expected} {how:?}: {outcome:?}");
        if verdict == Verdict::Failed {
            assert_eq!(outcome.error_code.as_deref(), Some("ExpectationFailed"));
            assert!(
                outcome
                    .error_message
                    .unwrap()
                    .contains("response body must")
            );
        }
    }
}

#[tokio::test]
async fn response_headers_exact_and_regex() {
    let server = TestServer::start().await;
    let cases = [
        ("X-Version", "2", Verdict::Succeeded),
        ("x-version", "3", Verdict::Failed),
        (
            "Content-Type",
            "regex:^application/json",
            Verdict::Succeeded,
        ),
        ("Content-Type", "application/json", Verdict::Failed),
        ("X-Missing", "regex:.*", Verdict::Failed),
    ];
    for (name, value, verdict) in cases {
        let mut req = request(TaskKind::Get, server.url("/headers"));
        req.http
            .response_headers
            .insert(name.to_owned(), value.to_owned());
        let outcome = run(req).await;
        assert_eq!(outcome.verdict, verdict, "{name}: {value}: {outcome:?}");
        if verdict == Verdict::Failed {
            let message = outcome.error_message.unwrap();
            assert!(
                message.to_lowercase().contains(&name.to_lowercase()),
                "{message}"
            );
        }
    }
}

#[tokio::test]
async fn redirects_are_followed_up_to_the_limit() {
    let server = TestServer::start().await;
    let outcome = run(request(TaskKind::Get, server.url("/redirect/3"))).await;
    assert_eq!(outcome.verdict, Verdict::Succeeded, "{outcome:?}");
    assert_eq!(outcome.output, "arrived");
    assert_eq!(server.count("/redirect/0"), 1);

    let mut req = request(TaskKind::Get, server.url("/redirect/3"));
    req.http.max_redirects = 3;
    assert_eq!(run(req).await.verdict, Verdict::Succeeded);

    let mut req = request(TaskKind::Get, server.url("/redirect/5"));
    req.http.max_redirects = 2;
    let outcome = run(req).await;
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("RequestFailed"));
    let message = outcome.error_message.unwrap();
    assert!(message.contains("more than 2 redirects"), "{message}");
    assert!(message.contains("maxRedirects"), "{message}");
}

#[tokio::test]
async fn redirects_are_not_followed_when_disabled() {
    let server = TestServer::start().await;
    let mut req = request(TaskKind::Get, server.url("/redirect/1"));
    req.http.follow_redirects = false;
    let outcome = run(req).await;
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("302"));
    assert_eq!(server.count("/redirect/0"), 0);

    let mut req = request(TaskKind::Get, server.url("/redirect/1"));
    req.http.follow_redirects = false;
    req.http.expected_status_codes = vec![302];
    assert_eq!(run(req).await.verdict, Verdict::Succeeded);
}

#[tokio::test]
async fn response_timeout_fails_a_slow_response() {
    let server = TestServer::start().await;
    let mut req = request(TaskKind::Get, server.url("/slow/3000"));
    req.http.response_timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let outcome = run(req).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("Timeout"));
    assert!(
        outcome
            .error_message
            .unwrap()
            .contains("httpValidation.responseTimeout")
    );

    // Without responseTimeout the task timeout bounds the request.
    let mut req = request(TaskKind::Get, server.url("/slow/3000"));
    req.timeout = Duration::from_millis(300);
    let outcome = run(req).await;
    assert_eq!(outcome.error_code.as_deref(), Some("Timeout"));
    assert!(outcome.error_message.unwrap().contains("task timeout"));

    // A response within the limit passes.
    let mut req = request(TaskKind::Get, server.url("/slow/50"));
    req.http.response_timeout = Some(Duration::from_secs(2));
    assert_eq!(run(req).await.verdict, Verdict::Succeeded);
}

#[tokio::test]
async fn the_response_time_is_recorded_for_each_request() {
    let server = TestServer::start().await;
    let outcome = run(request(TaskKind::Get, server.url("/slow/200"))).await;
    assert_eq!(outcome.verdict, Verdict::Succeeded);
    let took = outcome
        .response_time
        .expect("a whole response has a response time");
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(
        took <= outcome.duration,
        "{took:?} within {:?}",
        outcome.duration
    );

    let input = format!(
        r#"[{{"type": "get", "input": "{}"}}, {{"type": "cmd", "input": "true"}}]"#,
        server.url("/slow/100")
    );
    let outcome = run(request(TaskKind::Cmd, input)).await;
    assert_eq!(
        outcome.response_time, None,
        "per input when there are several"
    );
    assert!(outcome.inputs[0].response_time.unwrap() >= Duration::from_millis(100));
    assert_eq!(outcome.inputs[1].response_time, None, "a command has none");

    // A timed-out request has no response time: there was no whole response.
    let mut req = request(TaskKind::Get, server.url("/slow/3000"));
    req.timeout = Duration::from_millis(200);
    assert_eq!(run(req).await.response_time, None);
}

#[tokio::test]
async fn post_sends_body_and_headers() {
    let server = TestServer::start().await;
    let mut req = request(TaskKind::Post, server.url("/echo"));
    req.http.body = Some(r#"{"hello":"world"}"#.to_owned());
    req.http
        .headers
        .insert("Content-Type".into(), "application/json".into());
    req.http.headers.insert("X-Api-Key".into(), "k-123".into());
    req.expect = Some("world".into());
    let outcome = run(req).await;
    assert_eq!(outcome.verdict, Verdict::Succeeded, "{outcome:?}");
    let recorded = &server.requests()[0];
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.body, r#"{"hello":"world"}"#);
    assert_eq!(recorded.headers["content-type"], "application/json");
    assert_eq!(recorded.headers["x-api-key"], "k-123");
}

#[tokio::test]
async fn get_sends_headers_but_no_body() {
    let server = TestServer::start().await;
    let mut req = request(TaskKind::Get, server.url("/echo"));
    req.http.body = Some("ignored".into());
    req.http
        .headers
        .insert("Authorization".into(), "Bearer t".into());
    run(req).await;
    let recorded = &server.requests()[0];
    assert_eq!(recorded.method, "GET");
    assert_eq!(recorded.body, "");
    assert_eq!(recorded.headers["authorization"], "Bearer t");
}

#[tokio::test]
async fn json_path_on_a_response_body() {
    let server = TestServer::start().await;
    let cases = [
        ("$.status", Some("up"), Verdict::Succeeded),
        ("$.count", Some("3"), Verdict::Succeeded),
        (
            "$.checks[?@.name == 'db'].ok",
            Some("true"),
            Verdict::Succeeded,
        ),
        ("$.checks[1].ok", Some("true"), Verdict::Failed),
        ("$.missing", None, Verdict::Failed),
    ];
    for (path, expected, verdict) in cases {
        let mut req = request(TaskKind::Get, server.url("/json"));
        req.output = Some(OutputOptions {
            json_path: Some(path.to_owned()),
            expected_json_value: expected.map(str::to_owned),
            ..OutputOptions::default()
        });
        let outcome = run(req).await;
        assert_eq!(outcome.verdict, verdict, "{path}: {outcome:?}");
    }
}

#[tokio::test]
async fn output_validation_applies_to_bodies() {
    let server = TestServer::start().await;
    let mut req = request(TaskKind::Get, server.url("/ok"));
    req.output = Some(OutputOptions {
        expected_output: Some("ok".into()),
        output_match: OutputMatch::EndsWith,
        failure_criteria: Some("contains:error".into()),
        ..OutputOptions::default()
    });
    assert_eq!(run(req).await.verdict, Verdict::Succeeded);

    // An expected failure: a rejected status whose body carries the expected failure output.
    let mut req = request(TaskKind::Get, server.url("/status/503"));
    req.output = Some(OutputOptions {
        expected_failure_output: Some("503".into()),
        ..OutputOptions::default()
    });
    assert_eq!(run(req).await.verdict, Verdict::Succeeded);
}

#[tokio::test]
async fn connection_refused_is_request_failed() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let outcome = run(request(TaskKind::Get, format!("http://127.0.0.1:{port}/"))).await;
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("RequestFailed"));
    assert_eq!(outcome.http_status, None);
    let message = outcome.error_message.unwrap();
    assert!(message.contains("failed"), "{message}");
}

#[tokio::test]
async fn large_bodies_are_capped() {
    let server = TestServer::start().await;
    let outcome = run(request(TaskKind::Get, server.url("/big/3000000"))).await;
    assert_eq!(outcome.verdict, Verdict::Succeeded);
    assert!(outcome.output.starts_with("xxxx"));
    assert!(
        outcome
            .output
            .ends_with(&format!("\n…[truncated {} bytes]", 3_000_000 - 4096)),
        "{}",
        &outcome.output[outcome.output.len() - 40..]
    );
}
