//! `cargo xtask bench admission`: the admission webhook's latency as the API server measures
//! it. The release operator serves the webhook on loopback (a throwaway CA), registered for the
//! `bench` namespace only, and watches no namespace (nothing runs: only admission is measured).
//! McallTasks are created one at a time, valid ones and ones the webhook refuses (an invalid
//! regex), valid ones with two `dependencies` (whose closure the webhook reads from the API
//! server, to refuse a cycle), then in `bench-raw` (not registered) for the same creates
//! without a webhook. The
//! API server's `apiserver_admission_webhook_admission_duration_seconds` histogram gives the
//! share of reviews answered within 5 ms (its first bucket); the bench's own timings of the
//! creates give p50/p99 with and without the webhook.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use mcall_tests::{ControlPlane, loopback_serving_pair};
use serde_json::json;

use crate::bench_api::tasks_resource;
use crate::bench_cluster::percentiles;
use crate::bench_tasks::release_on_fresh_plane;

/// Creates of each kind, one at a time.
const CREATES: usize = 300;
/// The histogram's series, and its first bucket's bound (the goal).
const SERIES: &str = "apiserver_admission_webhook_admission_duration_seconds_bucket{";
const GOAL_BUCKET: &str = "0.005";

pub fn run(root: &Path) -> Result<String> {
    let (binary, plane) = release_on_fresh_plane(root)?;
    let certs = plane.dir().join("webhook-certs");
    let ca = loopback_serving_pair(&certs)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let health = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::File::create(plane.dir().join("operator.log"))?;
    let mut operator = Command::new(&binary)
        .args(["operator", "--kubeconfig"])
        .arg(plane.kubeconfig_path())
        .args(["--namespaces", "nothing-watched-here"])
        // The tasks are cmd tasks: admission refuses them outside commandNamespaces.
        .args(["--command-namespaces", "bench"])
        .args(["--port", &health.to_string(), "--bind-address", "127.0.0.1"])
        .arg("--webhook-cert-file")
        .arg(certs.join("tls.crt"))
        .arg("--webhook-key-file")
        .arg(certs.join("tls.key"))
        .args(["--webhook-address", &format!("127.0.0.1:{port}")])
        .env("LOG_LEVEL", "WARN")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting the operator")?;
    let result = (|| {
        wait_for_port(port)?;
        register(&plane, port, &ca)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(measure(&plane))
    })();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(operator.id().to_string())
        .status();
    let _ = operator.wait();
    result
}

fn wait_for_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("the webhook did not listen on 127.0.0.1:{port} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The registration: McallTask creates and updates in `bench`, failing closed.
fn register(plane: &ControlPlane, port: u16, ca_pem: &str) -> Result<()> {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "mcall-bench"},
        "webhooks": [{
            "name": "mcalltasks.mcall.tz.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
            "rules": [{"apiGroups": ["mcall.tz.io"], "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"], "resources": ["mcalltasks"],
                "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "bench"}},
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate-mcalltask"),
                "caBundle": bundle}
        }]
    });
    let mut apply = plane.kubectl();
    apply.args(["apply", "-f", "-"]);
    let out = mcall_tests::run_with_stdin(apply, config.to_string().as_bytes())?;
    anyhow::ensure!(
        out.status.success(),
        "registering the webhook: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The tasks every dependent task depends on (created by the first series).
const DEPENDENCIES: [&str; 2] = ["ok-0", "ok-1"];

fn task(name: &str, expect: &str, dependencies: &[&str]) -> Result<DynamicObject> {
    let mut spec = json!({"type": "cmd", "input": "echo ok", "expect": expect});
    if !dependencies.is_empty() {
        spec["dependencies"] = json!(dependencies);
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "mcall.tz.io/v1", "kind": "McallTask",
        "metadata": {"name": name},
        "spec": spec
    }))?)
}

