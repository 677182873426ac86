//! What admission refuses: the controllers' own checks, called here without a Kubernetes client
//! (the server hands over the tasks a dependency cycle would run through), so a spec the
//! webhook admits is one the controllers would run and a refusal says what the controller
//! would have put in `status` (`field: problem`). Pure.
//!
//! Left to the controllers: a template's source values (they come from runs), Secrets and
//! ConfigMaps (`environmentFrom`: they may be applied after the task, as for a Pod), and a
//! workflow step's `taskRef` template (it may be created after the workflow).

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use mcall_generated::{McallTask, McallTaskSpec, McallWorkflow, TaskType};

use super::settings::Settings;
use crate::controller::{
    COMMANDS_NOT_ALLOWED, dependency_cycle, dependency_cycle_message, validate_with,
};
use crate::schedule::Schedule;
use crate::workflow::dag::{Dag, SpecProblem};
use crate::workflow::observed::Observed;
use crate::workflow::validate::{check_own_fields, check_template, step_compiles};

/// The first problem of a McallTask, as `field: problem`. `tasks` are the other tasks of its
/// namespace that its dependencies lead to: a cycle through them is refused as the controller
/// would report it.
pub fn task(
    task: &McallTask,
    settings: &Settings,
    tasks: &dyn Fn(&str) -> Option<Arc<McallTask>>,
) -> Result<(), String> {
    // A scheduled task never waits for its dependencies (each tick is gated on them), so it
    // closes no cycle, as the controller judges it.
    if task.spec.schedule.is_none()
        && let Some(cycle) = dependency_cycle(task, tasks)
    {
        return Err(dependency_cycle_message(&cycle));
    }
    // A template's source values are not looked up: one that has no value yet is not judged,
    // as the controller does not judge it until it has one.
    let validation = validate_with(task, |_| None);
    if let Some(message) = validation.invalid_spec {
        return Err(message);
    }
    if validation.uses_commands {
        commands_allowed(settings, &task.namespace().unwrap_or_default(), "spec.type")?;
    }
    if let Some(expr) = &task.spec.schedule {
        Schedule::parse(expr, task.spec.time_zone.as_deref()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Refuses commands in a namespace where the operator does not run them, as the controller
/// would (`CommandsNotAllowed`).
fn commands_allowed(settings: &Settings, namespace: &str, field: &str) -> Result<(), String> {
    match settings.commands.allows(namespace) {
        true => Ok(()),
        false => Err(format!("{field}: {COMMANDS_NOT_ALLOWED}")),
    }
}

/// The first problem of a McallWorkflow, as `field: problem`. A step naming another
/// namespace's template is refused unless `settings.cross_namespace_templates`.
pub fn workflow(wf: &McallWorkflow, settings: &Settings) -> Result<(), String> {
    workflow_problem(wf, settings.cross_namespace_templates).map_err(|p| p.to_string())?;
    let namespace = wf.namespace().unwrap_or_default();
    for (i, step) in wf.spec.tasks.iter().enumerate() {
        // A step's own type overrides its template's; a template's own type is judged by the
        // controller, as the template may not exist yet.
        if step.r#type == Some(TaskType::Cmd) {
            commands_allowed(settings, &namespace, &format!("spec.tasks[{i}].type"))?;
        }
    }
    Ok(())
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

    /// Judged alone, with commands allowed.
    fn alone(t: &McallTask) -> Result<(), String> {
        task(t, &Settings::default(), &|_| None)
    }

    fn no_commands() -> Settings {
        Settings {
            commands: crate::config::CommandPolicy::Namespaces(vec!["elsewhere".into()]),
            ..Settings::default()
        }
    }

    #[test]
    fn a_valid_task_is_admitted() {
        alone(&task_of(
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
            (
                "  type: cmd\n  inputTemplate: 'echo ${X} ${Y}'\n  inputSources: [{name: X, taskRef: a}]\n",
                "spec.inputTemplate: ${Y} names no inputSources entry",
            ),
        ];
        for (yaml, field) in cases {
            let message = refusal(alone(&task_of(yaml)));
            assert!(message.starts_with(field), "{yaml}: {message}");
        }
    }

    #[test]
    fn a_template_whose_sources_have_no_value_yet_is_admitted() {
        let yaml = "  type: get\n  inputTemplate: 'http://${HOST}/'\n  inputSources: [{name: HOST, taskRef: other, field: output}]\n";
        alone(&task_of(yaml)).unwrap();
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
            (
                "  tasks:\n  - {name: a, type: cmd, input: 'true'}\n  - {name: b, type: cmd, dependencies: [a], inputTemplate: 'echo ${V}', inputSources: [{name: W, taskRef: a}]}\n",
                "spec.tasks[1]: step \"b\": spec.inputTemplate: ${V} names no inputSources entry",
            ),
        ];
        for (yaml, field) in cases {
            let message = refusal(workflow(&workflow_of(yaml), &Settings::default()));
            assert!(message.starts_with(field), "{yaml}: {message}");
        }
    }

    #[test]
    fn a_cycle_through_other_waiting_tasks_is_refused_and_a_finished_one_breaks_it() {
        let mut b = task_of("  type: cmd\n  input: 'true'\n  dependencies: [c]\n");
        b.metadata.name = Some("b".into());
        let mut c = task_of("  type: cmd\n  input: 'true'\n  dependencies: [t]\n");
        c.metadata.name = Some("c".into());
        let t = task_of("  type: cmd\n  input: 'true'\n  dependencies: [b]\n");
        let waiting = |name: &str| match name {
            "b" => Some(Arc::new(b.clone())),
            "c" => Some(Arc::new(c.clone())),
            _ => None,
        };
        assert_eq!(
            refusal(task(&t, &Settings::default(), &waiting)),
            dependency_cycle_message(&["t".into(), "b".into(), "c".into(), "t".into()])
        );
        // c has succeeded for its generation: it waits for nothing, so t would run.
        let mut done = c.clone();
        done.metadata.generation = Some(1);
        done.status = Some(mcall_generated::McallTaskStatus {
            observed_generation: Some(1),
            phase: Some(mcall_generated::Phase::Succeeded),
            ..Default::default()
        });
        let finished = |name: &str| match name {
            "b" => Some(Arc::new(b.clone())),
            "c" => Some(Arc::new(done.clone())),
            _ => None,
        };
        task(&t, &Settings::default(), &finished).unwrap();
    }

    #[test]
    fn commands_are_refused_where_the_operator_does_not_run_them() {
        let cmd = task_of("  type: cmd\n  input: 'true'\n");
        assert_eq!(
            refusal(task(&cmd, &no_commands(), &|_| None)),
            format!("spec.type: {COMMANDS_NOT_ALLOWED}")
        );
        let get = task_of("  type: get\n  input: 'http://example.invalid/'\n");
        task(&get, &no_commands(), &|_| None).unwrap();
        let steps = workflow_of(
            "  tasks:\n  - {name: a, type: get, input: 'http://x.invalid/'}\n  - {name: b, type: cmd, input: 'true'}\n",
        );
        assert!(
            refusal(workflow(&steps, &no_commands())).starts_with("spec.tasks[1].type: "),
            "the cmd step is named"
        );
        workflow(&steps, &Settings::default()).unwrap();
    }

    #[test]
    fn a_missing_template_is_left_to_the_controller() {
        let yaml = "  tasks:\n  - {name: a, taskRef: {name: not-yet}}\n";
        workflow(&workflow_of(yaml), &Settings::default()).unwrap();
    }
}
