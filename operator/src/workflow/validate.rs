//! What the schema cannot check about a workflow, checked before a run starts and on every
//! reconcile of a run: the graph ([`Dag`]), the templates, the schedule and the retry delay.
//! An invalid workflow creates nothing.

use mcall_generated::McallWorkflow;

use super::dag::{Dag, SpecProblem};
use super::plan::Observed;
use super::schedule::parse_duration;
use crate::schedule::Schedule;

pub fn check<'a>(o: &Observed<'a>) -> Result<Dag<'a>, SpecProblem> {
    let wf = o.workflow;
    let dag = Dag::build(&wf.spec.tasks)?;
    check_templates(o)?;
    check_schedule(wf)?;
    if let Some(policy) = &wf.spec.retry_policy {
        parse_duration(&policy.retry_delay).map_err(|message| SpecProblem {
            field: "spec.retryPolicy.retryDelay".into(),
            message,
        })?;
    }
    Ok(dag)
}

fn check_templates(o: &Observed<'_>) -> Result<(), SpecProblem> {
    let own = o.workflow.metadata.namespace.clone().unwrap_or_default();
    for (i, step) in o.workflow.spec.tasks.iter().enumerate() {
        let Some(reference) = &step.task_ref else {
            continue;
        };
        let field = format!("spec.tasks[{i}].taskRef");
        let namespace = reference.namespace.clone().unwrap_or_else(|| own.clone());
        if namespace != own && !o.cross_namespace_templates {
            let message = format!(
                "the template {namespace}/{} is in another namespace; the operator runs templates of the workflow's own namespace only (--allow-cross-namespace-templates)",
                reference.name
            );
            return Err(SpecProblem {
                field: format!("{field}.namespace"),
                message,
            });
        }
        if (o.template)(&namespace, &reference.name).is_none() {
            let message = format!(
                "the McallTask {namespace}/{} does not exist",
                reference.name
            );
            return Err(SpecProblem {
                field: format!("{field}.name"),
                message,
            });
        }
    }
    Ok(())
}

fn check_schedule(wf: &McallWorkflow) -> Result<(), SpecProblem> {
    let Some(expr) = &wf.spec.schedule else {
        return Ok(());
    };
    Schedule::parse(expr, wf.spec.time_zone.as_deref())
        .map(|_| ())
        .map_err(|e| SpecProblem {
            field: e.field_path().into(),
            message: e.to_string(),
        })
}