async fn measure(plane: &ControlPlane) -> Result<String> {
    let client = plane.admin_client().await?;
    let resource: ApiResource = tasks_resource();
    let registered: Api<DynamicObject> = Api::namespaced_with(client.clone(), "bench", &resource);
    let raw: Api<DynamicObject> = Api::namespaced_with(client.clone(), "bench-raw", &resource);
    // The registration takes effect within a moment: the first refusal says it does.
    let deadline = Instant::now() + Duration::from_secs(60);
    while registered
        .create(&PostParams::default(), &task("probe", "regex:(", &[])?)
        .await
        .is_ok()
    {
        registered.delete("probe", &Default::default()).await?;
        if Instant::now() > deadline {
            bail!("the webhook's registration did not take effect within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = histogram(&client).await?;
    let admitted = creates(&registered, "ok", "ok", &[], true).await?;
    let refused = creates(&registered, "bad", "regex:(", &[], false).await?;
    let plain = histogram(&client).await?;
    let dependent = creates(&registered, "dep", "ok", &DEPENDENCIES, true).await?;
    let after = histogram(&client).await?;
    let unregistered = creates(&raw, "raw", "ok", &[], true).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (a50, a99) = percentiles(&admitted);
    let (r50, r99) = percentiles(&refused);
    let (d50, d99) = percentiles(&dependent);
    let (u50, u99) = percentiles(&unregistered);
    Ok(format!(
        "{{\n  \"benchmark\": \"admission\",\n  \"creates\": {CREATES},\n  \"admitted_within_5ms_share\": {:.4},\n  \"refused_within_5ms_share\": {:.4},\n  \"dependent_within_5ms_share\": {:.4},\n  \"create_with_webhook_p50_ms\": {:.2},\n  \"create_with_webhook_p99_ms\": {:.2},\n  \"create_refused_p50_ms\": {:.2},\n  \"create_refused_p99_ms\": {:.2},\n  \"create_dependent_p50_ms\": {:.2},\n  \"create_dependent_p99_ms\": {:.2},\n  \"create_without_webhook_p50_ms\": {:.2},\n  \"create_without_webhook_p99_ms\": {:.2}\n}}\n",
        share_within(&before, &plain, "false"),
        share_within(&before, &plain, "true"),
        share_within(&plain, &after, "false"),
        ms(a50),
        ms(a99),
        ms(r50),
        ms(r99),
        ms(d50),
        ms(d99),
        ms(u50),
        ms(u99),
    ))
}

/// `CREATES` creates, one at a time; each one's time. `admit`: whether they must be admitted.
async fn creates(
    api: &Api<DynamicObject>,
    prefix: &str,
    expect: &str,
    dependencies: &[&str],
    admit: bool,
) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(CREATES);
    for i in 0..CREATES {
        let object = task(&format!("{prefix}-{i}"), expect, dependencies)?;
        let started = Instant::now();
        let created = api.create(&PostParams::default(), &object).await;
        times.push(started.elapsed());
        match (created, admit) {
            (Ok(_), true) | (Err(_), false) => {}
            (Ok(_), false) => bail!("the webhook admitted an invalid task"),
            (Err(e), true) => bail!("a valid task was refused: {e}"),
        }
    }
    Ok(times)
}

/// The histogram's buckets for McallTask creates: (rejected, le) → count.
type Buckets = std::collections::BTreeMap<(String, String), f64>;

async fn histogram(client: &kube::Client) -> Result<Buckets> {
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new())?)
        .await
        .context("reading the API server's metrics")?;
    let label = |line: &str, name: &str| {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("")
            .to_owned()
    };
    let mut buckets = Buckets::new();
    for line in text.lines().filter(|l| l.starts_with(SERIES)) {
        if label(line, "name") != "mcalltasks.mcall.tz.io" || label(line, "operation") != "CREATE" {
            continue;
        }
        let value = line.rsplit(' ').next().and_then(|v| v.parse().ok());
        let key = (label(line, "rejected"), label(line, "le"));
        *buckets.entry(key).or_insert(0.0) += value.unwrap_or(0.0);
    }
    Ok(buckets)
}

/// The share of the reviews between `before` and `after` (rejected or not) answered within the
/// goal's bucket.
fn share_within(before: &Buckets, after: &Buckets, rejected: &str) -> f64 {
    let grown = |le: &str| {
        let key = (rejected.to_owned(), le.to_owned());
        after.get(&key).unwrap_or(&0.0) - before.get(&key).unwrap_or(&0.0)
    };
    let total = grown("+Inf");
    if total <= 0.0 {
        return 0.0;
    }
    grown(GOAL_BUCKET) / total
}
