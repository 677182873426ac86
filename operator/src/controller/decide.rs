//! What to do with a McallTask: a pure function of its spec, its status, what this process is
//! running, its dependencies and the time. No I/O; every branch is unit-tested below.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mcall_generated::{McallTaskStatus, Phase, Reason};

use super::report::conditions::DEPENDENCIES_READY;

/// Why a `cmd` task outside the operator's command namespaces does not run.
pub const COMMANDS_NOT_ALLOWED: &str =
    "cmd tasks are not allowed in this namespace (see the operator's commandNamespaces)";

/// What the controller knows about a task when it decides.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub generation: i64,
    pub status: Option<&'a McallTaskStatus>,
    /// The generation of the execution this process is running for the task, if any.
    pub running_here: Option<i64>,
    /// The task's dependencies in the order of the spec, with their phase (`None` when the
    /// McallTask does not exist).
    pub dependencies: Vec<(String, Option<Phase>)>,
    /// Dependencies that wait, in turn, for this task (`[a, b, a]`): none of them can start.
    pub dependency_cycle: Option<Vec<String>>,
    /// The spec problem the engine found while compiling the plan, if any.
    pub invalid_spec: Option<String>,
    /// Why `inputTemplate` could not be filled from `inputSources`; only decisive once the
    /// dependencies (which usually produce those sources) are done.
    pub input_unavailable: Option<String>,
    /// Whether the task runs commands in a namespace where they are not allowed.
    pub commands_forbidden: bool,
    /// Whether every input is a command run in a pod, which outlives the operator process that
    /// started it: a run interrupted by a restart can be adopted.
    pub all_inputs_in_pods: bool,
    pub now: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing to do: finished for this generation, or running here.
    Idle,
    /// Dependencies are not finished yet. Re-check after `recheck_after` when some are missing
    /// (a missing object produces no watch event); otherwise their status changes wake us.
    Wait {
        message: String,
        since: Timestamp,
        recheck_after: Option<Duration>,
    },
    /// A dependency failed, was skipped, or stayed missing past the grace period.
    Skip { message: String },
    /// The spec cannot run: `reason` is a condition reason such as `InvalidSpec`.
    Reject { reason: Reason, message: String },
    /// Status says Running for this generation, but no execution runs here: the operator
    /// restarted (or lost leadership) mid-run.
    Interrupted,
    /// The same, for a task whose commands run in pods: they are still there (or never
    /// started), so the run is started again and follows them instead of creating new ones.
    Adopt,
    /// Run it now; an execution of an older generation, if any, is cancelled first.
    Start,
}

/// The refusal of a dependency cycle (`[a, b, a]`), worded once for the controller and admission.
pub fn dependency_cycle_message(cycle: &[String]) -> String {
    format!(
        "spec.dependencies: {} is a cycle, so none of these tasks could ever start",
        cycle.join(" → ")
    )
}

/// How long a missing dependency is waited for before the task is Skipped.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub dependency_grace: Duration,
}

/// The decision when the task's status and this process's execution settle it, whatever the spec
/// and the dependencies say: finished for this generation, running here, or interrupted. The
/// reconcile asks this first and skips compiling the spec when it answers.
pub fn settled(
    generation: i64,
    status: Option<&McallTaskStatus>,
    running_here: Option<i64>,
) -> Option<Decision> {
    if running_here == Some(generation) {
        return Some(Decision::Idle);
    }
    let current = status.and_then(|s| s.observed_generation) == Some(generation);
    match status.and_then(|s| s.phase) {
        Some(Phase::Succeeded | Phase::Failed | Phase::Skipped) if current => Some(Decision::Idle),
        Some(Phase::Running) if current => Some(Decision::Interrupted),
        _ => None,
    }
}

