//! What a task's dependencies look like in the cache: their phases, and whether waiting for them
//! would wait forever because they wait, in turn, for the task itself.

use std::collections::HashSet;
use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use mcall_generated::{McallTask, Phase};

/// The task's dependencies in the order of the spec, with their phase (`None`: no such task). A
/// dependency whose spec changed since its status was written counts as Pending: its result is
/// of a spec that is gone, and its new run is still to come.
pub(super) fn phases(store: &Store<McallTask>, task: &McallTask) -> Vec<(String, Option<Phase>)> {
    let namespace = task.namespace().unwrap_or_default();
    task.spec
        .dependencies
        .iter()
        .flatten()
        .map(|name| {
            let phase = store
                .get(&ObjectRef::new(name).within(&namespace))
                .map(|dep| {
                    dep.status
                        .as_ref()
                        .filter(|s| s.observed_generation == dep.metadata.generation)
                        .and_then(|s| s.phase)
                        .unwrap_or(Phase::Pending)
                });
            (name.clone(), phase)
        })
        .collect()
}

/// The cycle through `task` made of tasks that wait for their dependencies, as the names along
/// it (`[a, b, a]`), if there is one.
pub(super) fn cycle(store: &Store<McallTask>, task: &McallTask) -> Option<Vec<String>> {
    let namespace = task.namespace().unwrap_or_default();
    dependency_cycle(task, &|name| {
        store.get(&ObjectRef::new(name).within(&namespace))
    })
}

/// [`cycle`] with the tasks of `task`'s namespace looked up by name: the admission webhook
/// calls it with the tasks it read from the API server, the controller with its cache.
pub fn dependency_cycle(
    task: &McallTask,
    tasks: &dyn Fn(&str) -> Option<Arc<McallTask>>,
) -> Option<Vec<String>> {
    let own = task.spec.dependencies.clone().unwrap_or_default();
    find_cycle(&task.name_any(), own, |name| {
        tasks(name)
            .filter(|dep| waits_for_dependencies(dep))
            .and_then(|dep| dep.spec.dependencies.clone())
    })
}

/// Whether `task` is (or will be) waiting for its dependencies rather than running or done: a
/// one-shot task not yet finished for its generation. A scheduled task never waits for them.
pub fn waits_for_dependencies(task: &McallTask) -> bool {
    let status = task.status.as_ref();
    let current = status.and_then(|s| s.observed_generation) == task.metadata.generation;
    task.spec.schedule.is_none()
        && (!current || matches!(status.and_then(|s| s.phase), None | Some(Phase::Pending)))
}

/// A path from `start` back to itself. `waiting_on(name)` gives the dependencies a task is
/// waiting for (`None` when it waits for nothing: finished, running, scheduled or missing).
/// Depth-first; each task is visited once, so it ends on any graph.
fn find_cycle(
    start: &str,
    start_dependencies: Vec<String>,
    waiting_on: impl Fn(&str) -> Option<Vec<String>>,
) -> Option<Vec<String>> {
    let mut visited = HashSet::new();
    // Each frame: a task on the current path and the dependencies of it still to explore.
    let mut path: Vec<(String, std::vec::IntoIter<String>)> =
        vec![(start.to_owned(), start_dependencies.into_iter())];
    while let Some((_, next)) = path.last_mut() {
        let Some(dependency) = next.next() else {
            path.pop();
            continue;
        };
        if dependency == start {
            let mut names: Vec<String> = path.iter().map(|(name, _)| name.clone()).collect();
            names.push(dependency);
            return Some(names);
        }
        if !visited.insert(dependency.clone()) {
            continue;
        }
        if let Some(dependencies) = waiting_on(&dependency) {
            path.push((dependency, dependencies.into_iter()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(from, to)| (from.to_string(), to.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn cycle_of(start: &str, edges: &[(&str, &[&str])]) -> Option<Vec<String>> {
        let g = graph(edges);
        find_cycle(start, g.get(start).cloned().unwrap_or_default(), |name| {
            g.get(name).cloned()
        })
    }

    #[test]
    fn a_task_that_depends_on_itself_is_a_cycle() {
        assert_eq!(
            cycle_of("a", &[("a", &["a"])]),
            Some(vec!["a".into(), "a".into()])
        );
    }

    #[test]
    fn a_cycle_is_named_along_its_path() {
        let edges: &[(&str, &[&str])] = &[
            ("a", &["x", "b"]),
            ("x", &[]),
            ("b", &["c"]),
            ("c", &["d", "a"]),
            ("d", &["x"]),
        ];
        assert_eq!(
            cycle_of("a", edges),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
    }

    #[test]
    fn a_diamond_is_not_a_cycle() {
        let edges: &[(&str, &[&str])] =
            &[("a", &["b", "c"]), ("b", &["d"]), ("c", &["d"]), ("d", &[])];
        assert_eq!(cycle_of("a", edges), None);
    }

    #[test]
    fn a_cycle_the_task_is_not_on_is_not_its_cycle() {
        // a waits for b, which is stuck with c; that is theirs to report, and b's and c's
        // failure then skips a.
        let edges: &[(&str, &[&str])] = &[("a", &["b"]), ("b", &["c"]), ("c", &["b"])];
        assert_eq!(cycle_of("a", edges), None);
        assert_eq!(
            cycle_of("b", edges),
            Some(vec!["b".into(), "c".into(), "b".into()])
        );
    }

    #[test]
    fn a_task_that_waits_for_nothing_breaks_the_cycle() {
        // b is finished (or running, or missing): a only waits for it to end.
        let g = graph(&[("a", &["b"]), ("b", &["a"])]);
        let found = find_cycle("a", g["a"].clone(), |name| {
            (name != "b").then(|| g[name].clone())
        });
        assert_eq!(found, None);
    }
}
