//! What the workflow planner sees: the workflow, its children, the templates, and now.

use k8s_openapi::jiff::Timestamp;
use mcall_generated::{McallTaskSpec, McallWorkflow, TaskReference, WorkflowTask};

use super::steps::Child;

/// What the planner sees.
pub struct Observed<'a> {
    pub workflow: &'a McallWorkflow,
    /// The workflow's children (owned by its uid), of every run.
    pub children: Vec<Child>,
    /// The spec of a template (namespace, name) as cached, `None` when there is none.
    pub template: &'a (dyn Fn(&str, &str) -> Option<McallTaskSpec> + Sync),
    pub cross_namespace_templates: bool,
    pub now: Timestamp,
}

impl Observed<'_> {
    /// The namespace a `taskRef` points into: its own, else the workflow's.
    pub fn template_namespace(&self, reference: &TaskReference) -> String {
        let own = self.workflow.metadata.namespace.as_deref();
        reference
            .namespace
            .as_deref()
            .or(own)
            .unwrap_or_default()
            .to_owned()
    }

    /// The template of a `taskRef` step, as cached; `None` for an inline step or a missing one.
    pub fn template_of(&self, step: &WorkflowTask) -> Option<McallTaskSpec> {
        let reference = step.task_ref.as_ref()?;
        (self.template)(&self.template_namespace(reference), &reference.name)
    }
}
