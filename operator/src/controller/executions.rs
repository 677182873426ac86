//! The executions this process runs, by task. In memory on purpose: after a restart the map is
//! empty, which is how a task left `Running` is recognised as interrupted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TaskKey {
    pub namespace: String,
    pub name: String,
}

impl TaskKey {
    pub fn of(object: &impl kube::ResourceExt) -> TaskKey {
        TaskKey {
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
        }
    }
}

/// One execution: its id tells it apart from a later execution of the same task.
#[derive(Clone, Debug)]
pub struct Execution {
    pub id: u64,
    pub token: CancellationToken,
}

#[derive(Debug)]
struct Current {
    uid: String,
    generation: i64,
    /// The scheduled time (tick or run-now request) of a scheduled task's run.
    scheduled: Option<Timestamp>,
    execution: Execution,
}

/// A task's executions: the current one, whose result is the task's status, and older ones a
/// newer run overtook while they still run (concurrency policy Allow, or a run whose claim is
/// still being written), which only add their history record.
#[derive(Debug, Default)]
struct TaskRuns {
    current: Option<Current>,
    overtaken: Vec<Current>,
    /// The uid and generation of a one-shot run that finished and wrote its result, until the
    /// cache shows that result: a reconcile in between would see a task that never ran.
    reported: Option<(String, i64)>,
    /// The uid and scheduled time of the latest scheduled run this process finished, so a tick
    /// whose result could not be written is never taken for one that did not run.
    last_ran: Option<(String, Timestamp)>,
}

impl TaskRuns {
    fn is_empty(&self) -> bool {
        self.current.is_none()
            && self.overtaken.is_empty()
            && self.reported.is_none()
            && self.last_ran.is_none()
    }
}

/// What this process runs, or just reported, of one task (one uid): what a plan decides on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunsHere {
    /// The current run: its generation, and its scheduled time if it is a scheduled run.
    pub current: Option<CurrentRun>,
    /// The generation of a one-shot run whose result was written but is not in the cache yet.
    pub reported: Option<i64>,
    /// The scheduled time of the latest scheduled run this process finished.
    pub last_ran: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrentRun {
    pub generation: i64,
    pub scheduled: Option<Timestamp>,
}

#[derive(Clone, Default)]
pub struct Executions {
    inner: Arc<Mutex<HashMap<TaskKey, TaskRuns>>>,
    next_id: Arc<AtomicU64>,
}

impl Executions {
    fn new_execution(&self) -> Execution {
        Execution {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            token: CancellationToken::new(),
        }
    }

    /// A snapshot of what runs here for the task with this uid (a re-created task is another).
    pub fn runs_here(&self, key: &TaskKey, uid: &str) -> RunsHere {
        let map = self.inner.lock().expect("not poisoned");
        let Some(runs) = map.get(key) else {
            return RunsHere::default();
        };
        RunsHere {
            current: runs
                .current
                .as_ref()
                .filter(|c| c.uid == uid)
                .map(|c| CurrentRun {
                    generation: c.generation,
                    scheduled: c.scheduled,
                }),
            reported: runs
                .reported
                .as_ref()
                .filter(|(u, _)| u == uid)
                .map(|(_, g)| *g),
            last_ran: runs
                .last_ran
                .as_ref()
                .filter(|(u, _)| u == uid)
                .map(|(_, at)| *at),
        }
    }

    /// The cache shows the finished result of `generation`: the written-result marker of that
    /// generation (or an older one) is no longer needed.
    pub fn settle(&self, key: &TaskKey, uid: &str, generation: i64) {
        let mut map = self.inner.lock().expect("not poisoned");
        let Some(runs) = map.get_mut(key) else { return };
        if runs
            .reported
            .take_if(|(u, g)| u == uid && *g <= generation)
            .is_some()
            && runs.is_empty()
        {
            map.remove(key);
        }
    }

    /// Registers a one-shot execution, cancelling every other one of the task (a new generation
    /// replaces the old).
    pub fn start(&self, key: TaskKey, uid: &str, generation: i64) -> Execution {
        let execution = self.new_execution();
        let mut map = self.inner.lock().expect("not poisoned");
        let runs = map.entry(key).or_default();
        for old in runs
            .current
            .take()
            .into_iter()
            .chain(runs.overtaken.drain(..))
        {
            old.execution.token.cancel();
        }
        runs.reported = None;
        runs.current = Some(Current {
            uid: uid.to_owned(),
            generation,
            scheduled: None,
            execution: execution.clone(),
        });
        execution
    }

    /// Registers a scheduled run as current; the run it overtakes keeps going until the claim
    /// of the new one is written: then [`Executions::confirm_scheduled`] decides its fate, or
    /// [`Executions::forget_unstarted`] puts it back.
    pub fn start_scheduled(
        &self,
        key: TaskKey,
        uid: &str,
        generation: i64,
        scheduled: Timestamp,
    ) -> Execution {
        let execution = self.new_execution();
        let mut map = self.inner.lock().expect("not poisoned");
        let runs = map.entry(key).or_default();
        if let Some(previous) = runs.current.take() {
            runs.overtaken.push(previous);
        }
        runs.current = Some(Current {
            uid: uid.to_owned(),
            generation,
            scheduled: Some(scheduled),
            execution: execution.clone(),
        });
        execution
    }

    /// The claim of `execution` was written: with `cancel_previous` (Replace) the overtaken runs
    /// are cancelled; otherwise (Allow) they finish on their own.
    pub fn confirm_scheduled(&self, key: &TaskKey, cancel_previous: bool) {
        if !cancel_previous {
            return;
        }
        let map = self.inner.lock().expect("not poisoned");
        for old in map.get(key).into_iter().flat_map(|r| &r.overtaken) {
            old.execution.token.cancel();
        }
    }

