//! Planning a one-shot task (no `schedule`): pure functions of its status, what this process runs
//! of it, what the reconcile observed and the time. The decision itself is [`super::decide`];
//! this turns it into effects.

use mcall_generated::{McallTaskStatus, Phase, Reason};

use super::decide::{Decision, Observed, Policy, decide, settled};
use super::effects::{Effect, Plan};
use super::executions::RunsHere;
use super::report::Note;
use super::report::writes::Precondition;
use super::runs::RunKind;
use super::status;

/// Why a task recorded `Running` but running nowhere is not run again.
pub const ONE_SHOT_INTERRUPTED: &str = "the operator stopped while this execution ran; it was not re-run, so a command never runs twice (change the spec to run it again)";

/// Why a task recorded `Running` but running nowhere is started again when it runs in pods.
pub const ONE_SHOT_ADOPTED: &str = "the operator that started this run stopped; its pods are followed to their result (none is started twice)";

/// What this process's runs need before anything is decided, and which generation runs here
/// once they got it.
#[derive(Clone, Debug, PartialEq)]
pub struct Prelude {
    pub effects: Vec<Effect>,
    pub running_here: Option<i64>,
}

/// A finished result in the cache settles the marker of a result written here; a run of an older
/// generation is cancelled, whatever the new one decides (it may wait, or be invalid).
pub fn prelude(generation: i64, status: Option<&McallTaskStatus>, runs: RunsHere) -> Prelude {
    let mut effects = Vec::new();
    let finished = status.is_some_and(|s| {
        s.observed_generation == Some(generation)
            && matches!(
                s.phase,
                Some(Phase::Succeeded | Phase::Failed | Phase::Skipped)
            )
    });
    let mut reported = runs.reported;
    if finished && reported.is_some_and(|g| g <= generation) {
        effects.push(Effect::Settle);
        reported = None;
    }
    let mut current = runs.current;
    if current.is_some_and(|c| c.scheduled.is_none() && c.generation < generation) {
        effects.push(Effect::CancelOlderRun);
        current = None;
    }
    Prelude {
        effects,
        running_here: current.map(|c| c.generation).or(reported),
    }
}

/// The plan when the status and this process's runs settle the task without looking at its spec
/// (most reconciles: the task's own status writes). `None`: the spec must be looked at.
pub fn plan_settled(
    prelude: &Prelude,
    generation: i64,
    status: Option<&McallTaskStatus>,
) -> Option<Plan> {
    (settled(generation, status, prelude.running_here) == Some(Decision::Idle)).then(|| Plan {
        effects: prelude.effects.clone(),
        requeue_after: None,
    })
}

/// The plan for what `observed` shows.
pub fn plan(prelude: Prelude, observed: &Observed<'_>, policy: Policy) -> Plan {
    let decision = decide(observed, policy);
    tracing::debug!(?decision, "decided");
    let (previous, generation, now) = (observed.status, observed.generation, observed.now);
    let mut plan = Plan {
        effects: prelude.effects,
        requeue_after: None,
    };
    match decision {
        Decision::Idle => plan,
        Decision::Wait {
            message,
            since,
            recheck_after,
        } => {
            let next = status::waiting(previous, generation, &message, since, now);
            if previous != Some(&next) {
                // Unconditional: the wait is the operator's to record whatever else changed.
                plan = plan.then(Effect::WriteStatus {
                    status: Box::new(next),
                    precondition: Precondition::None,
                    then: None,
                });
            }
            plan.requeue_after(recheck_after)
        }
        Decision::Skip { message } => plan.then(Effect::WriteStatus {
            status: Box::new(status::skipped(previous, generation, &message, now)),
            precondition: Precondition::None,
            then: Some(Note::new(Reason::Skipped, message)),
        }),
        Decision::Reject { reason, message } => {
            plan.then(Effect::reject(previous, generation, reason, &message, now))
        }
        Decision::Interrupted => plan.then(Effect::reject(
            previous,
            generation,
            Reason::Interrupted,
            ONE_SHOT_INTERRUPTED,
            now,
        )),
        Decision::Adopt => plan
            .then(Effect::Announce(Note::new(
                Reason::Adopted,
                ONE_SHOT_ADOPTED,
            )))
            .then(Effect::start(RunKind::OneShot, None)),
        Decision::Start => plan.then(Effect::start(RunKind::OneShot, None)),
    }
}

#[cfg(test)]
mod tests;
