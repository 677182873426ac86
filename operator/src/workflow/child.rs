//! The child McallTask of one step in one run: its name, labels, owner, and its spec — the
//! template's (for `taskRef`) overridden by the step's own fields, with the workflow's
//! environment and resources underneath. Pure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use mcall_generated::{McallTask, McallTaskSpec, McallWorkflow, WorkflowTask};
use serde_json::{Map, Value};

/// The workflow a child belongs to (its name, or a digest for a name over 63 characters).
pub const WORKFLOW_LABEL: &str = "mcall.tz.io/workflow";
/// The run id of a child.
pub const RUN_LABEL: &str = "mcall.tz.io/run";
/// The step name of a child.
pub const STEP_LABEL: &str = "mcall.tz.io/step";
/// Marks a McallTask as a template: the McallTask controller does not run it.
pub const TEMPLATE_LABEL: &str = "mcall.tz.io/template";

/// The step's own fields that are not McallTask fields; everything else a step sets overrides
/// the template.
const STEP_ONLY_FIELDS: [&str; 4] = ["name", "taskRef", "dependencies", "condition"];
/// Template fields a child never takes: the workflow schedules, orders and keeps history.
const NOT_IN_A_STEP: [&str; 9] = [
    "schedule",
    "timeZone",
    "suspend",
    "concurrencyPolicy",
    "startingDeadlineSeconds",
    "successfulRunsHistoryLimit",
    "failedRunsHistoryLimit",
    "dependencies",
    "name",
];

