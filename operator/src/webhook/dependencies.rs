//! Reading the tasks a McallTask's dependencies lead to, so that admission refuses a cycle
//! through several tasks as the controller would report it. Only tasks that wait for their own
//! dependencies are followed, as in the controller's check; most tasks have none and cost no
//! read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kube::api::GetParams;
use kube::{Api, Client};
use mcall_generated::McallTask;

use super::review::Dependencies;
use crate::controller::waits_for_dependencies;

/// Reads beyond this are not made: a closure that large is judged with what was read.
const MAX_READS: usize = 64;
/// The most the reads may take: half the time the API server gives the webhook (its
/// `timeoutSeconds`, sent as `?timeout=`), at most this.
const MAX_BUDGET: Duration = Duration::from_secs(2);

/// How long the reads may take, from the `timeout` the API server puts in the webhook's URL
/// (`5s`): half of it, at most [`MAX_BUDGET`]; [`MAX_BUDGET`] when there is none.
pub fn budget(query: Option<&str>) -> Duration {
    let timeout = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("timeout="))
        .and_then(|value| value.strip_suffix('s'))
        .and_then(|seconds| seconds.parse::<u64>().ok())
        .map(Duration::from_secs);
    timeout.map_or(MAX_BUDGET, |t| (t / 2).min(MAX_BUDGET))
}

/// The tasks reachable from `of.names`, by name, read a level at a time (each level's reads at
/// once) from the API server's cache (`resourceVersion=0`: no quorum read from etcd; a task
/// created a moment ago may be missed, as may one whose read fails or runs out of `budget`,
/// and the controller still finds a cycle admission missed).
pub async fn read(
    client: &Client,
    of: &Dependencies,
    budget: Duration,
) -> HashMap<String, Arc<McallTask>> {
    let api: Api<McallTask> = Api::namespaced(client.clone(), &of.namespace);
    let deadline = tokio::time::Instant::now() + budget;
    let mut known = HashMap::new();
    // The reviewed task itself is never read: the cycle check stops where it started.
    let mut seen: HashSet<String> = HashSet::from([of.name.clone()]);
    let mut level = unseen(&mut seen, of.names.iter().cloned(), &of.name);
    while !level.is_empty() {
        let reads = futures::future::join_all(level.iter().map(|name| read_one(&api, name)));
        let Ok(read) = tokio::time::timeout_at(deadline, reads).await else {
            tracing::warn!(task = %of.name, "reading dependencies took over {budget:?}; judged with those read");
            break;
        };
        let mut next = Vec::new();
        for (name, task) in level.into_iter().zip(read) {
            let Some(task) = task else { continue };
            if waits_for_dependencies(&task) {
                next.extend(task.spec.dependencies.clone().unwrap_or_default());
            }
            known.insert(name, Arc::new(task));
        }
        level = unseen(&mut seen, next.into_iter(), &of.name);
    }
    known
}

/// The names not read yet, marked seen; none once [`MAX_READS`] are (a chain that long is
/// judged with what was read).
fn unseen(
    seen: &mut HashSet<String>,
    names: impl Iterator<Item = String>,
    reviewed: &str,
) -> Vec<String> {
    let mut level = Vec::new();
    for name in names {
        if seen.len() > MAX_READS {
            tracing::info!(task = %reviewed, "more than {MAX_READS} dependencies to read; judged with those read");
            break;
        }
        if seen.insert(name.clone()) {
            level.push(name);
        }
    }
    level
}

/// One dependency; `None` when it does not exist or cannot be read (logged).
async fn read_one(api: &Api<McallTask>, name: &str) -> Option<McallTask> {
    match api.get_with(name, &GetParams::any()).await {
        Ok(task) => Some(task),
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(error) => {
            tracing::warn!(dependency = %name, %error, "reading a dependency for admission failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reads_take_half_the_api_servers_timeout_at_most_two_seconds() {
        assert_eq!(budget(Some("timeout=1s")), Duration::from_millis(500));
        assert_eq!(budget(Some("x=1&timeout=10s")), MAX_BUDGET);
        assert_eq!(budget(None), MAX_BUDGET);
        assert_eq!(budget(Some("timeout=soon")), MAX_BUDGET);
    }

    #[test]
    fn each_task_is_read_once_the_reviewed_one_never_and_at_most_max_reads_in_all() {
        let names = |list: &[&str]| list.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let mut seen = HashSet::from(["me".to_owned()]);
        let first = unseen(&mut seen, names(&["a", "b", "a", "me"]).into_iter(), "me");
        assert_eq!(first, names(&["a", "b"]));
        let second = unseen(&mut seen, names(&["b", "c"]).into_iter(), "me");
        assert_eq!(second, names(&["c"]));
        let many = (0..100).map(|i| format!("t{i}"));
        let third = unseen(&mut seen, many, "me");
        assert_eq!(
            third.len(),
            MAX_READS - 3,
            "64 reads in all: a, b, c and 61 more"
        );
        assert!(unseen(&mut seen, names(&["z"]).into_iter(), "me").is_empty());
    }
}
