//! `cargo xtask bench cluster`: what the local cluster costs. Fresh planes with a node, started
//! one after the other: control plane ready, node Ready (first node process to a Ready node
//! with kube-proxy, the scheduler and CoreDNS answering); then, on the last one, pods of the
//! shell image created one at a time and 20 at once (create → Running, from the bench's own
//! polling every 20 ms: each pod alone, or the whole namespace listed), and the node processes' memory.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use mcall_tests::image::{
    Image, ImageArchive, Platform, ShellFiles, shell_recipe, write_archive_file,
};
use mcall_tests::{ControlPlane, ControlPlaneOptions, create_test_namespace};
use serde_json::json;

/// Fresh starts measured.
const STARTS: usize = 3;
/// Pods created one at a time, then at once.
const PODS: usize = 20;

pub fn run() -> Result<String> {
    let mut plane_ready = Vec::new();
    let mut node_ready = Vec::new();
    let mut last = None;
    for _ in 0..STARTS {
        // The previous plane (and its node) is torn down before the next starts.
        drop(last.take());
        let started = Instant::now();
        let plane = ControlPlane::start(ControlPlaneOptions {
            node: true,
            ..Default::default()
        })
        .context("starting a plane with a node")?;
        let total = started.elapsed();
        let node = plane.node_startup_time().context("the plane has no node")?;
        plane_ready.push(total - node);
        node_ready.push(node);
        last = Some(plane);
    }
    let plane = last.expect("at least one start");
    let shell = shell_image(&plane)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (one, burst) = runtime.block_on(pods(&plane, &shell))?;
    let (pod_done, job_done) = runtime.block_on(to_completion(&plane, &shell))?;
    let rss = node_rss(&plane);
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let secs = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (one_p50, one_p99) = percentiles(&one);
    let (burst_p50, burst_p99) = percentiles(&burst);
    let (pod_done_p50, pod_done_p99) = percentiles(&pod_done);
    let (job_done_p50, job_done_p99) = percentiles(&job_done);
    let rss_json: Vec<String> = rss
        .iter()
        .map(|(name, mib)| format!("\"{name}\": {mib:.1}"))
        .collect();
    Ok(format!(
        "{{\n  \"benchmark\": \"cluster\",\n  \"starts\": {STARTS},\n  \"plane_ready_s\": [{}],\n  \"node_ready_s\": [{}],\n  \"pods\": {PODS},\n  \"pod_running_one_at_a_time_p50_ms\": {:.0},\n  \"pod_running_one_at_a_time_p99_ms\": {:.0},\n  \"pod_running_burst_p50_ms\": {:.0},\n  \"pod_running_burst_p99_ms\": {:.0},\n  \"echo_pod_succeeded_p50_ms\": {:.0},\n  \"echo_pod_succeeded_p99_ms\": {:.0},\n  \"echo_job_complete_p50_ms\": {:.0},\n  \"echo_job_complete_p99_ms\": {:.0},\n  \"rss_mib\": {{{}}}\n}}\n",
        secs(&plane_ready),
        secs(&node_ready),
        ms(&one_p50),
        ms(&one_p99),
        ms(&burst_p50),
        ms(&burst_p99),
        ms(&pod_done_p50),
        ms(&pod_done_p99),
        ms(&job_done_p50),
        ms(&job_done_p99),
        rss_json.join(", ")
    ))
}

pub fn shell_image(plane: &ControlPlane) -> Result<ImageArchive> {
    let recipe = shell_recipe(&ShellFiles::discover()?);
    let image = Image::build(&recipe, &Platform::host())?;
    let archive = write_archive_file(&image, &plane.dir().join("shell.tar"))?;
    plane.import_image(&archive)?;
    Ok(archive)
}

/// p50 and p99 (the max for fewer than 100 samples) of `samples`.
pub fn percentiles(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: usize| sorted[(sorted.len() * q / 100).min(sorted.len() - 1)];
    (at(50), at(99))
}

fn pod(name: &str, image: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": "Never",
                "command": ["/bin/sleep", "3600"]
            }]
        }
    }))?)
}

