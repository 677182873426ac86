//! Plans of one-shot tasks as tables: (status, runs here, observed) → effects.

use std::time::Duration;

use mcall_generated::{McallTaskStatus, Phase};

use super::*;
use crate::controller::executions::{CurrentRun, RunsHere};
use crate::controller::fixtures::{GRACE, at, observed, status};
use crate::controller::report::conditions::{READY, reason_of};

fn one_shot_run(generation: i64) -> RunsHere {
    RunsHere {
        current: Some(CurrentRun {
            generation,
            scheduled: None,
        }),
        ..RunsHere::default()
    }
}

fn no_prelude() -> Prelude {
    Prelude {
        effects: Vec::new(),
        running_here: None,
    }
}

/// The written status and precondition, and the Event reason that follows, of a one-write plan.
fn the_write(plan: &Plan) -> (&McallTaskStatus, Precondition, Option<&str>) {
    match plan.effects.as_slice() {
        [
            Effect::WriteStatus {
                status,
                precondition,
                then,
            },
        ] => (
            status,
            *precondition,
            then.as_ref().map(|n| n.reason.as_str()),
        ),
        other => panic!("expected one status write, got {other:?}"),
    }
}

#[test]
fn the_prelude_settles_a_shown_result_and_cancels_an_older_generation() {
    let done = status(Phase::Succeeded, 2);
    // (case, status, runs here, effects, running here afterwards)
    type Case<'a> = (
        &'a str,
        Option<&'a McallTaskStatus>,
        RunsHere,
        Vec<Effect>,
        Option<i64>,
    );
    let table: [Case<'_>; 6] = [
        ("nothing here", None, RunsHere::default(), vec![], None),
        (
            "our result is in the cache",
            Some(&done),
            RunsHere {
                reported: Some(2),
                ..RunsHere::default()
            },
            vec![Effect::Settle],
            None,
        ),
        (
            "a result newer than the cache stays known",
            Some(&done),
            RunsHere {
                reported: Some(3),
                ..RunsHere::default()
            },
            vec![],
            Some(3),
        ),
        (
            "a run of the spec before the change",
            None,
            one_shot_run(1),
            vec![Effect::CancelOlderRun],
            None,
        ),
        ("a run of this spec", None, one_shot_run(2), vec![], Some(2)),
        (
            "scheduled runs follow their own policy",
            None,
            RunsHere {
                current: Some(CurrentRun {
                    generation: 1,
                    scheduled: Some(at(0)),
                }),
                ..RunsHere::default()
            },
            vec![],
            Some(1),
        ),
    ];
    for (case, status, runs, effects, running_here) in table {
        let prelude = prelude(2, status, runs);
        assert_eq!(prelude.effects, effects, "{case}");
        assert_eq!(prelude.running_here, running_here, "{case}");
    }
}

#[test]
fn a_settled_task_is_planned_without_its_spec() {
    let done = status(Phase::Succeeded, 1);
    let settled = plan_settled(
        &prelude(1, Some(&done), RunsHere::default()),
        1,
        Some(&done),
    );
    assert_eq!(settled, Some(Plan::idle()));
    let running = plan_settled(&prelude(1, None, one_shot_run(1)), 1, None);
    assert_eq!(running, Some(Plan::idle()), "running here");
    let changed = prelude(2, Some(&done), RunsHere::default());
    assert_eq!(
        plan_settled(&changed, 2, Some(&done)),
        None,
        "a new generation"
    );
    let pending = status(Phase::Pending, 1);
    assert_eq!(plan_settled(&no_prelude(), 1, Some(&pending)), None);
}

#[test]
fn a_new_task_starts_after_the_preludes_effects() {
    let prelude = Prelude {
        effects: vec![Effect::CancelOlderRun],
        running_here: None,
    };
    let plan = plan(prelude, &observed(None), GRACE);
    assert_eq!(
        plan.effects,
        [
            Effect::CancelOlderRun,
            Effect::start(RunKind::OneShot, None)
        ]
    );
    assert_eq!(plan.requeue_after, None);
}

#[test]
fn a_run_interrupted_in_pods_is_started_again_to_adopt_them_with_an_event() {
    let running = status(Phase::Running, 1);
    let o = Observed {
        all_inputs_in_pods: true,
        ..observed(Some(&running))
    };
    let plan = plan(no_prelude(), &o, GRACE);
    assert_eq!(
        plan.effects,
        [
            Effect::Announce(Note::new(Reason::Adopted, ONE_SHOT_ADOPTED)),
            Effect::start(RunKind::OneShot, None)
        ]
    );
}

#[test]
fn waiting_is_written_once_without_a_precondition_and_rechecked_for_missing_tasks() {
    let o = Observed {
        dependencies: vec![("ghost".into(), None)],
        ..observed(None)
    };
    let first = plan(no_prelude(), &o, GRACE);
    let (written, precondition, event) = the_write(&first);
    assert_eq!(
        (written.phase, precondition, event),
        (Some(Phase::Pending), Precondition::None, None)
    );
    assert_eq!(
        first.requeue_after,
        Some(Duration::from_secs(60) + Duration::from_millis(100))
    );
    let again = Observed {
        status: Some(written),
        ..o
    };
    let second = plan(no_prelude(), &again, GRACE);
    assert!(
        second.effects.is_empty(),
        "the same wait is not written again"
    );
}

#[test]
fn each_decision_writes_its_status_with_its_precondition_and_event() {
    let running = status(Phase::Running, 1);
    let skip = Observed {
        dependencies: vec![("a".into(), Some(Phase::Failed))],
        ..observed(None)
    };
    let invalid = Observed {
        invalid_spec: Some("spec.expect: bad".into()),
        ..observed(None)
    };
    let table = [
        ("skip", skip, Phase::Skipped, Precondition::None, "Skipped"),
        (
            "reject",
            invalid,
            Phase::Failed,
            Precondition::OnRead,
            "InvalidSpec",
        ),
        (
            "interrupted",
            observed(Some(&running)),
            Phase::Failed,
            Precondition::OnRead,
            "Interrupted",
        ),
    ];
    for (case, o, phase, expected_precondition, reason) in table {
        let plan = plan(no_prelude(), &o, GRACE);
        let (written, precondition, event) = the_write(&plan);
        assert_eq!(written.phase, Some(phase), "{case}");
        assert_eq!(precondition, expected_precondition, "{case}");
        assert_eq!(event, Some(reason), "{case}");
        let condition = reason_of(written.conditions.as_deref(), READY).map(|r| r.as_str());
        assert_eq!(
            condition,
            Some(reason),
            "{case}: the Ready condition names it too"
        );
    }
}
