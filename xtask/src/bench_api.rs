//! What the API server can take, and what a benchmark's run cost it: the raw write rates a
//! minimal client reaches on the plane (the ceiling every throughput is compared with) and the
//! requests counted on the API server's own metrics (`apiserver_request_total`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::json;

/// Requests by `"<VERB> <resource>[/<subresource>]"`, all clients and codes; the conflicts
/// among them (409) also under `"409 <VERB> <resource>…"`. Server-side apply is the verb `APPLY`.
/// The API server's timing of them under the prefixes of [`TIMINGS`].
pub type Counts = BTreeMap<String, f64>;

/// The series read from the API server's metrics, and the prefix of their keys in [`Counts`].
const SERIES: [(&str, &str); 4] = [
    ("apiserver_request_total{", ""),
    // The seconds spent on them, how many were timed, and how many took at most 0.4 s.
    ("apiserver_request_duration_seconds_sum{", "seconds "),
    ("apiserver_request_duration_seconds_count{", "timed "),
    ("apiserver_request_duration_seconds_bucket{", "fast "),
];

/// The key prefixes of timings, not requests, in [`Counts`].
const TIMINGS: [&str; 3] = ["seconds ", "timed ", "fast "];

/// The bucket of `apiserver_request_duration_seconds` counted as `fast`.
const FAST: &str = "0.4";

/// `apiserver_request_total` by verb and resource (all clients, all codes; watches and lists
/// left out), the conflicts among them, and `apiserver_request_duration_seconds`, from the API
/// server's own metrics.
pub async fn request_counts(client: &Client) -> Result<Counts> {
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new())?)
        .await
        .context("reading the API server's metrics")?;
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(&(_, prefix)) = SERIES.iter().find(|(series, _)| line.starts_with(series)) else {
            continue;
        };
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("")
        };
        let (Some(value), verb) = (
            line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()),
            label("verb"),
        ) else {
            continue;
        };
        if verb == "WATCH" || verb == "LIST" || (prefix == "fast " && label("le") != FAST) {
            continue;
        }
        let resource = match label("subresource") {
            "" => label("resource").to_owned(),
            sub => format!("{}/{sub}", label("resource")),
        };
        *counts
            .entry(format!("{prefix}{verb} {resource}"))
            .or_insert(0.0) += value;
        if prefix.is_empty() && label("code") == "409" {
            *counts
                .entry(format!("409 {verb} {resource}"))
                .or_insert(0.0) += value;
        }
    }
    Ok(counts)
}

/// Polls the counts until `key` (e.g. `"POST events"`) grew by at least `at_least` since
/// `before`, or `limit` passed; returns the last counts read.
pub async fn counts_once(
    client: &Client,
    before: &Counts,
    key: &str,
    at_least: usize,
    limit: Duration,
) -> Result<Counts> {
    let deadline = Instant::now() + limit;
    loop {
        let after = request_counts(client).await?;
        if grown(before, &after, key) >= at_least || Instant::now() >= deadline {
            return Ok(after);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How much `key` grew from `before` to `after`.
pub fn grown(before: &Counts, after: &Counts, key: &str) -> usize {
    delta(before, after, key).max(0.0) as usize
}

/// How much counter `key` changed from `before` to `after` (absent counts as 0).
fn delta(before: &Counts, after: &Counts, key: &str) -> f64 {
    let value = |c: &Counts| c.get(key).copied().unwrap_or(0.0);
    value(after) - value(before)
}

/// The requests between `before` and `after` per unit (a task, a step), as a JSON object of the
/// keys that `keep` accepts; those under 0.01 per unit are left out.
pub fn requests_per(
    before: &Counts,
    after: &Counts,
    units: usize,
    keep: impl Fn(&str) -> bool,
) -> serde_json::Map<String, serde_json::Value> {
    after
        .keys()
        .filter(|key| !TIMINGS.iter().any(|t| key.starts_with(t)) && keep(key))
        .filter_map(|key| {
            let per_unit = delta(before, after, key) / units as f64;
            (per_unit >= 0.01).then(|| (key.clone(), json!((per_unit * 100.0).round() / 100.0)))
        })
        .collect()
}

/// The API server's mean time per request between `before` and `after`, in ms, of the keys that
/// `keep` accepts (those with requests in between).
pub fn mean_latency_ms(
    before: &Counts,
    after: &Counts,
    keep: impl Fn(&str) -> bool,
) -> serde_json::Map<String, serde_json::Value> {
    let delta = |key: &str| delta(before, after, key);
    after
        .keys()
        .filter_map(|key| key.strip_prefix("timed "))
        .filter(|key| keep(key) && delta(&format!("timed {key}")) >= 1.0)
        .map(|key| {
            let ms = delta(&format!("seconds {key}")) / delta(&format!("timed {key}")) * 1000.0;
            (key.to_owned(), json!((ms * 10.0).round() / 10.0))
        })
        .collect()
}

/// How many requests between `before` and `after` the API server took more than 0.4 s over, of
/// the keys that `keep` accepts (those with any).
pub fn slow_requests(
    before: &Counts,
    after: &Counts,
    keep: impl Fn(&str) -> bool,
) -> serde_json::Map<String, serde_json::Value> {
    let delta = |key: &str| delta(before, after, key);
    after
        .keys()
        .filter_map(|key| key.strip_prefix("timed "))
        .filter(|key| keep(key))
        .filter_map(|key| {
            let slow = delta(&format!("timed {key}")) - delta(&format!("fast {key}"));
            (slow >= 1.0).then(|| (key.to_owned(), json!(slow as u64)))
        })
        .collect()
}

/// Whether a key of [`Counts`] counts writes (conflicts included; not the `409 …` keys).
pub fn is_write(key: &str) -> bool {
    ["POST ", "PATCH ", "APPLY ", "PUT ", "DELETE "]
        .iter()
        .any(|verb| key.starts_with(verb))
}

/// Raw write rates on the plane, per second.
pub struct RawRates {
    pub creates: f64,
    pub replace: f64,
    pub apply: f64,
    pub merge: f64,
    pub events: f64,
}

impl RawRates {
    /// The ceiling of status writes: the fastest way of writing one.
    pub fn status_writes(&self) -> f64 {
        self.apply.max(self.merge).max(self.replace)
    }
}

/// The McallTask resource, untyped: xtask must build even when spec/ changed and `generated` is
/// stale.
pub fn tasks_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("mcall.tz.io", "v1", "McallTask"),
        "mcalltasks",
    )
}

/// The McallWorkflow resource, untyped like [`tasks_resource`].
pub fn workflows_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("mcall.tz.io", "v1", "McallWorkflow"),
        "mcallworkflows",
    )
}

