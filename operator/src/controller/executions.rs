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

/// One execution: its id tells it apart from a later execution of the same task.
#[derive(Clone, Debug)]
pub struct Execution {
    pub id: u64,
    pub token: CancellationToken,
}

#[derive(Debug)]
struct Running {
    uid: String,
    generation: i64,
    /// The scheduled time (tick or run-now request) of a scheduled task's run.
    scheduled: Option<Timestamp>,
    execution: Execution,
}

#[derive(Clone, Default)]
pub struct Executions {
    inner: Arc<Mutex<HashMap<TaskKey, Running>>>,
    next_id: Arc<AtomicU64>,
}

impl Executions {
    /// The generation running for this task (same uid: a re-created task is another task).
    pub fn generation_of(&self, key: &TaskKey, uid: &str) -> Option<i64> {
        let map = self.inner.lock().expect("not poisoned");
        map.get(key).filter(|r| r.uid == uid).map(|r| r.generation)
    }

    /// The scheduled time of the run in progress for this task, if one runs here.
    pub fn scheduled_run_of(&self, key: &TaskKey, uid: &str) -> Option<Timestamp> {
        let map = self.inner.lock().expect("not poisoned");
        map.get(key)
            .filter(|r| r.uid == uid)
            .and_then(|r| r.scheduled)
    }

    /// Registers a new execution, cancelling the one it replaces.
    pub fn start(&self, key: TaskKey, uid: &str, generation: i64) -> Execution {
        self.register(key, uid, generation, None, true)
    }

    /// Registers a scheduled run. With `cancel_previous` false (concurrency policy Allow) the run
    /// in progress keeps going, untracked: it reports only its history record.
    pub fn start_scheduled(
        &self,
        key: TaskKey,
        uid: &str,
        generation: i64,
        scheduled: Timestamp,
        cancel_previous: bool,
    ) -> Execution {
        self.register(key, uid, generation, Some(scheduled), cancel_previous)
    }

    fn register(
        &self,
        key: TaskKey,
        uid: &str,
        generation: i64,
        scheduled: Option<Timestamp>,
        cancel_previous: bool,
    ) -> Execution {
        let execution = Execution {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            token: CancellationToken::new(),
        };
        let running = Running {
            uid: uid.to_owned(),
            generation,
            scheduled,
            execution: execution.clone(),
        };
        let previous = self
            .inner
            .lock()
            .expect("not poisoned")
            .insert(key, running);
        if let Some(previous) = previous.filter(|_| cancel_previous) {
            previous.execution.token.cancel();
        }
        execution
    }

    /// Whether `execution` is still the task's current one (not replaced, not cancelled by delete).
    pub fn is_current(&self, key: &TaskKey, execution: &Execution) -> bool {
        let map = self.inner.lock().expect("not poisoned");
        map.get(key).is_some_and(|r| r.execution.id == execution.id)
    }

    /// Forgets `execution` if it is still the current one.
    pub fn finish(&self, key: &TaskKey, execution: &Execution) {
        let mut map = self.inner.lock().expect("not poisoned");
        if map.get(key).is_some_and(|r| r.execution.id == execution.id) {
            map.remove(key);
        }
    }

    /// Cancels and forgets the task's execution (the task is being deleted).
    pub fn cancel(&self, key: &TaskKey) {
        if let Some(r) = self.inner.lock().expect("not poisoned").remove(key) {
            r.execution.token.cancel();
        }
    }

    /// Cancels every execution but keeps them registered, so they still report their outcome.
    pub fn cancel_all(&self) {
        for r in self.inner.lock().expect("not poisoned").values() {
            r.execution.token.cancel();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TaskKey {
        TaskKey {
            namespace: "ns".into(),
            name: "t".into(),
        }
    }

    #[test]
    fn a_new_execution_replaces_and_cancels_the_old_one() {
        let ex = Executions::default();
        let first = ex.start(key(), "uid", 1);
        assert_eq!(ex.generation_of(&key(), "uid"), Some(1));
        assert_eq!(ex.generation_of(&key(), "other-uid"), None);
        let second = ex.start(key(), "uid", 2);
        assert!(first.token.is_cancelled());
        assert!(!ex.is_current(&key(), &first));
        assert!(ex.is_current(&key(), &second));
        ex.finish(&key(), &first);
        assert_eq!(
            ex.len(),
            1,
            "finishing a replaced execution leaves the new one"
        );
        ex.finish(&key(), &second);
        assert!(ex.is_empty());
    }

    #[test]
    fn cancel_forgets_and_cancels() {
        let ex = Executions::default();
        let e = ex.start(key(), "uid", 1);
        ex.cancel(&key());
        assert!(e.token.is_cancelled());
        assert!(!ex.is_current(&key(), &e));
    }
}