/// The name of the child of `step` in `run`: `<workflow>.<run>.<step>`. Run ids and step names
/// hold no dot, so read from the right it names one workflow, run and step (with dashes,
/// workflow `a` step `b-r2-c` and workflow `a-r1-b` step `c` would share a name). A name longer
/// than Kubernetes allows keeps the workflow's start and a digest of it.
pub fn child_name(workflow: &str, run: &str, step: &str) -> String {
    let name = format!("{workflow}.{run}.{step}");
    if name.len() <= 253 {
        return name;
    }
    let keep = 253 - (run.len() + step.len() + 2 + 9);
    let prefix = workflow[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{:08x}.{run}.{step}", digest(workflow))
}

/// The value of [`WORKFLOW_LABEL`]: label values are at most 63 characters.
pub fn workflow_label(workflow: &str) -> String {
    if workflow.len() <= 63 {
        return workflow.to_owned();
    }
    let prefix = workflow[..54].trim_end_matches(['-', '.']);
    format!("{prefix}-{:08x}", digest(workflow))
}

/// FNV-1a: stable across builds and platforms (std's hasher is not).
pub fn digest(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Why a child cannot be built.
#[derive(Debug, PartialEq, Eq)]
pub struct ChildProblem(pub String);

/// The child task of `step` in `run`. `template` is the referenced McallTask's spec, for a
/// `taskRef` step.
pub fn build(
    workflow: &McallWorkflow,
    run: &str,
    step: &WorkflowTask,
    template: Option<&McallTaskSpec>,
) -> Result<McallTask, ChildProblem> {
    let wf_name = workflow.name_any();
    let spec = merged_spec(workflow, run, step, template)?;
    let labels = BTreeMap::from([
        (WORKFLOW_LABEL.to_owned(), workflow_label(&wf_name)),
        (RUN_LABEL.to_owned(), run.to_owned()),
        (STEP_LABEL.to_owned(), step.name.clone()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "mcall".to_owned(),
        ),
    ]);
    let owner = OwnerReference {
        api_version: McallWorkflow::api_version(&()).into_owned(),
        kind: McallWorkflow::kind(&()).into_owned(),
        name: wf_name.clone(),
        uid: workflow.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    Ok(McallTask {
        metadata: ObjectMeta {
            name: Some(child_name(&wf_name, run, &step.name)),
            namespace: workflow.namespace(),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    })
}

fn merged_spec(
    workflow: &McallWorkflow,
    run: &str,
    step: &WorkflowTask,
    template: Option<&McallTaskSpec>,
) -> Result<McallTaskSpec, ChildProblem> {
    let mut spec = template
        .map(|t| as_object(serde_json::to_value(t).expect("a spec serializes")))
        .unwrap_or_default();
    for field in NOT_IN_A_STEP {
        spec.remove(field);
    }
    let mut own = as_object(serde_json::to_value(step).expect("a step serializes"));
    own.retain(|key, value| !STEP_ONLY_FIELDS.contains(&key.as_str()) && !value.is_null());
    // Only the step's own sources name steps; a template's name McallTasks.
    rename_input_sources(&mut own, &workflow.name_any(), run);
    if own.contains_key("input") && !own.contains_key("inputTemplate") {
        // The step's input replaces the template's, which may be an inputTemplate (that wins).
        spec.remove("inputTemplate");
        spec.remove("inputSources");
    }
    let step_env: Vec<&String> = step.environment.iter().flatten().map(|(k, _)| k).collect();
    let environment = layer_environment(workflow, &mut spec, &mut own);
    let environment_from = layer_environment_from(&mut spec, &mut own, &step_env);
    spec.extend(own);
    if !environment.is_empty() {
        spec.insert("environment".into(), Value::Object(environment));
    }
    if !environment_from.is_empty() {
        spec.insert("environmentFrom".into(), Value::Array(environment_from));
    }
    if !spec.contains_key("resources")
        && let Some(resources) = &workflow.spec.resources
    {
        let resources = serde_json::to_value(resources).expect("serializes");
        spec.insert("resources".into(), resources);
    }
    let spec: McallTaskSpec = serde_json::from_value(Value::Object(spec))
        .map_err(|e| ChildProblem(format!("step {:?}: {e}", step.name)))?;
    check_spec(&step.name, &spec)?;
    Ok(spec)
}

fn as_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `environment`: the workflow's, then the template's, then the step's own, the later winning.
fn layer_environment(
    workflow: &McallWorkflow,
    template: &mut Map<String, Value>,
    own: &mut Map<String, Value>,
) -> Map<String, Value> {
    let mut environment: Map<String, Value> = workflow
        .spec
        .environment
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    for layer in [template.remove("environment"), own.remove("environment")] {
        environment.extend(layer.map(as_object).unwrap_or_default());
    }
    environment
}

/// `environmentFrom`: the template's entries, replaced by name by the step's; a template entry
/// whose variable the step sets in `environment` goes (the step's own value wins, and an
/// `environmentFrom` value would beat any `environment` value).
fn layer_environment_from(
    template: &mut Map<String, Value>,
    own: &mut Map<String, Value>,
    step_env: &[&String],
) -> Vec<Value> {
    let entries = |layer: Option<Value>| match layer {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    };
    let name = |entry: &Value| entry.get("name").and_then(Value::as_str).map(str::to_owned);
    let mine = entries(own.remove("environmentFrom"));
    let set_by_step: Vec<String> = mine.iter().filter_map(name).collect();
    let overridden = |n: &String| set_by_step.contains(n) || step_env.contains(&n);
    let mut merged: Vec<Value> = entries(template.remove("environmentFrom"))
        .into_iter()
        .filter(|e| name(e).is_none_or(|n| !overridden(&n)))
        .collect();
    merged.extend(mine);
    merged
}

/// McallTask's own rules (its CEL rules), which the step merged onto its template may break: the
/// API server would refuse the child.
fn check_spec(step: &str, spec: &McallTaskSpec) -> Result<(), ChildProblem> {
    let problem = if spec.input.is_none() && spec.input_template.is_none() {
        Some("has no input (nor inputTemplate)")
    } else if spec.body.is_some() && spec.r#type != mcall_generated::TaskType::Post {
        Some("sets body, which only a post task may")
    } else if spec.input_template.is_some() && spec.input_sources.is_none() {
        Some("has an inputTemplate without inputSources")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ChildProblem(format!("step {step:?} {problem}"))),
        None => Ok(()),
    }
}

/// A step's input sources name steps; its child reads the sibling child of the same run.
fn rename_input_sources(spec: &mut Map<String, Value>, workflow: &str, run: &str) {
    let Some(Value::Array(sources)) = spec.get_mut("inputSources") else {
        return;
    };
    for source in sources {
        if let Some(Value::String(step)) = source.get_mut("taskRef") {
            *step = child_name(workflow, run, step);
        }
    }
}

#[cfg(test)]
mod tests;
