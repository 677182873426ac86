//! Reading the tasks a McallTask's dependencies lead to, so that admission refuses a cycle
//! through several tasks as the controller would report it. Only tasks that wait for their own
//! dependencies are followed, as in the controller's check; most tasks have none and cost no
//! read.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use kube::{Api, Client};
use mcall_generated::McallTask;

use super::review::Dependencies;
use crate::controller::waits_for_dependencies;

/// Reads beyond this are not made: a chain that long is judged with what was read.
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

/// The tasks reachable from `of.names`, by name. A read that fails or runs out of `budget` is
/// left out: the controller still finds a cycle admission missed.
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
    let mut queue: VecDeque<String> = of.names.iter().cloned().collect();
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if seen.len() > MAX_READS + 1 {
            tracing::info!(task = %of.name, "more than {MAX_READS} dependencies to read; judged with those read");
            break;
        }
        match tokio::time::timeout_at(deadline, api.get_opt(&name)).await {
            Ok(Ok(Some(task))) => {
                if waits_for_dependencies(&task) {
                    queue.extend(task.spec.dependencies.clone().unwrap_or_default());
                }
                known.insert(name, Arc::new(task));
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                tracing::warn!(task = %of.name, dependency = %name, %error, "reading a dependency for admission failed");
            }
            Err(_) => {
                tracing::warn!(task = %of.name, "reading dependencies took over {budget:?}; judged with those read");
                break;
            }
        }
    }
    known
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
}