/// Create → Running of `PODS` pods one at a time, then of `PODS` created at once.
async fn pods(
    plane: &ControlPlane,
    shell: &ImageArchive,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let client = plane.admin_client().await?;
    let ns = create_test_namespace(&client, "bench-pods").await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let image = shell.reference.to_string();
    wait_for_service_account(&client, &ns).await?;
    let mut one = Vec::new();
    for i in 0..PODS {
        let name = format!("one-{i}");
        let created = Instant::now();
        api.create(&PostParams::default(), &pod(&name, &image)?)
            .await?;
        one.push(running(&api, &name, created).await? - created);
        api.delete(&name, &DeleteParams::default()).await?;
    }
    let created = Instant::now();
    let names: Vec<String> = (0..PODS).map(|i| format!("burst-{i}")).collect();
    for name in &names {
        api.create(&PostParams::default(), &pod(name, &image)?)
            .await?;
    }
    // Every round lists all of them, so each is stamped when first seen Running.
    let mut burst: Vec<Duration> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < names.len() {
        if created.elapsed() > Duration::from_secs(120) {
            bail!("{} of {PODS} pods Running after 120 s", seen.len());
        }
        for pod in api.list(&Default::default()).await? {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let phase = pod.status.and_then(|s| s.phase);
            if name.starts_with("burst-")
                && phase.as_deref() == Some("Running")
                && seen.insert(name)
            {
                burst.push(created.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((one, burst))
}

pub async fn wait_for_service_account(client: &kube::Client, ns: &str) -> Result<()> {
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.get_opt("default").await?.is_none() {
        if Instant::now() > deadline {
            bail!("namespace {ns} got no default ServiceAccount");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Runs to completion of an `echo` (what a pod executor would start per execution), one at a
/// time: a bare pod (create → Succeeded) and a Job (create → Complete).
async fn to_completion(
    plane: &ControlPlane,
    shell: &ImageArchive,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    use k8s_openapi::api::batch::v1::Job;
    let client = plane.admin_client().await?;
    let ns = create_test_namespace(&client, "bench-runs").await?;
    wait_for_service_account(&client, &ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let image = shell.reference.to_string();
    let container = json!({"name": "main", "image": image, "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c", "echo done"]});
    let (mut pod_done, mut job_done) = (Vec::new(), Vec::new());
    for i in 0..PODS {
        let name = format!("echo-{i}");
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [container]}}))?;
        let created = Instant::now();
        pods.create(&PostParams::default(), &pod).await?;
        pod_done.push(
            poll(created, || async {
                let phase = pods.get(&name).await?.status.and_then(|s| s.phase);
                Ok(phase.as_deref() == Some("Succeeded"))
            })
            .await?,
        );
        let job: Job = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [container]}}}}))?;
        let created = Instant::now();
        jobs.create(&PostParams::default(), &job).await?;
        job_done.push(
            poll(created, || async {
                let status = jobs.get(&name).await?.status;
                Ok(status.and_then(|s| s.succeeded).unwrap_or(0) >= 1)
            })
            .await?,
        );
    }
    Ok((pod_done, job_done))
}

/// Polls `done` every 20 ms; the time from `since` until it held.
async fn poll<F, Fut>(since: Instant, mut done: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    while !done().await? {
        if since.elapsed() > Duration::from_secs(120) {
            bail!("not done after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(since.elapsed())
}

/// When `name` was first seen Running (polled every 20 ms).
async fn running(api: &Api<Pod>, name: &str, since: Instant) -> Result<Instant> {
    loop {
        let pod = api.get(name).await?;
        let phase = pod.status.and_then(|s| s.phase);
        if phase.as_deref() == Some("Running") {
            return Ok(Instant::now());
        }
        if since.elapsed() > Duration::from_secs(120) {
            bail!("pod {name} not Running after 120 s (phase {phase:?})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resident memory of each node process, MiB.
fn node_rss(plane: &ControlPlane) -> Vec<(&'static str, f64)> {
    plane
        .node_pids()
        .into_iter()
        .filter_map(|(name, pid)| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let kib: f64 = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((name, kib / 1024.0))
        })
        .collect()
}
