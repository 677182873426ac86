use super::*;
use crate::workflow::fixtures::steps;

fn problem(yaml: &str) -> SpecProblem {
    let steps = steps(yaml);
    Dag::build(&steps).expect_err("refused")
}

#[test]
fn a_diamond_is_ordered_by_dependencies_then_declaration() {
    let steps = steps(
        "- {name: d, type: cmd, input: x, dependencies: [b, c]}
         - {name: c, type: cmd, input: x, dependencies: [a]}
         - {name: b, type: cmd, input: x, dependencies: [a]}
         - {name: a, type: cmd, input: x}",
    );
    let dag = Dag::build(&steps).unwrap();
    let order: Vec<&str> = dag.order.iter().map(|&i| steps[i].name.as_str()).collect();
    assert_eq!(order, ["a", "c", "b", "d"]);
}

#[test]
fn a_cycle_is_refused_with_its_path_in_running_order() {
    let p = problem(
        "- {name: a, type: cmd, input: x, dependencies: [c]}
         - {name: b, type: cmd, input: x, dependencies: [a]}
         - {name: c, type: cmd, input: x, dependencies: [b]}
         - {name: free, type: cmd, input: x}",
    );
    assert_eq!(p.field, "spec.tasks");
    assert_eq!(p.message, "cycle a → b → c → a");
    let p = problem("- {name: a, type: cmd, input: x, dependencies: [a]}");
    assert_eq!(p.message, "cycle a → a");
}

#[test]
fn unknown_names_are_refused_naming_the_field() {
    let p = problem("- {name: a, type: cmd, input: x, dependencies: [nope]}");
    assert_eq!(
        p.to_string(),
        "spec.tasks[0].dependencies: \"nope\" is not a step of this workflow"
    );
    let p = problem(
        "- {name: a, type: cmd, input: x}
         - {name: b, type: cmd, input: x, dependencies: [a], condition: {dependentTask: z}}",
    );
    assert_eq!(p.field, "spec.tasks[1].condition.dependentTask");
    assert!(
        p.message
            .contains("\"z\" is not one of the step's dependencies (a)"),
        "{p}"
    );
}

#[test]
fn a_condition_needs_its_dependency_named_unless_there_is_one() {
    let ok = steps(
        "- {name: a, type: cmd, input: x}
         - {name: b, type: cmd, input: x, dependencies: [a], condition: {when: failure}}",
    );
    let dag = Dag::build(&ok).unwrap();
    assert_eq!(dag.judged_dependency(1), Some(0));
    assert_eq!(dag.handles_failure_of(0), [1]);
    let p = problem(
        "- {name: a, type: cmd, input: x}
         - {name: c, type: cmd, input: x}
         - {name: b, type: cmd, input: x, dependencies: [a, c], condition: {when: failure}}",
    );
    assert!(
        p.message
            .contains("required when the step has several dependencies (a, c)"),
        "{p}"
    );
    let p = problem("- {name: b, type: cmd, input: x, condition: {when: failure}}");
    assert!(p.message.contains("the step has none"), "{p}");
}

#[test]
fn input_sources_must_be_ancestors() {
    let ok = steps(
        "- {name: a, type: cmd, input: x}
         - {name: b, type: cmd, input: x, dependencies: [a]}
         - {name: c, type: cmd, inputTemplate: 'echo ${V}', dependencies: [b], inputSources: [{name: V, taskRef: a}]}",
    );
    assert!(Dag::build(&ok).is_ok(), "a grandparent is an ancestor");
    let p = problem(
        "- {name: a, type: cmd, input: x}
         - {name: b, type: cmd, inputTemplate: 'echo ${V}', inputSources: [{name: V, taskRef: a}]}",
    );
    assert_eq!(p.field, "spec.tasks[1].inputSources[0].taskRef");
    assert!(
        p.message.contains("\"a\" is not an ancestor of step \"b\""),
        "{p}"
    );
}

#[test]
fn only_conditions_that_accept_a_failure_handle_it() {
    let steps = steps(
        "- {name: a, type: cmd, input: x}
         - {name: on-ok, type: cmd, input: x, dependencies: [a], condition: {when: success}}
         - {name: on-end, type: cmd, input: x, dependencies: [a], condition: {when: completed}}
         - {name: plain, type: cmd, input: x, dependencies: [a]}",
    );
    let dag = Dag::build(&steps).unwrap();
    assert_eq!(dag.handles_failure_of(0), [2]);
    assert!(dag.handles_failure_of(1).is_empty());
}
