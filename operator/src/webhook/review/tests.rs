use serde_json::{Value, json};

use super::*;

fn task_object(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "mcall.tz.io/v1", "kind": "McallTask",
        "metadata": {"name": name, "namespace": "ns"}, "spec": spec
    })
}

fn request(operation: &str, kind: &str, object: Value, old: Option<Value>) -> Vec<u8> {
    let mut request = json!({
        "uid": "0f3c-uid",
        "kind": {"group": "mcall.tz.io", "version": "v1", "kind": kind},
        "resource": {"group": "mcall.tz.io", "version": "v1", "resource": "mcalltasks"},
        "name": "t", "namespace": "ns", "operation": operation,
        "userInfo": {"username": "someone"},
        "object": object, "dryRun": false
    });
    if let Some(old) = old {
        request["oldObject"] = old;
    }
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request
    }))
    .unwrap()
}

fn answer(kind: Kind, body: &[u8]) -> Value {
    let review = review(kind, &Settings::default(), body).expect("a review");
    serde_json::to_value(review).unwrap()
}

fn valid() -> Value {
    json!({"type": "cmd", "input": "true"})
}

fn bad_regex() -> Value {
    json!({"type": "cmd", "input": "true", "expect": "regex:("})
}

#[test]
fn a_valid_task_is_allowed_and_the_uid_echoed() {
    let out = answer(
        Kind::McallTask,
        &request("CREATE", "McallTask", task_object("t", valid()), None),
    );
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    assert_eq!(out["response"]["uid"], "0f3c-uid");
    assert_eq!(out["response"]["allowed"], true);
}

#[test]
fn an_invalid_task_is_refused_with_the_field_named() {
    let out = answer(
        Kind::McallTask,
        &request("CREATE", "McallTask", task_object("t", bad_regex()), None),
    );
    assert_eq!(out["response"]["uid"], "0f3c-uid");
    assert_eq!(out["response"]["allowed"], false);
    let message = out["response"]["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("spec.expect"), "{message}");
}

#[test]
fn an_update_is_judged_when_it_changes_the_spec() {
    let body = request(
        "UPDATE",
        "McallTask",
        task_object("t", bad_regex()),
        Some(task_object("t", valid())),
    );
    assert_eq!(answer(Kind::McallTask, &body)["response"]["allowed"], false);
}

#[test]
fn an_update_that_keeps_the_spec_is_allowed_even_if_it_is_invalid() {
    let mut labelled = task_object("t", bad_regex());
    labelled["metadata"]["labels"] = json!({"team": "a"});
    let body = request(
        "UPDATE",
        "McallTask",
        labelled,
        Some(task_object("t", bad_regex())),
    );
    assert_eq!(answer(Kind::McallTask, &body)["response"]["allowed"], true);
}

#[test]
fn an_update_of_an_object_being_deleted_is_allowed() {
    let mut deleting = task_object("t", bad_regex());
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let body = request(
        "UPDATE",
        "McallTask",
        deleting,
        Some(task_object("t", valid())),
    );
    assert_eq!(answer(Kind::McallTask, &body)["response"]["allowed"], true);
}

#[test]
fn a_delete_is_always_allowed() {
    let body = request(
        "DELETE",
        "McallTask",
        Value::Null,
        Some(task_object("t", bad_regex())),
    );
    assert_eq!(answer(Kind::McallTask, &body)["response"]["allowed"], true);
}

#[test]
fn a_kind_sent_to_the_other_endpoint_is_refused_clearly() {
    let body = request("CREATE", "McallTask", task_object("t", valid()), None);
    let out = answer(Kind::McallWorkflow, &body);
    assert_eq!(out["response"]["allowed"], false);
    let message = out["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("validates McallWorkflow, not McallTask"),
        "{message}"
    );
}

#[test]
fn a_workflow_with_a_cycle_is_refused() {
    let object = json!({
        "apiVersion": "mcall.tz.io/v1", "kind": "McallWorkflow",
        "metadata": {"name": "w", "namespace": "ns"},
        "spec": {"tasks": [
            {"name": "x", "type": "cmd", "input": "true", "dependencies": ["z"]},
            {"name": "y", "type": "cmd", "input": "true", "dependencies": ["x"]},
            {"name": "z", "type": "cmd", "input": "true", "dependencies": ["y"]}
        ]}
    });
    let out = answer(
        Kind::McallWorkflow,
        &request("CREATE", "McallWorkflow", object, None),
    );
    assert_eq!(out["response"]["allowed"], false);
    let message = out["response"]["status"]["message"].as_str().unwrap();
    assert_eq!(message, "spec.tasks: cycle x → y → z → x");
}

#[test]
fn a_review_without_a_request_is_refused_with_why() {
    let body = br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#;
    let out = answer(Kind::McallTask, body);
    assert_eq!(out["response"]["allowed"], false);
    let message = out["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("has no request"), "{message}");
}

#[test]
fn a_body_that_is_not_a_review_is_an_error() {
    let error = review(Kind::McallTask, &Settings::default(), b"{not json").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("the body is not an AdmissionReview"),
        "{error}"
    );
}