    /// The claim of `execution` failed (or its vouch never came): forget it, and if it was current
    /// make the run it overtook current again.
    pub fn forget_unstarted(&self, key: &TaskKey, execution: &Execution) {
        let mut map = self.inner.lock().expect("not poisoned");
        let Some(runs) = map.get_mut(key) else { return };
        if runs
            .current
            .as_ref()
            .is_some_and(|c| c.execution.id == execution.id)
        {
            runs.current = runs.overtaken.pop();
        } else {
            // Overtaken meanwhile (a chained run that never got its vouch): forgotten all the same.
            runs.overtaken.retain(|o| o.execution.id != execution.id);
        }
        if runs.is_empty() {
            map.remove(key);
        }
    }

    /// Whether `execution` is still the task's current one (not replaced, not cancelled by delete).
    pub fn is_current(&self, key: &TaskKey, execution: &Execution) -> bool {
        let map = self.inner.lock().expect("not poisoned");
        map.get(key)
            .and_then(|r| r.current.as_ref())
            .is_some_and(|c| c.execution.id == execution.id)
    }

    /// Cancels the task's one-shot execution of a generation older than `generation`: the spec
    /// it runs is gone, whatever the new generation decides (it may wait for dependencies, or
    /// be invalid). Its result is then written nowhere (it is no longer current).
    pub fn cancel_older_one_shot(&self, key: &TaskKey, uid: &str, generation: i64) {
        let mut map = self.inner.lock().expect("not poisoned");
        let Some(runs) = map.get_mut(key) else {
            return;
        };
        let stale = runs
            .current
            .as_ref()
            .is_some_and(|c| c.uid == uid && c.scheduled.is_none() && c.generation < generation);
        if stale && let Some(old) = runs.current.take() {
            old.execution.token.cancel();
        }
    }

    /// Forgets `execution`, current or overtaken.
    pub fn finish(&self, key: &TaskKey, execution: &Execution) {
        self.finish_with(key, execution, false);
    }

    /// Forgets the one-shot `execution` whose result was just written, remembering its generation
    /// until [`Executions::settle`] says the cache has caught up.
    pub fn finish_reported(&self, key: &TaskKey, execution: &Execution) {
        self.finish_with(key, execution, true);
    }

    fn finish_with(&self, key: &TaskKey, execution: &Execution, reported: bool) {
        let mut map = self.inner.lock().expect("not poisoned");
        let Some(runs) = map.get_mut(key) else { return };
        let finished = match runs.current.take_if(|c| c.execution.id == execution.id) {
            Some(current) => Some(current),
            None => runs
                .overtaken
                .iter()
                .position(|o| o.execution.id == execution.id)
                .map(|i| runs.overtaken.remove(i)),
        };
        if let Some(finished) = finished {
            if let Some(scheduled) = finished.scheduled {
                let latest = runs
                    .last_ran
                    .as_ref()
                    .filter(|(uid, _)| *uid == finished.uid)
                    .map_or(scheduled, |(_, ran)| (*ran).max(scheduled));
                runs.last_ran = Some((finished.uid.clone(), latest));
            }
            if reported {
                runs.reported = Some((finished.uid, finished.generation));
            }
        }
        if runs.is_empty() {
            map.remove(key);
        }
    }

    /// Forgets what is remembered about tasks that `exists` says are gone (after a watch gap, a
    /// deletion may have had no event). Only memory: their executions were cancelled already.
    pub fn forget_missing(&self, mut exists: impl FnMut(&TaskKey, &str) -> bool) {
        let mut map = self.inner.lock().expect("not poisoned");
        map.retain(|key, runs| {
            runs.reported.take_if(|(uid, _)| !exists(key, uid));
            runs.last_ran.take_if(|(uid, _)| !exists(key, uid));
            !runs.is_empty()
        });
    }

    /// Cancels and forgets the executions of the task with this uid (it was deleted); a task
    /// re-created under the same name is another task and keeps its own.
    pub fn cancel_deleted(&self, key: &TaskKey, uid: &str) {
        let mut map = self.inner.lock().expect("not poisoned");
        let Some(runs) = map.get_mut(key) else { return };
        if let Some(current) = runs.current.take_if(|c| c.uid == uid) {
            current.execution.token.cancel();
        }
        runs.reported.take_if(|(u, _)| u == uid);
        runs.last_ran.take_if(|(u, _)| u == uid);
        runs.overtaken.retain(|run| {
            let deleted = run.uid == uid;
            if deleted {
                run.execution.token.cancel();
            }
            !deleted
        });
        if runs.is_empty() {
            map.remove(key);
        }
    }

    /// Every task (key and uid) with a registered execution.
    pub fn tasks(&self) -> Vec<(TaskKey, String)> {
        let map = self.inner.lock().expect("not poisoned");
        map.iter()
            .flat_map(|(key, runs)| {
                runs.current
                    .iter()
                    .chain(&runs.overtaken)
                    .map(|run| (key.clone(), run.uid.clone()))
            })
            .collect()
    }

    /// Cancels every execution but keeps them registered, so they still report their outcome.
    pub fn cancel_all(&self) {
        let map = self.inner.lock().expect("not poisoned");
        for run in map
            .values()
            .flat_map(|r| r.current.iter().chain(&r.overtaken))
        {
            run.execution.token.cancel();
        }
    }

    /// Executions still running, overtaken ones included.
    pub fn len(&self) -> usize {
        let map = self.inner.lock().expect("not poisoned");
        map.values()
            .map(|r| usize::from(r.current.is_some()) + r.overtaken.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
