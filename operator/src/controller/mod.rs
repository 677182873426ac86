//! The McallTask controller. Data flows one way:
//!
//! - **observe** ([`observe`]): the cached task and now ([`context::Facts`]), with what this
//!   process runs of it ([`executions`]), the operator's Lease ([`lease`]) and the
//!   dependencies, gathered into each planner's `Observed`;
//! - **plan** (pure, unit-tested as tables): [`one_shot`] (with [`decide`]) or [`scheduled`] (with
//!   `crate::schedule`) return a [`effects::Plan`]: status writes with preconditions, Events,
//!   runs to start or cancel, and when to look again;
//! - **apply** ([`apply`]): the one interpreter of plans. A started run ([`start`], [`execute`])
//!   reports its own outcome, decided by the pure [`outcome`] and written through [`report`].
//!
//! [`reconcile`] only dispatches; [`runtime`] wires watches ([`watch`]), the Lease and Events.

mod apply;
mod context;
pub mod decide;
mod dependencies;
mod effects;
mod execute;
mod executions;
#[cfg(test)]
mod fixtures;
pub mod lease;
mod observe;
mod one_shot;
mod outcome;
mod prepare;
mod reconcile;
pub mod report;
mod runs;
mod runtime;
mod scheduled;
mod start;
pub mod status;
mod watch;

pub use context::{RECONCILE_BACKOFF, count_failure};
pub use decide::{COMMANDS_NOT_ALLOWED, dependency_cycle_message};
pub use dependencies::{dependency_cycle, waits_for_dependencies};
pub use executions::{Executions, TaskKey};
pub use prepare::{Validation, undefined_template_placeholder, validate_with};
pub use report::EventSink;
pub use report::writes::FIELD_MANAGER;
pub use runtime::{Clients, leading_for, run, run_with};

/// The finalizer earlier versions put on every task. Deletions are now seen on the watch (no write
/// per task, and no task stuck Terminating when the operator is gone); a task that still carries
/// it is released when deleted.
pub const FINALIZER: &str = "mcall.tz.io/cleanup";
