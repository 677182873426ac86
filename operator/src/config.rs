//! Operator configuration: flags and environment variables (the chart sets the latter).

use std::time::Duration;

/// Where `cmd` tasks may run. Commands run with the operator's identity, so the default is
/// nowhere: an operator must opt namespaces in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandPolicy {
    All,
    Namespaces(Vec<String>),
}

impl CommandPolicy {
    /// Parses `*` (all), or a comma-separated list (empty: none).
    pub fn parse(value: &str) -> Self {
        let names: Vec<String> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if names.iter().any(|n| n == "*") {
            CommandPolicy::All
        } else {
            CommandPolicy::Namespaces(names)
        }
    }

    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            CommandPolicy::All => true,
            CommandPolicy::Namespaces(list) => list.iter().any(|n| n == namespace),
        }
    }
}

#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Namespaces to watch; all when empty.
    pub watch_namespaces: Vec<String>,
    pub commands: CommandPolicy,
    /// Executions running at once across all tasks.
    pub max_concurrent_executions: usize,
    /// How long a task waits for a dependency that does not exist before it is Skipped.
    pub dependency_grace: Duration,
    /// On shutdown, how long running executions may finish before they are cancelled.
    pub shutdown_grace: Duration,
    /// Identifies this replica in Events.
    pub instance: Option<String>,
    /// Where the operator's Lease lives (see `controller::lease`); the first watched
    /// namespace, or `default`, when unset.
    pub lease_namespace: Option<String>,
    /// The Lease's name, and leader election on it.
    pub lease: LeaseConfig,
    /// Whether a workflow step may use a McallTask of another namespace as its template. Off by
    /// default: whoever may create workflows in one namespace must not run another namespace's
    /// commands or read its Secrets through a template.
    pub cross_namespace_templates: bool,
    /// Where the commands of tasks that name no executor run, and the default pod image.
    pub executor: ExecutorDefaults,
}

/// The operator-wide executor settings (`--default-executor`, `--executor-image`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutorDefaults {
    /// Commands of tasks without an `executor` run in pods (else in the operator's container).
    pub pods: bool,
    /// The image of command pods whose executor names none.
    pub image: Option<String>,
}

/// Leader election and the Lease's timings (see `controller::lease` for what each one bounds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    pub name: String,
    /// Contend for the Lease and lead only while holding it (several replicas); off: this
    /// process is the only operator.
    pub leader_election: bool,
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            name: LEASE_NAME.to_owned(),
            leader_election: true,
            duration: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(1500),
            retry_period: Duration::from_millis(500),
        }
    }
}

/// The name of the operator's Lease.
pub const LEASE_NAME: &str = "mcall-operator";

impl OperatorConfig {
    pub fn lease_namespace(&self) -> &str {
        self.lease_namespace
            .as_deref()
            .or(self.watch_namespaces.first().map(String::as_str))
            .unwrap_or("default")
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            watch_namespaces: Vec::new(),
            commands: CommandPolicy::Namespaces(Vec::new()),
            max_concurrent_executions: 32,
            dependency_grace: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(20),
            instance: None,
            lease_namespace: None,
            lease: LeaseConfig::default(),
            cross_namespace_templates: false,
            executor: ExecutorDefaults::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_policy() {
        assert!(CommandPolicy::parse("*").allows("anything"));
        assert!(CommandPolicy::parse("a, *").allows("b"));
        let some = CommandPolicy::parse("team-a,team-b");
        assert!(some.allows("team-b"));
        assert!(!some.allows("team-c"));
        assert!(
            !CommandPolicy::parse("").allows("default"),
            "no namespace allows commands by default"
        );
    }
}
