//! What admission refuses: the controllers' own checks, called here without a Kubernetes client,
//! so a spec the webhook admits is one the controllers would run and a refusal says what the
//! controller would have put in `status` (`field: problem`). Pure.
//!
//! Left to the controllers, because only they see it: other tasks (a dependency cycle through
//! several tasks, a template's source values), Secrets and ConfigMaps (`environmentFrom`), and a
//! workflow step's `taskRef` template (it may be created after the workflow).

use k8s_openapi::jiff::Timestamp;
use mcall_generated::{McallTask, McallTaskSpec, McallWorkflow};

use crate::controller::{dependency_cycle_message, own_cycle, validate_with};
use crate::schedule::Schedule;
use crate::workflow::dag::{Dag, SpecProblem};
use crate::workflow::observed::Observed;
use crate::workflow::validate::{check_own_fields, check_template, step_compiles};

/// The first problem of a McallTask, as `field: problem`.
pub fn task(task: &McallTask) -> Result<(), String> {
    if let Some(cycle) = own_cycle(task) {
        return Err(dependency_cycle_message(&cycle));
    }
    // No other task is known: a template whose sources have no value yet is not judged, as
    // the controller does not judge it until they have one.
    if let Some(message) = validate_with(task, |_| None).invalid_spec {
        return Err(message);
    }
    if let Some(expr) = &task.spec.schedule {
        Schedule::parse(expr, task.spec.time_zone.as_deref()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The first problem of a McallWorkflow, as `field: problem`. `cross_namespace_templates` is
/// the operator's flag: a step naming another namespace's template is refused unless it is set.
pub fn workflow(wf: &McallWorkflow, cross_namespace_templates: bool) -> Result<(), String> {
    workflow_problem(wf, cross_namespace_templates).map_err(|p| p.to_string())
}

fn workflow_problem(
    wf: &McallWorkflow,
    cross_namespace_templates: bool,
) -> Result<(), SpecProblem> {
    let no_templates = |_: &str, _: &str| -> Option<McallTaskSpec> { None };
    let observed = Observed {
        workflow: wf,
        children: Vec::new(),
        template: &no_templates,
        cross_namespace_templates,
        // Unused by the checks; they judge the spec, not its runs.
        now: Timestamp::UNIX_EPOCH,
    };
    Dag::build(&wf.spec.tasks)?;
    for (i, step) in wf.spec.tasks.iter().enumerate() {
        match check_template(&observed, i, step) {
            // Missing here: the webhook has no task cache, and the template may come later.
            Err(problem) if !problem.transient => return Err(problem),
            _ => {}
        }
    }
    check_own_fields(wf)?;
    for (i, step) in wf.spec.tasks.iter().enumerate() {
        // A taskRef step's spec is mostly its template's, which is judged when a run starts.
        if step.task_ref.is_none() {
            step_compiles(&observed, i, step)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_of(yaml: &str) -> McallTask {
        let text = format!(
            "apiVersion: mcall.tz.io/v1\nkind: McallTask\nmetadata: {{name: t, namespace: ns}}\nspec:\n{yaml}"
        );
        serde_saphyr::from_str(&text).unwrap()
    }

    fn workflow_of(yaml: &str) -> McallWorkflow {
        let text = format!(
            "apiVersion: mcall.tz.io/v1\nkind: McallWorkflow\nmetadata: {{name: w, namespace: ns}}\nspec:\n{yaml}"
        );
        serde_saphyr::from_str(&text).unwrap()
    }

    fn refusal(result: Result<(), String>) -> String {
        result.expect_err("refused")
    }

    #[test]
    fn a_valid_task_is_admitted() {
        task(&task_of(
            "  type: cmd\n  input: 'true'\n  schedule: '*/5 * * * *'\n",
        ))
        .unwrap();
    }

    #[test]
    fn task_refusals_name_the_field() {
        let cases = [
            (
                "  type: cmd\n  input: 'true'\n  expect: 'regex:('\n",
                "spec.expect",
            ),
            ("  type: cmd\n  input: '[{\"input\": 1'\n", "spec.input"),
            (
                "  type: cmd\n  input: 'true'\n  schedule: 'x y'\n",
                "spec.schedule",
            ),
            (
                "  type: cmd\n  input: 'true'\n  schedule: '@daily'\n  timeZone: Mars/Base\n",
                "spec.timeZone",
            ),
            (
                "  type: cmd\n  input: 'true'\n  dependencies: [t]\n",
                "spec.dependencies: t → t",
            ),
        ];
        for (yaml, field) in cases {
            let message = refusal(task(&task_of(yaml)));
            assert!(message.starts_with(field), "{yaml}: {message}");
        }
    }

    #[test]
    fn a_template_whose_sources_have_no_value_yet_is_admitted() {
        let yaml = "  type: get\n  inputTemplate: 'http://${HOST}/'\n  inputSources: [{name: HOST, taskRef: other, field: output}]\n";
        task(&task_of(yaml)).unwrap();
    }

    #[test]
    fn workflow_refusals_name_the_field() {
        let cases = [
            (
                "  tasks:\n  - {name: a, type: cmd, input: 'true', dependencies: [b]}\n  - {name: b, type: cmd, input: 'true', dependencies: [a]}\n",
                "spec.tasks: cycle",
            ),
            (
                "  tasks:\n  - {name: a, type: cmd, input: 'true'}\n  - {name: b, type: cmd, input: 'true', condition: {dependentTask: a, when: success}}\n",
                "spec.tasks[1].condition.dependentTask",
            ),
            (
                "  tasks:\n  - {name: a, type: cmd, input: 'true', expect: 'regex:('}\n",
                "spec.tasks[0]",
            ),
            (
                "  schedule: nope\n  tasks:\n  - {name: a, type: cmd, input: 'true'}\n",
                "spec.schedule",
            ),
            (
                "  tasks:\n  - {name: a, taskRef: {name: t, namespace: other}}\n",
                "spec.tasks[0].taskRef.namespace",
            ),
        ];
        for (yaml, field) in cases {
            let message = refusal(workflow(&workflow_of(yaml), false));
            assert!(message.starts_with(field), "{yaml}: {message}");
        }
    }

    #[test]
    fn a_missing_template_is_left_to_the_controller() {
        let yaml = "  tasks:\n  - {name: a, taskRef: {name: not-yet}}\n";
        workflow(&workflow_of(yaml), false).unwrap();
    }
}
