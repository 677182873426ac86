//! The status this process last wrote for each workflow, until the cache shows it. A reconcile
//! right after a write (woken by a child) would otherwise plan from the version before it: a
//! write onto a stale version is refused (409) and the work waits for the next event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use mcall_generated::{McallWorkflow, McallWorkflowStatus};

/// Versions a cache may lag behind by before it is trusted again.
const CHAIN_MAX: usize = 16;

#[derive(Default)]
pub struct Written(Mutex<HashMap<String, Entry>>);

struct Entry {
    /// Versions this process wrote over: a cached object at one of them has not seen the write.
    bases: Vec<String>,
    object: Arc<McallWorkflow>,
}

impl Written {
    /// The newer of the cached workflow and the one this process last wrote.
    pub fn latest(&self, cached: Arc<McallWorkflow>) -> Arc<McallWorkflow> {
        let (Some(uid), Some(version)) = (cached.uid(), cached.resource_version()) else {
            return cached;
        };
        let mut map = self.0.lock().expect("not poisoned");
        match map.get(&uid) {
            Some(entry) if entry.bases.contains(&version) => entry.object.clone(),
            // Caught up, or changed by someone else: the cache knows best.
            Some(_) => {
                map.remove(&uid);
                cached
            }
            None => cached,
        }
    }

    /// Records that `status` was written onto `read`, giving version `written`.
    pub fn record(
        &self,
        read: &McallWorkflow,
        status: &McallWorkflowStatus,
        written: Option<String>,
    ) {
        let (Some(uid), Some(base)) = (read.uid(), read.resource_version()) else {
            return;
        };
        let mut map = self.0.lock().expect("not poisoned");
        let Some(version) = written else {
            map.remove(&uid);
            return;
        };
        let mut bases = match map.remove(&uid) {
            // A write onto the version this process wrote last: the chain goes on.
            Some(entry) if entry.object.resource_version().as_ref() == Some(&base) => entry.bases,
            _ => Vec::new(),
        };
        bases.push(base);
        if bases.len() > CHAIN_MAX {
            bases.remove(0);
        }
        let mut object = read.clone();
        object.status = Some(status.clone());
        object.metadata.resource_version = Some(version);
        map.insert(
            uid,
            Entry {
                bases,
                object: Arc::new(object),
            },
        );
    }

    pub fn forget(&self, uid: &str) {
        self.0.lock().expect("not poisoned").remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(version: &str, phase: &str) -> McallWorkflow {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mcall.tz.io/v1", "kind": "McallWorkflow",
            "metadata": {"name": "wf", "namespace": "ns", "uid": "u1", "resourceVersion": version},
            "spec": {"tasks": [{"name": "a", "type": "cmd", "input": "true"}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn status(phase: &str) -> McallWorkflowStatus {
        serde_json::from_value(serde_json::json!({"phase": phase})).unwrap()
    }

    #[test]
    fn a_lagging_cache_is_replaced_by_the_writes_until_it_catches_up() {
        let written = Written::default();
        let v1 = Arc::new(at("1", "Pending"));
        written.record(&v1, &status("Running"), Some("2".into()));
        let seen = written.latest(v1.clone());
        assert_eq!(seen.resource_version().as_deref(), Some("2"));
        // A second write onto the remembered version: the cache, still at 1, lags two writes.
        written.record(&seen, &status("Succeeded"), Some("3".into()));
        let seen = written.latest(v1.clone());
        assert_eq!(seen.resource_version().as_deref(), Some("3"));
        // Caught up: the cache is trusted and the memory goes.
        let v3 = Arc::new(at("3", "Succeeded"));
        assert!(Arc::ptr_eq(&written.latest(v3.clone()), &v3));
        assert!(Arc::ptr_eq(&written.latest(v1.clone()), &v1), "forgotten");
    }

    #[test]
    fn a_change_by_someone_else_is_trusted() {
        let written = Written::default();
        let v1 = Arc::new(at("1", "Pending"));
        written.record(&v1, &status("Running"), Some("2".into()));
        let v5 = Arc::new(at("5", "Pending"));
        assert!(Arc::ptr_eq(&written.latest(v5.clone()), &v5));
    }
}
