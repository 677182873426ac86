use super::*;
use crate::workflow::fixtures::steps;

fn child(step: &str, phase: Phase, output: &str) -> Child {
    Child {
        name: format!("wf.r1.{step}"),
        run: "r1".into(),
        step: step.into(),
        phase: Some(phase),
        output: Some(output.into()),
        error_code: Some(if phase == Phase::Succeeded { "0" } else { "3" }.into()),
        ..Child::default()
    }
}

const BRANCHES: &str = "
- {name: check, type: cmd, input: x}
- {name: on-ok, type: cmd, input: x, dependencies: [check], condition: {when: success}}
- {name: on-fail, type: cmd, input: x, dependencies: [check], condition: {when: failure, outputContains: broken}}
- {name: on-end, type: cmd, input: x, dependencies: [check], condition: {when: completed, fieldEquals: {field: errorCode, value: '3'}}}
- {name: always, type: cmd, input: x, dependencies: [on-ok], condition: {when: always}}
- {name: plain, type: cmd, input: x, dependencies: [on-ok]}
";

#[test]
fn conditions_choose_the_branch_and_skips_propagate() {
    let steps = steps(BRANCHES);
    let dag = Dag::build(&steps).unwrap();
    let failed = child("check", Phase::Failed, "it is broken");
    let mut children = vec![None; steps.len()];
    children[0] = Some(&failed);
    let states = evaluate(&dag, &children, &[], None);
    assert_eq!(
        states[0],
        StepState::Ended(Phase::Failed, StepReason::Failed)
    );
    assert_eq!(
        states[1],
        StepState::Ended(Phase::Skipped, StepReason::ConditionNotMet)
    );
    assert_eq!(states[2], StepState::Ready, "failure + output contains");
    assert_eq!(states[3], StepState::Ready, "completed + errorCode 3");
    assert_eq!(
        states[4],
        StepState::Ready,
        "always runs after a skipped dependency"
    );
    assert_eq!(
        states[5],
        StepState::Ended(Phase::Skipped, StepReason::DependencyNotSatisfied)
    );
}

#[test]
fn a_condition_on_the_result_fields_must_all_hold() {
    let steps = steps(BRANCHES);
    let dag = Dag::build(&steps).unwrap();
    let failed = child("check", Phase::Failed, "fine really");
    let mut children = vec![None; steps.len()];
    children[0] = Some(&failed);
    let states = evaluate(&dag, &children, &[], None);
    assert_eq!(
        states[2],
        StepState::Ended(Phase::Skipped, StepReason::ConditionNotMet),
        "the output lacks `broken`"
    );
}

#[test]
fn steps_wait_for_dependencies_and_a_stop_skips_what_would_start() {
    let steps = steps(BRANCHES);
    let dag = Dag::build(&steps).unwrap();
    let running = Child {
        phase: Some(Phase::Running),
        ..child("check", Phase::Running, "")
    };
    let mut children = vec![None; steps.len()];
    children[0] = Some(&running);
    let states = evaluate(&dag, &children, &[], None);
    assert_eq!(states[0], StepState::Running);
    assert!(states[1..].iter().all(|s| *s == StepState::Waiting));
    let ok = child("check", Phase::Succeeded, "");
    children[0] = Some(&ok);
    let states = evaluate(&dag, &children, &[], Some(StepReason::FailFast));
    assert_eq!(
        states[1],
        StepState::Ended(Phase::Skipped, StepReason::FailFast)
    );
    assert_eq!(
        states[5],
        StepState::Ended(Phase::Skipped, StepReason::DependencyNotSatisfied)
    );
}

#[test]
fn a_failure_is_handled_only_by_a_branch_that_ran_or_may_still_run() {
    let steps = steps(BRANCHES);
    let dag = Dag::build(&steps).unwrap();
    let ended = |phase| StepState::Ended(phase, StepReason::Failed);
    let skipped = StepState::Ended(Phase::Skipped, StepReason::ConditionNotMet);
    let mut states = vec![StepState::Waiting; steps.len()];
    states[0] = ended(Phase::Failed);
    assert!(
        unhandled_failures(&dag, &states, false).is_empty(),
        "handlers may still run"
    );
    states[2] = skipped;
    states[3] = skipped;
    assert_eq!(
        unhandled_failures(&dag, &states, false),
        [0],
        "every handler was skipped"
    );
    assert_eq!(unhandled_failures(&dag, &states, true), [0]);
    states[2] = ended(Phase::Succeeded);
    assert!(unhandled_failures(&dag, &states, true).is_empty());
}

#[test]
fn a_deleted_child_cancels_its_step_and_a_created_one_not_yet_seen_holds_its_slot() {
    let steps = steps("- {name: a, type: cmd, input: x}\n- {name: b, type: cmd, input: x}");
    let dag = Dag::build(&steps).unwrap();
    let status = |name: &str, child: Option<&str>| -> WorkflowTaskStatus {
        serde_json::from_value(
            serde_json::json!({"name": name, "phase": "Running", "childTask": child}),
        )
        .unwrap()
    };
    let previous = [status("a", Some("wf.r1.a")), status("b", None)];
    let states = evaluate(&dag, &[None, None], &previous, None);
    assert_eq!(
        states[0],
        StepState::Ended(Phase::Failed, StepReason::Cancelled)
    );
    assert_eq!(states[1], StepState::Creating);
}

#[test]
fn field_equals_on_the_phase_reads_a_skipped_dependency_s_own_phase() {
    let steps = steps(
        "- {name: a, type: cmd, input: x}
         - {name: b, type: cmd, input: x, dependencies: [a]}
         - {name: c, type: cmd, input: x, dependencies: [b], condition: {when: always, fieldEquals: {field: phase, value: Skipped}}}",
    );
    let dag = Dag::build(&steps).unwrap();
    let failed = child("a", Phase::Failed, "");
    let states = evaluate(&dag, &[Some(&failed), None, None], &[], None);
    assert_eq!(
        states[1],
        StepState::Ended(Phase::Skipped, StepReason::DependencyNotSatisfied)
    );
    assert_eq!(states[2], StepState::Ready);
}