pub fn decide(observed: &Observed<'_>, policy: Policy) -> Decision {
    match settled(observed.generation, observed.status, observed.running_here) {
        // Only a run this operator would still start: no pod of a spec it now refuses, or of a
        // namespace where commands are no longer allowed.
        Some(Decision::Interrupted)
            if observed.all_inputs_in_pods
                && !observed.commands_forbidden
                && observed.invalid_spec.is_none() =>
        {
            return Decision::Adopt;
        }
        Some(decision) => return decision,
        None => {}
    }
    if let Some(message) = &observed.invalid_spec {
        return Decision::Reject {
            reason: Reason::InvalidSpec,
            message: message.clone(),
        };
    }
    if observed.commands_forbidden {
        return Decision::Reject {
            reason: Reason::CommandsNotAllowed,
            message: COMMANDS_NOT_ALLOWED.into(),
        };
    }

    let mut unfinished = Vec::new();
    let mut missing = Vec::new();
    for (name, dep_phase) in &observed.dependencies {
        match dep_phase {
            Some(Phase::Succeeded) => {}
            Some(p @ (Phase::Failed | Phase::Skipped)) => {
                return Decision::Skip {
                    message: format!("dependency {name} is {p}"),
                };
            }
            Some(Phase::Pending | Phase::Running) => unfinished.push(name.as_str()),
            None => missing.push(name.as_str()),
        }
    }
    if let Some(cycle) = &observed.dependency_cycle {
        return Decision::Reject {
            reason: Reason::InvalidSpec,
            message: dependency_cycle_message(cycle),
        };
    }
    if unfinished.is_empty() && missing.is_empty() {
        if let Some(message) = &observed.input_unavailable {
            return Decision::Reject {
                reason: Reason::InputUnavailable,
                message: message.clone(),
            };
        }
        return Decision::Start;
    }

    wait_or_skip(observed, policy, &unfinished, &missing)
}

