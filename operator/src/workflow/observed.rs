//! What the workflow planner sees: the workflow, its children, the templates, and now.

use k8s_openapi::jiff::Timestamp;
use mcall_generated::{McallTaskSpec, McallWorkflow};

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
