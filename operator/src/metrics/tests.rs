use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, UNIX_EPOCH};

use http::{Request, Response};

use super::*;

/// A metric as exposed: its type and label names (`le` of histogram buckets aside), by the name
/// its samples carry (counters with `_total`, info metrics with `_info`).
type Shapes = BTreeMap<String, (String, BTreeSet<String>)>;

/// `# TYPE` lines of an exposition: metric family name → type.
fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| {
            let (name, kind) = rest.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

/// The label names of a sample line `name{a="x",b="y"} 1`, and its name.
fn sample(line: &str) -> (&str, BTreeSet<String>) {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let labels = line[name_end..]
        .strip_prefix('{')
        .and_then(|rest| rest.split_once('}'))
        .map(|(labels, _)| labels.split(',').filter_map(|l| l.split_once('=')))
        .into_iter()
        .flatten()
        .map(|(key, _)| key.to_owned())
        .filter(|key| key != "le")
        .collect();
    (&line[..name_end], labels)
}

fn exposed(text: &str) -> Shapes {
    let mut shapes = Shapes::new();
    for (family, kind) in types(text) {
        let name = match kind.as_str() {
            "counter" => format!("{family}_total"),
            "info" => format!("{family}_info"),
            _ => family.clone(),
        };
        let samples = [
            &name,
            &format!("{family}_bucket"),
            &format!("{family}_count"),
        ];
        let labels = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(sample)
            .filter(|(sample, _)| samples.iter().any(|s| s.as_str() == *sample))
            .flat_map(|(_, labels)| labels)
            .collect();
        shapes.insert(name, (kind, labels));
    }
    shapes
}

/// The value of the sample `series` (name with labels, as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// The rows of the README's "Metrics" table, `| `name` | type | `label` (values), … | meaning |`.
fn documented() -> Shapes {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .expect("the README has a Metrics section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|line| {
            let mut cells = line.split('|').map(str::trim).skip(1);
            let name = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            let kind = cells.next()?.to_owned();
            Some((name.to_owned(), (kind, label_names(cells.next()?))))
        })
        .filter(|(name, _)| name.starts_with("mcall_"))
        .collect()
}

/// The backquoted words of a labels cell outside parentheses (which hold their values).
fn label_names(cell: &str) -> BTreeSet<String> {
    let mut depth = 0;
    let outside: String = cell
        .chars()
        .filter(|c| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => return depth == 0,
            }
            false
        })
        .collect();
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Metrics with a series in every family (a family shows only once it has one).
fn in_use() -> Metrics {
    let metrics = Metrics::default();
    drop(metrics.reconcile.count_and_measure("McallTask"));
    metrics
        .reconcile
        .count_error("McallTask", "writing the status");
    metrics
        .executions
        .record("cmd", "Succeeded", Duration::from_secs(1));
    metrics.executions.observe_schedule_lag(Duration::ZERO);
    let finished = UNIX_EPOCH + Duration::from_secs(1);
    metrics.tasks.record(("ns", "t"), true, finished, || true);
    metrics.api.count("get", api::Code(Some(200)));
    metrics
}

#[test]
fn every_metric_is_documented_in_the_readme_with_its_type() {
    let text = in_use().encode();
    assert_eq!(
        exposed(&text),
        documented(),
        "README's Metrics table vs\n{text}"
    );
}