/// Dependencies unfinished or missing: wait for them, or skip once a missing one outstayed the
/// grace period.
fn wait_or_skip(
    observed: &Observed<'_>,
    policy: Policy,
    unfinished: &[&str],
    missing: &[&str],
) -> Decision {
    let status = observed.status;
    let phase = status.and_then(|s| s.phase);
    let current = status.and_then(|s| s.observed_generation) == Some(observed.generation);
    // The wait started when the DependenciesReady condition last became False for this generation.
    let since = status
        .filter(|_| current && phase == Some(Phase::Pending))
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.r#type == DEPENDENCIES_READY.as_str()))
        .map(|c| c.last_transition_time.0)
        .unwrap_or(observed.now);
    let waited = observed.now.duration_since(since);
    let grace = SignedDuration::try_from(policy.dependency_grace).unwrap_or(SignedDuration::MAX);
    if !missing.is_empty() && waited >= grace {
        return Decision::Skip {
            message: format!(
                "dependency {} does not exist (waited {}s)",
                missing.join(", "),
                policy.dependency_grace.as_secs()
            ),
        };
    }
    let mut parts = Vec::new();
    if !unfinished.is_empty() {
        parts.push(format!("waiting for {} to finish", unfinished.join(", ")));
    }
    if !missing.is_empty() {
        parts.push(format!(
            "waiting for missing {} to appear",
            missing.join(", ")
        ));
    }
    let recheck_after = (!missing.is_empty()).then(|| {
        let left = grace.checked_sub(waited).unwrap_or(SignedDuration::ZERO);
        Duration::try_from(left).unwrap_or_default() + Duration::from_millis(100)
    });
    Decision::Wait {
        message: parts.join("; "),
        since,
        recheck_after,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use mcall_generated::{Condition, ConditionStatus};

    use super::*;
    use crate::controller::fixtures::{GRACE, at, observed, status};

    fn waiting_since(generation: i64, since: Timestamp) -> McallTaskStatus {
        McallTaskStatus {
            conditions: Some(vec![Condition {
                r#type: DEPENDENCIES_READY.to_string(),
                status: ConditionStatus::False,
                observed_generation: Some(generation),
                last_transition_time: Time(since),
                reason: Reason::WaitingForDependencies.to_string(),
                message: "waiting".into(),
            }]),
            ..status(Phase::Pending, generation)
        }
    }

    #[test]
    fn settled_answers_only_what_the_status_and_this_process_decide() {
        let done = status(Phase::Succeeded, 1);
        let running = status(Phase::Running, 1);
        let pending = status(Phase::Pending, 1);
        assert_eq!(settled(1, Some(&done), None), Some(Decision::Idle));
        assert_eq!(settled(2, Some(&done), None), None, "a new generation");
        assert_eq!(settled(1, Some(&running), Some(1)), Some(Decision::Idle));
        assert_eq!(
            settled(1, Some(&running), None),
            Some(Decision::Interrupted)
        );
        assert_eq!(settled(1, Some(&pending), None), None);
        assert_eq!(settled(1, None, Some(1)), Some(Decision::Idle));
        assert_eq!(settled(1, None, None), None);
    }

    #[test]
    fn a_new_task_starts() {
        assert_eq!(decide(&observed(None), GRACE), Decision::Start);
    }

    #[test]
    fn a_finished_task_stays_finished_for_its_generation() {
        for phase in [Phase::Succeeded, Phase::Failed, Phase::Skipped] {
            let s = status(phase, 1);
            assert_eq!(
                decide(&observed(Some(&s)), GRACE),
                Decision::Idle,
                "{phase}"
            );
        }
    }

    #[test]
    fn a_spec_change_runs_a_finished_task_again() {
        let s = status(Phase::Succeeded, 1);
        let o = Observed {
            generation: 2,
            ..observed(Some(&s))
        };
        assert_eq!(decide(&o, GRACE), Decision::Start);
    }

    #[test]
    fn running_here_is_left_alone() {
        let s = status(Phase::Running, 1);
        let o = Observed {
            running_here: Some(1),
            ..observed(Some(&s))
        };
        assert_eq!(decide(&o, GRACE), Decision::Idle);
    }

    #[test]
    fn running_but_not_here_was_interrupted() {
        let s = status(Phase::Running, 1);
        assert_eq!(decide(&observed(Some(&s)), GRACE), Decision::Interrupted);
    }

    #[test]
    fn running_in_pods_but_not_here_is_adopted() {
        let s = status(Phase::Running, 1);
        let o = Observed {
            all_inputs_in_pods: true,
            ..observed(Some(&s))
        };
        assert_eq!(decide(&o, GRACE), Decision::Adopt);
        let forbidden = Observed {
            commands_forbidden: true,
            ..o.clone()
        };
        assert_eq!(decide(&forbidden, GRACE), Decision::Interrupted);
        let invalid = Observed {
            invalid_spec: Some("spec.expect: bad".into()),
            ..o
        };
        assert_eq!(decide(&invalid, GRACE), Decision::Interrupted);
        let finished = status(Phase::Failed, 1);
        let o = Observed {
            all_inputs_in_pods: true,
            ..observed(Some(&finished))
        };
        assert_eq!(decide(&o, GRACE), Decision::Idle, "a recorded result stays");
    }

    #[test]
    fn a_spec_change_while_running_restarts() {
        let s = status(Phase::Running, 1);
        let o = Observed {
            generation: 2,
            running_here: Some(1),
            ..observed(Some(&s))
        };
        assert_eq!(decide(&o, GRACE), Decision::Start);
    }

    #[test]
    fn invalid_specs_and_forbidden_commands_are_rejected() {
        let o = Observed {
            invalid_spec: Some("spec.expect: bad regex".into()),
            ..observed(None)
        };
        assert!(matches!(
            decide(&o, GRACE),
            Decision::Reject {
                reason: Reason::InvalidSpec,
                ..
            }
        ));
        let o = Observed {
            commands_forbidden: true,
            ..observed(None)
        };
        assert!(matches!(
            decide(&o, GRACE),
            Decision::Reject {
                reason: Reason::CommandsNotAllowed,
                ..
            }
        ));
    }

    #[test]
    fn waits_for_unfinished_dependencies_without_polling() {
        let o = Observed {
            dependencies: vec![
                ("a".into(), Some(Phase::Succeeded)),
                ("b".into(), Some(Phase::Running)),
            ],
            ..observed(None)
        };
        match decide(&o, GRACE) {
            Decision::Wait {
                message,
                recheck_after,
                since,
            } => {
                assert!(message.contains("waiting for b to finish"), "{message}");
                assert_eq!(recheck_after, None, "status changes of b wake us");
                assert_eq!(since, at(0));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unavailable_input_fails_only_once_dependencies_are_done() {
        let waiting = Observed {
            dependencies: vec![("producer".into(), Some(Phase::Running))],
            input_unavailable: Some(
                "spec.inputSources[0]: output of McallTask \"producer\" is not available".into(),
            ),
            ..observed(None)
        };
        assert!(matches!(decide(&waiting, GRACE), Decision::Wait { .. }));
        let done = Observed {
            dependencies: vec![("producer".into(), Some(Phase::Succeeded))],
            ..waiting
        };
        assert!(matches!(
            decide(&done, GRACE),
            Decision::Reject {
                reason: Reason::InputUnavailable,
                ..
            }
        ));
    }

    #[test]
    fn dependencies_that_wait_for_the_task_fail_it_naming_the_cycle() {
        let o = Observed {
            dependencies: vec![("b".into(), Some(Phase::Pending))],
            dependency_cycle: Some(vec!["a".into(), "b".into(), "a".into()]),
            ..observed(None)
        };
        assert_eq!(
            decide(&o, GRACE),
            Decision::Reject {
                reason: Reason::InvalidSpec,
                message: "spec.dependencies: a → b → a is a cycle, so none of these tasks could ever start".into()
            }
        );
    }

    #[test]
    fn starts_when_every_dependency_succeeded() {
        let o = Observed {
            dependencies: vec![
                ("a".into(), Some(Phase::Succeeded)),
                ("b".into(), Some(Phase::Succeeded)),
            ],
            ..observed(None)
        };
        assert_eq!(decide(&o, GRACE), Decision::Start);
    }

    #[test]
    fn a_failed_or_skipped_dependency_skips_naming_the_culprit() {
        for phase in [Phase::Failed, Phase::Skipped] {
            let o = Observed {
                dependencies: vec![
                    ("ok".into(), Some(Phase::Succeeded)),
                    ("broken".into(), Some(phase)),
                ],
                ..observed(None)
            };
            assert_eq!(
                decide(&o, GRACE),
                Decision::Skip {
                    message: format!("dependency broken is {phase}")
                }
            );
        }
    }

    #[test]
    fn a_missing_dependency_is_waited_for_then_skipped() {
        let deps = vec![("ghost".into(), None)];
        let s = waiting_since(1, at(0));
        let o = Observed {
            dependencies: deps.clone(),
            now: at(45),
            ..observed(Some(&s))
        };
        match decide(&o, GRACE) {
            Decision::Wait {
                recheck_after: Some(after),
                message,
                ..
            } => {
                assert!(message.contains("missing ghost"), "{message}");
                assert!(
                    after >= Duration::from_secs(15) && after < Duration::from_secs(16),
                    "{after:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        let o = Observed {
            dependencies: deps,
            now: at(60),
            ..observed(Some(&s))
        };
        assert_eq!(
            decide(&o, GRACE),
            Decision::Skip {
                message: "dependency ghost does not exist (waited 60s)".into()
            }
        );
    }

    #[test]
    fn the_grace_period_restarts_with_a_new_generation() {
        let s = waiting_since(1, at(0));
        let o = Observed {
            generation: 2,
            dependencies: vec![("ghost".into(), None)],
            now: at(100),
            ..observed(Some(&s))
        };
        assert!(matches!(decide(&o, GRACE), Decision::Wait { since, .. } if since == at(100)));
    }
}
