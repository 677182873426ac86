//! What the schema cannot check about a workflow, checked before a run starts and on every
//! reconcile of a run: the graph ([`Dag`]), the templates, the schedule and the retry delay.
//! An invalid workflow creates nothing.

use std::time::Duration;

use mcall_engine::TaskPlan;
use mcall_generated::{McallWorkflow, WorkflowTask};

use super::child;
use super::dag::{Dag, SpecProblem};
use super::observed::Observed;
use super::schedule::parse_duration;
use crate::request::{ResolvedEnvironment, task_request};
use crate::schedule::Schedule;

/// How often a workflow whose template is missing is looked at again.
pub const MISSING_TEMPLATE_RECHECK: Duration = Duration::from_secs(10);

pub fn check<'a>(o: &Observed<'a>) -> Result<Dag<'a>, SpecProblem> {
    let wf = o.workflow;
    let dag = Dag::build(&wf.spec.tasks)?;
    for (i, step) in wf.spec.tasks.iter().enumerate() {
        check_template(o, i, step)?;
    }
    check_own_fields(wf)?;
    Ok(dag)
}

/// The fields whose check needs nothing but the workflow: the schedule and the retry delay.
pub fn check_own_fields(wf: &McallWorkflow) -> Result<(), SpecProblem> {
    check_schedule(wf)?;
    if let Some(policy) = &wf.spec.retry_policy {
        parse_duration(&policy.retry_delay)
            .map_err(|message| SpecProblem::at("spec.retryPolicy.retryDelay", message))?;
    }
    Ok(())
}

/// Step `i`'s `taskRef`, if any: in a namespace the operator may take templates from, and
/// cached (a missing template is a transient problem: it may be created after the workflow).
pub fn check_template(o: &Observed<'_>, i: usize, step: &WorkflowTask) -> Result<(), SpecProblem> {
    let own = o.workflow.metadata.namespace.clone().unwrap_or_default();
    let Some(reference) = &step.task_ref else {
        return Ok(());
    };
    let field = format!("spec.tasks[{i}].taskRef");
    let namespace = o.template_namespace(reference);
    if namespace != own && !o.cross_namespace_templates {
        let message = format!(
            "the template {namespace}/{} is in another namespace; the operator runs templates of the workflow's own namespace only (--allow-cross-namespace-templates)",
            reference.name
        );
        return Err(SpecProblem::at(format!("{field}.namespace"), message));
    }
    if (o.template)(&namespace, &reference.name).is_none() {
        // Templates are read from the task cache of the workflow's namespace.
        let unwatched = if namespace == own {
            ""
        } else {
            " in the namespaces the operator watches with the workflow's"
        };
        let message = format!(
            "the McallTask {namespace}/{} does not exist{unwatched} (looked for again every {}s)",
            reference.name,
            MISSING_TEMPLATE_RECHECK.as_secs()
        );
        return Err(SpecProblem {
            transient: true,
            ..SpecProblem::at(format!("{field}.name"), message)
        });
    }
    Ok(())
}

fn check_schedule(wf: &McallWorkflow) -> Result<(), SpecProblem> {
    let Some(expr) = &wf.spec.schedule else {
        return Ok(());
    };
    Schedule::parse(expr, wf.spec.time_zone.as_deref())
        .map(|_| ())
        .map_err(|e| SpecProblem::at(e.field_path(), e.to_string()))
}

/// Before a run starts: each step's task, as it would be created, compiles as the McallTask
/// controller compiles it (the same function), so a step that could never run (an invalid
/// `expect` regex, malformed multi-input JSON, a non-URL for get/post) fails the workflow with
/// nothing created. A step filled from `inputTemplate` is judged when it runs.
pub fn steps_compile(o: &Observed<'_>) -> Result<(), SpecProblem> {
    for (i, step) in o.workflow.spec.tasks.iter().enumerate() {
        step_compiles(o, i, step)?;
    }
    Ok(())
}

/// Step `i` of [`steps_compile`], with its template as `o` has it.
pub fn step_compiles(o: &Observed<'_>, i: usize, step: &WorkflowTask) -> Result<(), SpecProblem> {
    let template = o.template_of(step);
    let field = format!("spec.tasks[{i}]");
    let task = child::build(o.workflow, "r0", step, template.as_ref())
        .map_err(|problem| SpecProblem::at(&field, problem.0))?;
    if let Some(error) = crate::controller::undefined_template_placeholder(&task.spec) {
        return Err(SpecProblem::at(
            &field,
            format!("step {:?}: {error}", step.name),
        ));
    }
    if task.spec.input_template.is_some() {
        return Ok(());
    }
    TaskPlan::compile(task_request(&task.spec, ResolvedEnvironment::default()))
        .map_err(|e| SpecProblem::at(&field, format!("step {:?}: {e}", step.name)))?;
    Ok(())
}
