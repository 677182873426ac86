//! What a workflow plan asks for: the vocabulary between the pure planner and the controller
//! that performs it.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use mcall_generated::{McallTask, McallWorkflowStatus};

use crate::controller::report::Note;

/// What to do.
#[derive(Debug, Default)]
pub struct Plan {
    /// The status to write (onto the version read), when it changed.
    pub status: Option<McallWorkflowStatus>,
    /// The status starts a run: it must land before any child is created (a tick never starts
    /// two runs). Otherwise it is written beside the creations.
    pub starts_run: bool,
    pub create: Vec<McallTask>,
    /// Child tasks to delete (cancelled steps, children of trimmed runs).
    pub delete: Vec<String>,
    /// Events, recorded once the status write landed.
    pub events: Vec<Note>,
    pub requeue_after: Option<Duration>,
}

/// How long until `t`, a little after it (a timer firing early would find nothing due).
pub fn until(t: Timestamp, now: Timestamp) -> Duration {
    let wait = t.duration_since(now);
    Duration::try_from(wait).unwrap_or(Duration::ZERO) + Duration::from_millis(5)
}
