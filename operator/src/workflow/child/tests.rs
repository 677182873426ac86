use super::*;
use crate::workflow::fixtures::workflow;

#[test]
fn a_step_overrides_its_template_and_environments_merge_step_last() {
    let wf = workflow(
        "environment: {A: wf, B: wf, C: wf}
resources: {limits: {cpu: '1'}}
tasks:
- name: probe
  taskRef: {name: tmpl}
  timeout: 5
  environment: {C: step}",
    );
    let template: McallTaskSpec = serde_json::from_value(serde_json::json!({
        "type": "get", "input": "http://x", "timeout": 60, "retryCount": 2,
        "schedule": "@every 10s", "dependencies": ["other"], "environment": {"B": "tmpl", "C": "tmpl"}
    }))
    .unwrap();
    let child = build(&wf, "r3", &wf.spec.tasks[0], Some(&template)).unwrap();
    assert_eq!(child.metadata.name.as_deref(), Some("wf.r3.probe"));
    let spec = &child.spec;
    assert_eq!(spec.timeout, 5, "the step's own field wins");
    assert_eq!(
        spec.retry_count, 2,
        "the template's stays where the step sets none"
    );
    assert_eq!(spec.input.as_deref(), Some("http://x"));
    assert_eq!(spec.schedule, None, "a step runs once");
    assert_eq!(spec.dependencies, None, "the workflow orders steps");
    let env = spec.environment.clone().unwrap();
    assert_eq!(
        (env["A"].as_str(), env["B"].as_str(), env["C"].as_str()),
        ("wf", "tmpl", "step")
    );
    assert_eq!(
        spec.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.cpu.as_deref()),
        Some("1"),
        "the workflow's resources when neither step nor template sets any"
    );
    let owner = &child.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("McallWorkflow", "u1", Some(true))
    );
    let labels = child.metadata.labels.unwrap();
    assert_eq!(labels[RUN_LABEL], "r3");
    assert_eq!(labels[STEP_LABEL], "probe");
    assert_eq!(labels[WORKFLOW_LABEL], "wf");
}

#[test]
fn input_sources_name_the_sibling_children_of_the_same_run() {
    let wf = workflow(
        "tasks:
- {name: a, type: cmd, input: echo 1}
- {name: b, type: cmd, inputTemplate: 'echo ${X}', dependencies: [a], inputSources: [{name: X, taskRef: a}]}",
    );
    let child = build(&wf, "r1", &wf.spec.tasks[1], None).unwrap();
    let sources = child.spec.input_sources.unwrap();
    assert_eq!(sources[0].task_ref, "wf.r1.a");
}

#[test]
fn long_names_are_shortened_with_a_stable_digest() {
    let long = "w".repeat(250);
    let name = child_name(&long, "r12", "step");
    assert!(name.len() <= 253, "{}", name.len());
    assert!(name.ends_with(".r12.step"));
    assert_eq!(name, child_name(&long, "r12", "step"));
    let label = workflow_label(&long);
    assert!(label.len() <= 63);
    assert_ne!(workflow_label(&long), workflow_label(&"x".repeat(250)));
    assert_eq!(workflow_label("short"), "short");
}

#[test]
fn a_step_that_breaks_its_template_s_rules_is_refused() {
    let wf = workflow("tasks: [{name: s, taskRef: {name: t}, body: '{}'}]");
    let template: McallTaskSpec =
        serde_json::from_value(serde_json::json!({"type": "get", "input": "http://x"})).unwrap();
    let problem = build(&wf, "r1", &wf.spec.tasks[0], Some(&template)).unwrap_err();
    assert_eq!(
        problem.0,
        "step \"s\" sets body, which only a post task may"
    );
}

#[test]
fn a_step_s_input_replaces_a_template_s_input_template() {
    let wf = workflow("tasks: [{name: s, taskRef: {name: t}, input: echo mine}]");
    let template: McallTaskSpec = serde_json::from_value(serde_json::json!({
        "type": "cmd", "inputTemplate": "echo ${X}", "inputSources": [{"name": "X", "taskRef": "other"}]
    }))
    .unwrap();
    let spec = build(&wf, "r1", &wf.spec.tasks[0], Some(&template))
        .unwrap()
        .spec;
    assert_eq!(spec.input.as_deref(), Some("echo mine"));
    assert_eq!((spec.input_template, spec.input_sources), (None, None));
}

#[test]
fn environment_from_merges_by_name_and_the_step_s_own_variables_win() {
    let wf = workflow(
        "tasks:
- name: s
  taskRef: {name: t}
  environment: {TOKEN: plain}
  environmentFrom: [{name: DB, secretKeyRef: {name: step-db, key: url}}]",
    );
    let template: McallTaskSpec = serde_json::from_value(serde_json::json!({
        "type": "cmd", "input": "env",
        "environmentFrom": [
            {"name": "DB", "secretKeyRef": {"name": "tmpl-db", "key": "url"}},
            {"name": "TOKEN", "secretKeyRef": {"name": "tmpl", "key": "token"}},
            {"name": "KEEP", "configMapKeyRef": {"name": "tmpl", "key": "keep"}}
        ]
    }))
    .unwrap();
    let spec = build(&wf, "r1", &wf.spec.tasks[0], Some(&template))
        .unwrap()
        .spec;
    let from: Vec<(String, String)> = spec
        .environment_from
        .unwrap()
        .into_iter()
        .map(|e| {
            let source = e.secret_key_ref.or(e.config_map_key_ref).unwrap().name;
            (e.name, source)
        })
        .collect();
    assert_eq!(
        from,
        [
            ("KEEP".into(), "tmpl".into()),
            ("DB".into(), "step-db".into())
        ]
    );
    assert_eq!(spec.environment.unwrap()["TOKEN"], "plain");
}
