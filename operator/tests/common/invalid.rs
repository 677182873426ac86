//! Every spec the controllers refuse, in one table, so that admission is held to the same list:
//! the controller tests create each and wait for `Failed` with the case's reason and `problem`
//! in the message; the webhook test applies each and expects a refusal naming the same
//! `problem`, except the few only a controller can judge ([`Admission::Admitted`], with why).

use serde_json::{Value, json};

pub struct Invalid {
    pub name: &'static str,
    /// A McallTask's spec, or a McallWorkflow's.
    pub spec: Value,
    /// The condition reason the controller gives.
    pub reason: &'static str,
    /// What both the status message and the refusal contain.
    pub problem: &'static str,
    pub admission: Admission,
}

pub enum Admission {
    Refused,
    /// Admitted, because what is wrong may be put right after the object is applied.
    Admitted(&'static str),
}

fn refused(
    name: &'static str,
    spec: Value,
    reason: &'static str,
    problem: &'static str,
) -> Invalid {
    Invalid {
        name,
        spec,
        reason,
        problem,
        admission: Admission::Refused,
    }
}

/// A `cmd` task running `true`, with `extra` fields.
fn cmd(extra: Value) -> Value {
    let mut spec = json!({"type": "cmd", "input": "true"});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    spec
}

pub fn tasks() -> Vec<Invalid> {
    // More inputs than status.inputResults can hold would be a result the API server refuses.
    let too_many = format!("[{}]", vec![r#"{"input": "true"}"#; 257].join(","));
    vec![
        refused(
            "bad-regex",
            cmd(json!({"expect": "regex:(unclosed"})),
            "InvalidSpec",
            "spec.expect",
        ),
        refused(
            "bad-json",
            json!({"type": "cmd", "input": "[{\"input\": \"true\""}),
            "InvalidSpec",
            "spec.input",
        ),
        refused(
            "bad-url",
            json!({"type": "get", "input": "not a url"}),
            "InvalidSpec",
            "spec.input",
        ),
        refused(
            "bad-jsonpath",
            json!({"type": "cmd", "input": "echo {}", "outputValidation": {"jsonPath": "$[", "expectedJsonValue": "1"}}),
            "InvalidSpec",
            "spec.outputValidation.jsonPath",
        ),
        refused(
            "bad-http-regex",
            json!({"type": "get", "input": "http://127.0.0.1:1/", "httpValidation": {"expectedResponseBody": "(", "responseBodyMatch": "regex"}}),
            "InvalidSpec",
            "spec.httpValidation.expectedResponseBody",
        ),
        refused(
            "too-many-inputs",
            json!({"type": "cmd", "input": too_many}),
            "InvalidSpec",
            "257 inputs",
        ),
        refused(
            "undefined-placeholder",
            json!({"type": "cmd", "inputTemplate": "echo ${HOST} ${PORT}",
                   "inputSources": [{"name": "HOST", "taskRef": "bad-regex", "default": "db"}]}),
            "InvalidSpec",
            "spec.inputTemplate: ${PORT} names no inputSources entry",
        ),
        refused(
            "narcissus",
            cmd(json!({"dependencies": ["narcissus"]})),
            "InvalidSpec",
            "spec.dependencies: narcissus → narcissus",
        ),
        refused(
            "bad-cron",
            cmd(json!({"schedule": "61 * * * *"})),
            "InvalidSchedule",
            "spec.schedule",
        ),
        refused(
            "bad-zone",
            cmd(json!({"schedule": "@daily", "timeZone": "Mars/Olympus_Mons"})),
            "InvalidSchedule",
            "spec.timeZone",
        ),
        Invalid {
            name: "no-secret",
            spec: cmd(
                json!({"environmentFrom": [{"name": "X", "secretKeyRef": {"name": "ghost", "key": "k"}}]}),
            ),
            reason: "InvalidSpec",
            problem: "spec.environmentFrom[0].secretKeyRef",
            admission: Admission::Admitted(
                "a Secret may be applied after the task that reads it, as for a Pod",
            ),
        },
    ]
}

/// McallWorkflow specs (`tasks` and the rest).
pub fn workflows() -> Vec<Invalid> {
    let steps = |tasks: Value| json!({"tasks": tasks});
    vec![
        refused(
            "cycle",
            steps(json!([
                {"name": "a", "type": "cmd", "input": "true", "dependencies": ["c"]},
                {"name": "b", "type": "cmd", "input": "true", "dependencies": ["a"]},
                {"name": "c", "type": "cmd", "input": "true", "dependencies": ["b"]},
            ])),
            "InvalidSpec",
            "spec.tasks: cycle a → b → c → a",
        ),
        refused(
            "unknown-dependent",
            steps(json!([
                {"name": "a", "type": "cmd", "input": "true"},
                {"name": "b", "type": "cmd", "input": "true", "dependencies": ["a"],
                 "condition": {"dependentTask": "zz", "when": "failure"}},
            ])),
            "InvalidSpec",
            "spec.tasks[1].condition.dependentTask",
        ),
        refused(
            "stray-condition",
            steps(json!([
                {"name": "a", "type": "cmd", "input": "true"},
                {"name": "b", "type": "cmd", "input": "true", "condition": {"dependentTask": "a", "when": "success"}},
            ])),
            "InvalidSpec",
            "spec.tasks[1].condition.dependentTask",
        ),
        refused(
            "bad-step",
            steps(json!([{"name": "a", "type": "cmd", "input": "true", "expect": "regex:("}])),
            "InvalidSpec",
            "spec.tasks[0]",
        ),
        refused(
            "not-an-ancestor",
            steps(json!([
                {"name": "a", "type": "cmd", "input": "true"},
                {"name": "b", "type": "cmd", "inputTemplate": "echo ${X}",
                 "inputSources": [{"name": "X", "taskRef": "a"}]},
            ])),
            "InvalidSpec",
            "spec.tasks[1].inputSources[0].taskRef",
        ),
        refused(
            "undefined-placeholder",
            steps(json!([
                {"name": "a", "type": "cmd", "input": "true"},
                {"name": "b", "type": "cmd", "dependencies": ["a"], "inputTemplate": "echo ${Y}",
                 "inputSources": [{"name": "X", "taskRef": "a"}]},
            ])),
            "InvalidSpec",
            "spec.tasks[1]: step \"b\": spec.inputTemplate: ${Y} names no inputSources entry",
        ),
        refused(
            "other-namespace",
            steps(json!([{"name": "a", "taskRef": {"name": "t", "namespace": "kube-system"}}])),
            "InvalidSpec",
            "spec.tasks[0].taskRef.namespace",
        ),
        Invalid {
            name: "missing-template",
            spec: steps(json!([{"name": "a", "taskRef": {"name": "no-such-task"}}])),
            reason: "InvalidSpec",
            problem: "does not exist",
            admission: Admission::Admitted("a step's template may be created after the workflow"),
        },
    ]
}
