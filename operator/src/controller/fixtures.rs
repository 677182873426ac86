//! Test builders shared by the planners' table tests.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use mcall_generated::{McallTaskStatus, Phase};

use super::decide::{Observed, Policy};

/// The dependency grace of the tests: one minute.
pub const GRACE: Policy = Policy {
    dependency_grace: Duration::from_secs(60),
};

/// `secs` after a fixed instant that is a whole minute.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// A status in `phase` for `generation`.
pub fn status(phase: Phase, generation: i64) -> McallTaskStatus {
    McallTaskStatus {
        phase: Some(phase),
        observed_generation: Some(generation),
        ..Default::default()
    }
}

/// A one-shot task of generation 1 with `status`, no dependencies, valid, at `at(0)`.
pub fn observed(status: Option<&McallTaskStatus>) -> Observed<'_> {
    Observed {
        generation: 1,
        status,
        running_here: None,
        dependencies: Vec::new(),
        dependency_cycle: None,
        invalid_spec: None,
        input_unavailable: None,
        commands_forbidden: false,
        all_inputs_in_pods: false,
        now: at(0),
    }
}