/// A minimal client's write rates, 16 requests in flight, `writes` of each kind: task creates in
/// the unwatched `bench-raw` namespace, and status writes (server-side apply, merge patch and
/// replace) and Events onto the existing tasks of `tasks` named `target(i)`. The operator should be
/// idle by now: it sees the status writes, as it sees its own.
pub async fn raw_rates(
    client: &Client,
    tasks: &Api<DynamicObject>,
    writes: usize,
    target: &(dyn Fn(usize) -> String + Sync),
) -> Result<RawRates> {
    let unwatched: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "bench-raw", &tasks_resource());
    let creates = raw_rate(writes, |i| {
        let unwatched = unwatched.clone();
        async move {
            let task: DynamicObject = serde_json::from_value(json!({"apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "metadata": {"name": format!("raw-{i}")}, "spec": {"type": "cmd", "input": "true"}}))
                .map_err(kube::Error::SerdeError)?;
            unwatched.create(&PostParams::default(), &task).await.map(drop)
        }
    })
    .await?;
    let apply = raw_rate(writes, |i| async move {
        let patch = json!({"apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "status": {"message": format!("bench apply {i}")}});
        let params = PatchParams::apply("bench-raw").force();
        tasks.patch_status(&target(i), &params, &Patch::Apply(&patch)).await.map(drop)
    })
    .await?;
    let merge = raw_rate(writes, |i| async move {
        let patch = json!({"status": {"message": format!("bench merge {i}")}});
        let params = PatchParams::default();
        tasks
            .patch_status(&target(i), &params, &Patch::Merge(&patch))
            .await
            .map(drop)
    })
    .await?;
    // A replace (PUT) carries the whole object at the version read: one LIST first.
    let objects: std::collections::HashMap<String, DynamicObject> = tasks
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .map(|t| (t.name_any(), t))
        .collect();
    let replace = raw_rate(writes, |i| {
        let mut task = objects[&target(i)].clone();
        async move {
            task.metadata.managed_fields = None;
            task.data["status"]["message"] = json!(format!("bench replace {i}"));
            tasks
                .replace_status(&task.name_any(), &PostParams::default(), &task)
                .await
                .map(drop)
        }
    })
    .await?;
    let events = raw_rate(writes, |i| raw_event(client, i, target(i))).await?;
    Ok(RawRates {
        creates,
        replace,
        apply,
        merge,
        events,
    })
}

/// One Event about the task `name`, as the operator records them.
async fn raw_event(client: &Client, i: usize, name: String) -> Result<(), kube::Error> {
    let events: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "bench",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
            "events",
        ),
    );
    let event: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"generateName": "bench-"},
        "eventTime": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
        "reportingController": "bench", "reportingInstance": "bench", "action": "Bench",
        "reason": "Bench", "type": "Normal", "note": format!("bench event {i}"),
        "regarding": {"apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "namespace": "bench", "name": name}
    }))
    .map_err(kube::Error::SerdeError)?;
    events
        .create(&PostParams::default(), &event)
        .await
        .map(drop)
}

/// How many of `write(i)`, `writes` of them 16 at a time, complete per second.
async fn raw_rate<F, Fut>(writes: usize, write: F) -> Result<f64>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    let t = Instant::now();
    futures::stream::iter(0..writes)
        .map(write)
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(writes as f64 / t.elapsed().as_secs_f64())
}
