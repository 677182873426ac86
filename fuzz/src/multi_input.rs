//! Multi-input JSON: `spec.input` as a list of inputs, through `TaskPlan::compile`.
//!
//! The first byte picks the task's `type` (`0` cmd, `1` get, `2` post); the rest is `spec.input`.

use std::collections::BTreeSet;

use mcall_engine::{TaskKind, TaskPlan, TaskRequest};

const KINDS: [TaskKind; 3] = [TaskKind::Cmd, TaskKind::Get, TaskKind::Post];

pub(crate) fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(selector.wrapping_sub(b'0')) % KINDS.len()];
    let input = String::from_utf8_lossy(rest);
    let compiled = TaskPlan::compile(TaskRequest::new(kind, input.as_ref()));
    let again = TaskPlan::compile(TaskRequest::new(kind, input.as_ref()));
    let (plan, again) = match (compiled, again) {
        (Ok(plan), Ok(again)) => (plan, again),
        (Err(e), Err(f)) => {
            assert_eq!(e.to_string(), f.to_string(), "a rejection is deterministic");
            assert!(e.field.starts_with("spec."), "the error names a field: {e}");
            return;
        }
        _ => panic!("compile is not deterministic for {input:?}"),
    };
    let inputs = plan.inputs();
    assert!(!inputs.is_empty(), "a plan runs something");
    let names: BTreeSet<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names.len(), inputs.len(), "input names are unique");
    assert!(inputs.iter().all(|i| !i.input.trim().is_empty()));
    assert_eq!(
        plan.uses_commands(),
        inputs.iter().any(|i| i.kind == TaskKind::Cmd)
    );
    let same = inputs
        .iter()
        .zip(again.inputs())
        .all(|(a, b)| a.name == b.name && a.kind == b.kind && a.input == b.input);
    assert!(
        same && inputs.len() == again.inputs().len(),
        "compile is deterministic"
    );
    if !plan.is_multi_input() {
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].input, input);
    }
}
