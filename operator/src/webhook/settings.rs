//! What the operator's flags change about admission.

use crate::config::CommandPolicy;

#[derive(Clone, Debug)]
pub struct Settings {
    pub cross_namespace_templates: bool,
    /// Where `cmd` tasks may run (`--command-namespaces`); elsewhere they are refused.
    pub commands: CommandPolicy,
}

/// Judges specs alone: commands allowed everywhere, no cross-namespace templates.
impl Default for Settings {
    fn default() -> Self {
        Settings {
            cross_namespace_templates: false,
            commands: CommandPolicy::All,
        }
    }
}