#[test]
fn a_fresh_registry_shows_build_info_and_not_leading() {
    let text = Metrics::default().encode();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&text, &format!("mcall_build_info{{version=\"{version}\"}}")),
        Some(1.0)
    );
    assert_eq!(value(&text, "mcall_leader"), Some(0.0));
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn reconciles_are_counted_timed_and_their_errors_labelled() {
    let metrics = Metrics::default();
    drop(metrics.reconcile.count_and_measure("McallTask"));
    drop(metrics.reconcile.count_and_measure("McallTask"));
    metrics
        .reconcile
        .count_error("McallTask", "patching the status");
    metrics.set_leader(true);
    let text = metrics.encode();
    assert_eq!(
        value(&text, "mcall_reconciles_total{kind=\"McallTask\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "mcall_reconcile_errors_total{kind=\"McallTask\",error=\"patching the status\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "mcall_reconcile_duration_seconds_count{kind=\"McallTask\"}"
        ),
        Some(2.0)
    );
    assert_eq!(value(&text, "mcall_leader"), Some(1.0));
}

#[test]
fn executions_are_counted_by_type_and_result_with_durations_and_lag() {
    let metrics = Metrics::default();
    let executions = &metrics.executions;
    executions.record("get", "Succeeded", Duration::from_millis(30));
    executions.record("get", "Failed", Duration::from_millis(20));
    executions.record("cmd", "Failed", Duration::from_secs(2));
    executions.observe_schedule_lag(Duration::from_millis(40));
    let text = metrics.encode();
    for (series, expected) in [
        (
            "mcall_executions_total{type=\"get\",result=\"Succeeded\"}",
            1.0,
        ),
        (
            "mcall_executions_total{type=\"get\",result=\"Failed\"}",
            1.0,
        ),
        (
            "mcall_executions_total{type=\"cmd\",result=\"Failed\"}",
            1.0,
        ),
        ("mcall_execution_duration_seconds_count{type=\"get\"}", 2.0),
        ("mcall_execution_duration_seconds_sum{type=\"cmd\"}", 2.0),
        (
            "mcall_execution_duration_seconds_bucket{le=\"0.025\",type=\"get\"}",
            1.0,
        ),
        ("mcall_schedule_lag_seconds_count", 1.0),
        ("mcall_schedule_lag_seconds_bucket{le=\"0.05\"}", 1.0),
        ("mcall_schedule_lag_seconds_bucket{le=\"0.025\"}", 0.0),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
    }
}

#[test]
fn task_gauges_follow_results_and_go_with_the_task() {
    let metrics = Metrics::default();
    let tasks = &metrics.tasks;
    let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    tasks.record(("ns", "a"), false, at, || true);
    tasks.record(("ns", "a"), false, at, || true);
    tasks.record(("ns", "b"), true, at, || true);
    // A result that arrives once the task is gone leaves no series.
    tasks.record(("ns", "gone"), false, at, || false);
    let text = metrics.encode();
    let labels = |name: &str| format!("{{namespace=\"ns\",name=\"{name}\"}}");
    let get = |metric: &str, name: &str| value(&text, &format!("{metric}{}", labels(name)));
    assert_eq!(get("mcall_task_up", "a"), Some(0.0));
    assert_eq!(get("mcall_task_consecutive_failures", "a"), Some(2.0));
    assert_eq!(get("mcall_task_up", "b"), Some(1.0));
    assert_eq!(get("mcall_task_consecutive_failures", "b"), Some(0.0));
    assert_eq!(
        get("mcall_task_last_run_timestamp_seconds", "b"),
        Some(1_800_000_000.0)
    );
    assert_eq!(get("mcall_task_up", "gone"), None);

    tasks.record(("ns", "a"), true, at, || true);
    tasks.forget("ns", "b");
    let text = metrics.encode();
    let get = |metric: &str, name: &str| value(&text, &format!("{metric}{}", labels(name)));
    assert_eq!(get("mcall_task_up", "a"), Some(1.0));
    assert_eq!(get("mcall_task_consecutive_failures", "a"), Some(0.0));
    assert!(!text.contains("name=\"b\""), "{text}");

    tasks.retain(|_, name| name != "a");
    assert!(!metrics.encode().contains("name=\"a\""));
}

#[test]
fn api_requests_are_counted_by_verb_and_code() {
    use tower::{Layer, Service, ServiceExt};

    let metrics = Metrics::default();
    let backend = tower::service_fn(|request: Request<()>| async move {
        match request.uri().path() {
            "/down" => Err("connection refused"),
            _ => Ok(Response::builder().status(404).body(()).unwrap()),
        }
    });
    // `service_fn`'s future is not Unpin; the client's boxed one is.
    let backend = tower::util::BoxService::new(backend);
    let mut service = metrics.api_layer().layer(backend);
    let request = |method: &str, path: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ready = service.ready().await.unwrap();
        let _ = ready
            .call(request("GET", "/api/v1/namespaces/ns/pods/p"))
            .await;
        let ready = service.ready().await.unwrap();
        let _ = ready.call(request("PATCH", "/down")).await;
    });
    let text = metrics.encode();
    assert_eq!(
        value(&text, "mcall_api_requests_total{verb=\"get\",code=\"404\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "mcall_api_requests_total{verb=\"patch\",code=\"error\"}"
        ),
        Some(1.0),
        "{text}"
    );
}
