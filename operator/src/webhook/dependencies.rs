//! Reading the tasks a McallTask's dependencies lead to, so that admission refuses a cycle
//! through several tasks as the controller would report it. Only tasks that wait for their own
//! dependencies are followed, as in the controller's check; most tasks have none and cost no
//! read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::GetParams;
use kube::{Api, Client};
use mcall_generated::McallTask;

use super::review::Dependencies;
use crate::controller::waits_for_dependencies;

/// Reads beyond this are not made: a closure that large is judged with what was read.
const MAX_READS: usize = 64;
/// Reads in flight at once (each may open a connection of its own).
const READS_AT_ONCE: usize = 8;
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
    let mut seen = seen_before_reading(&of.name);
    let mut level = unseen(&mut seen, of.names.iter().cloned(), &of.name);
    while !level.is_empty() {
        // Each read on its own deadline: those that made it are kept when others run late.
        let (api, reviewed) = (&api, of.name.as_str());
        let reads = level.clone().into_iter().map(move |name| async move {
            tokio::time::timeout_at(deadline, read_one(api, reviewed, &name)).await
        });
        let read: Vec<_> = futures::stream::iter(reads)
            .buffered(READS_AT_ONCE)
            .collect()
            .await;
        let late = read.iter().any(Result::is_err);
        let mut next = Vec::new();
        for (name, task) in level.into_iter().zip(read) {
            let Ok(Some(task)) = task else { continue };
            if waits_for_dependencies(&task) {
                next.extend(task.spec.dependencies.clone().unwrap_or_default());
            }
            known.insert(name, Arc::new(task));
        }
        if late {
            tracing::warn!(task = %of.name, "reading dependencies took over {budget:?}; judged with those read");
            break;
        }
        level = unseen(&mut seen, next.into_iter(), &of.name);
    }
    known
}

/// The names the reads start from having seen: the reviewed task itself, which is never read
/// (the cycle check stops where it started).
fn seen_before_reading(reviewed: &str) -> HashSet<String> {
    HashSet::from([reviewed.to_owned()])
}

/// The names not read yet, marked seen; none beyond [`MAX_READS`] in all (a closure that large
/// is judged with what was read).
fn unseen(
    seen: &mut HashSet<String>,
    names: impl Iterator<Item = String>,
    reviewed: &str,
) -> Vec<String> {
    let mut level = Vec::new();
    for name in names {
        if seen.contains(&name) {
            continue;
        }
        // `seen` holds the reviewed task besides the reads.
        if seen.len() > MAX_READS {
            tracing::info!(task = %reviewed, "more than {MAX_READS} dependencies to read; judged with those read");
            break;
        }
        seen.insert(name.clone());
        level.push(name);
    }
    level
}

/// One dependency of `reviewed`; `None` when it does not exist or cannot be read (logged).
async fn read_one(api: &Api<McallTask>, reviewed: &str, name: &str) -> Option<McallTask> {
    match api.get_with(name, &GetParams::any()).await {
        Ok(task) => Some(task),
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(error) => {
            tracing::warn!(task = %reviewed, dependency = %name, %error, "reading a dependency for admission failed");
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
        let mut seen = seen_before_reading("me");
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
