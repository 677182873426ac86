//! The workflow's graph, checked once per run: every name resolves, there is no cycle, each
//! condition judges one of the step's dependencies, and every input source is an ancestor (the
//! only steps certain to have ended when the step starts). Pure; the webhook can call it too.

use std::collections::{BTreeMap, BTreeSet};

use mcall_generated::{ConditionWhen, StepCondition, WorkflowTask};

/// A spec problem the schema cannot see: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// The field path, e.g. `spec.tasks[2].dependencies`.
    pub field: String,
    pub message: String,
    /// The problem may go away without a spec change (a template not created yet): the workflow
    /// is looked at again.
    pub transient: bool,
}

impl std::fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl SpecProblem {
    pub fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecProblem {
            field: field.into(),
            message: message.into(),
            transient: false,
        }
    }
}

/// The checked graph: steps by index, in the order they may start.
#[derive(Debug)]
pub struct Dag<'a> {
    pub steps: &'a [WorkflowTask],
    /// Indices of each step's dependencies.
    pub deps: Vec<Vec<usize>>,
    /// A topological order; among steps free at once, declaration order.
    pub order: Vec<usize>,
    index: BTreeMap<&'a str, usize>,
}

impl<'a> Dag<'a> {
    pub fn build(steps: &'a [WorkflowTask]) -> Result<Dag<'a>, SpecProblem> {
        let mut index = BTreeMap::new();
        for (i, step) in steps.iter().enumerate() {
            if index.insert(step.name.as_str(), i).is_some() {
                let message = format!("step name {:?} is used twice", step.name);
                return Err(SpecProblem::at(format!("spec.tasks[{i}].name"), message));
            }
        }
        let deps = resolve_dependencies(steps, &index)?;
        let order = topological_order(steps, &deps)?;
        let dag = Dag {
            steps,
            deps,
            order,
            index,
        };
        for (i, step) in steps.iter().enumerate() {
            dag.check_condition(i, step.condition.as_ref())?;
            dag.check_input_sources(i)?;
        }
        Ok(dag)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The dependency a step's condition judges: its `dependentTask`, or its only dependency.
    pub fn judged_dependency(&self, step: usize) -> Option<usize> {
        let condition = self.steps[step].condition.as_ref()?;
        match &condition.dependent_task {
            Some(name) => self.index_of(name),
            None => match self.deps[step].as_slice() {
                [only] => Some(*only),
                _ => None,
            },
        }
    }

    /// Whether some step runs when `step` fails: a condition on it that accepts a failure.
    pub fn handles_failure_of(&self, step: usize) -> Vec<usize> {
        (0..self.steps.len())
            .filter(|&s| self.judged_dependency(s) == Some(step))
            .filter(|&s| {
                let when = self.steps[s].condition.as_ref().map(|c| c.when);
                matches!(
                    when,
                    Some(ConditionWhen::Failure | ConditionWhen::Completed | ConditionWhen::Always)
                )
            })
            .collect()
    }

    fn ancestors(&self, step: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = self.deps[step].clone();
        while let Some(s) = stack.pop() {
            if seen.insert(s) {
                stack.extend(&self.deps[s]);
            }
        }
        seen
    }

    fn check_condition(
        &self,
        i: usize,
        condition: Option<&StepCondition>,
    ) -> Result<(), SpecProblem> {
        let Some(condition) = condition else {
            return Ok(());
        };
        let field = format!("spec.tasks[{i}].condition");
        let deps = &self.deps[i];
        match &condition.dependent_task {
            Some(name) => {
                let listed = self.index_of(name).is_some_and(|d| deps.contains(&d));
                if !listed {
                    let message = format!(
                        "dependentTask {name:?} is not one of the step's dependencies ({})",
                        names(self.steps, deps)
                    );
                    return Err(SpecProblem::at(format!("{field}.dependentTask"), message));
                }
            }
            None if deps.len() == 1 => {}
            None => {
                let message = if deps.is_empty() {
                    "a condition judges a dependency, and the step has none".to_owned()
                } else {
                    format!(
                        "dependentTask is required when the step has several dependencies ({})",
                        names(self.steps, deps)
                    )
                };
                return Err(SpecProblem::at(format!("{field}.dependentTask"), message));
            }
        }
        Ok(())
    }

    fn check_input_sources(&self, i: usize) -> Result<(), SpecProblem> {
        let step = &self.steps[i];
        let ancestors = self.ancestors(i);
        for (j, source) in step.input_sources.iter().flatten().enumerate() {
            let field = format!("spec.tasks[{i}].inputSources[{j}].taskRef");
            match self.index_of(&source.task_ref) {
                None => {
                    let message = format!("{:?} is not a step of this workflow", source.task_ref);
                    return Err(SpecProblem::at(field, message));
                }
                Some(s) if !ancestors.contains(&s) => {
                    let message = format!(
                        "{:?} is not an ancestor of step {:?}: only a step it depends on (directly or not) has surely ended when it starts",
                        source.task_ref, step.name
                    );
                    return Err(SpecProblem::at(field, message));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

fn names(steps: &[WorkflowTask], indices: &[usize]) -> String {
    let names: Vec<&str> = indices.iter().map(|&i| steps[i].name.as_str()).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn resolve_dependencies(
    steps: &[WorkflowTask],
    index: &BTreeMap<&str, usize>,
) -> Result<Vec<Vec<usize>>, SpecProblem> {
    let mut all = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let mut deps = Vec::new();
        for name in step.dependencies.iter().flatten() {
            let field = format!("spec.tasks[{i}].dependencies");
            match index.get(name.as_str()) {
                None => {
                    let message = format!("{name:?} is not a step of this workflow");
                    return Err(SpecProblem::at(field, message));
                }
                Some(&d) if d == i => {
                    let message = format!("cycle {} → {}", step.name, step.name);
                    return Err(SpecProblem::at("spec.tasks", message));
                }
                Some(&d) if !deps.contains(&d) => deps.push(d),
                Some(_) => {}
            }
        }
        all.push(deps);
    }
    Ok(all)
}

/// Kahn's algorithm, taking the lowest declared index among free steps; a cycle is reported as
/// its path.
fn topological_order(
    steps: &[WorkflowTask],
    deps: &[Vec<usize>],
) -> Result<Vec<usize>, SpecProblem> {
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); steps.len()];
    for (s, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(s);
        }
    }
    let mut free: BTreeSet<usize> = (0..steps.len()).filter(|&s| waiting[s] == 0).collect();
    let mut order = Vec::with_capacity(steps.len());
    while let Some(s) = free.pop_first() {
        order.push(s);
        for &t in &dependents[s] {
            waiting[t] -= 1;
            if waiting[t] == 0 {
                free.insert(t);
            }
        }
    }
    if order.len() == steps.len() {
        return Ok(order);
    }
    let path = cycle_path(steps, deps, &waiting);
    Err(SpecProblem::at("spec.tasks", format!("cycle {path}")))
}

/// A cycle among the steps Kahn's algorithm could not order, as `a → b → c → a` in the order the
/// steps would run (`b` depends on `a`).
fn cycle_path(steps: &[WorkflowTask], deps: &[Vec<usize>], waiting: &[usize]) -> String {
    // Every unordered step waits for another unordered one, so walking from one always returns
    // to a step already on the path.
    let start = (0..steps.len())
        .find(|&s| waiting[s] > 0)
        .expect("a cycle exists");
    let mut path = vec![start];
    let mut on_path = BTreeMap::from([(start, 0)]);
    let mut at = start;
    loop {
        let next = *deps[at]
            .iter()
            .find(|&&d| waiting[d] > 0)
            .expect("an unordered step waits for an unordered one");
        if let Some(&pos) = on_path.get(&next) {
            let mut cycle: Vec<&str> = path[pos..]
                .iter()
                .map(|&s| steps[s].name.as_str())
                .collect();
            cycle.reverse();
            cycle.insert(0, steps[next].name.as_str());
            return cycle.join(" → ");
        }
        on_path.insert(next, path.len());
        path.push(next);
        at = next;
    }
}

#[cfg(test)]
mod tests;
