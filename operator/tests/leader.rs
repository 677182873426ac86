//! Several `mcall operator` processes on one control plane: exactly one leads (holds the Lease)
//! and executes; a crashed, stopped or paused leader is replaced, and no task or tick runs twice.
//! The replicas run as the chart's ServiceAccount with only the RBAC the chart generates.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::process::*;
use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use mcall_generated::{McallTaskStatus, Phase};
use serde_json::json;

/// A replica named `name` (its Lease identity starts with it) as `kubeconfig`, logs discarded.
fn replica(env: &TestEnv, kubeconfig: &Path, name: &str) -> (Child, u16) {
    let port = free_port();
    let child = operator_command_as(kubeconfig, env, port, 10)
        .env("POD_NAME", name)
        .stderr(Stdio::null())
        .spawn()
        .expect("mcall operator starts");
    (child, port)
}

/// Who holds the operator's Lease in the test's namespace.
async fn holder(env: &TestEnv) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    let lease = leases.get_opt("mcall-operator").await.ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// Waits until a replica whose name is one of `names` holds the Lease, and returns that name.
async fn leader_among(env: &TestEnv, names: &[&'static str]) -> &'static str {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let held = holder(env).await;
        if let Some(name) = names.iter().find(|n| {
            held.as_deref()
                .is_some_and(|h| h.starts_with(&format!("{n}-")))
        }) {
            return name;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "none of {names:?} took the Lease (held by {held:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stop(mut child: Child) -> std::process::ExitStatus {
    signal(&child, "-TERM");
    tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(30)))
        .await
        .unwrap()
}

/// A scheduled check every second against `port`, keeping its whole history.
async fn every_second(env: &TestEnv, port: u16) {
    create_task(
        env,
        "ticking",
        json!({"type": "get", "input": format!("http://127.0.0.1:{port}/"), "schedule": "@every 1s",
            "startingDeadlineSeconds": 30, "successfulRunsHistoryLimit": 100, "failedRunsHistoryLimit": 100}),
    )
    .await;
}

fn succeeded_after(status: &McallTaskStatus, after: k8s_openapi::jiff::Timestamp) -> usize {
    status
        .history
        .iter()
        .flatten()
        .filter(|r| r.phase == Phase::Succeeded && r.scheduled_time.0 > after)
        .count()
}

/// No tick is recorded twice, and every request the server saw is a recorded run: a success, or
/// a run cut off by the loss of its replica (recorded Interrupted, never run again).
async fn assert_each_tick_once(env: &TestEnv, hits: usize) {
    let status = env.tasks.get("ticking").await.unwrap().status.unwrap();
    let history = status.history.unwrap_or_default();
    let ticks: BTreeSet<_> = history.iter().map(|r| r.scheduled_time.0).collect();
    assert_eq!(
        ticks.len(),
        history.len(),
        "no tick recorded twice: {history:?}"
    );
    let count = |code: Option<&str>, phase| {
        history
            .iter()
            .filter(|r| r.phase == phase && (code.is_none() || r.error_code.as_deref() == code))
            .count()
    };
    let succeeded = count(None, Phase::Succeeded);
    let interrupted = count(Some("Interrupted"), Phase::Failed);
    assert!(
        succeeded <= hits && hits <= succeeded + interrupted,
        "{hits} requests for {succeeded} successes and {interrupted} interrupted runs: {history:?}"
    );
}

/// A scheduled check every second, run by replica `a` (the leader) with `b` following, after its
/// first two runs.
struct Ticking {
    env: TestEnv,
    hits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    a: Child,
    b: Child,
}

async fn ticking(prefix: &str) -> Ticking {
    let env = test_env(prefix).await;
    let (server, hits) = http_server(200, "ok").await;
    let identity = chart_identity(&env).await;
    let (a, a_port) = replica(&env, &identity, "a");
    wait_ready(a_port);
    leader_among(&env, &["a"]).await;
    let (b, b_port) = replica(&env, &identity, "b");
    wait_ready(b_port);
    every_second(&env, server).await;
    wait_for(&env, "ticking", Duration::from_secs(30), "two runs", |s| {
        succeeded_after(s, k8s_openapi::jiff::Timestamp::MIN) >= 2
    })
    .await;
    Ticking { env, hits, a, b }
}

#[tokio::test]
async fn of_three_replicas_one_leads_and_each_task_runs_once() {
    let env = test_env("lead-once").await;
    let (server, hits) = http_server(200, "ok").await;
    let identity = chart_identity(&env).await;
    let names = ["a", "b", "c"];
    let replicas: Vec<(Child, u16)> = names.iter().map(|n| replica(&env, &identity, n)).collect();
    for (_, port) in &replicas {
        wait_ready(*port);
    }
    let leader = leader_among(&env, &names).await;
    for i in 0..20 {
        let input = format!("http://127.0.0.1:{server}/task-{i}");
        create_task(
            &env,
            &format!("t{i}"),
            json!({"type": "get", "input": input}),
        )
        .await;
    }
    for i in 0..20 {
        wait_for_phase(
            &env,
            &format!("t{i}"),
            Phase::Succeeded,
            Duration::from_secs(60),
        )
        .await;
    }
    let requests = hits.lock().unwrap().clone();
    for i in 0..20 {
        let path = format!("GET /task-{i} ");
        let count = requests.iter().filter(|r| r.starts_with(&path)).count();
        assert_eq!(count, 1, "task {i} ran {count} times");
    }
    assert_eq!(requests.len(), 20);
    assert_eq!(
        leader_among(&env, &names).await,
        leader,
        "leadership stayed put"
    );
    for (child, _) in replicas {
        assert!(stop(child).await.success());
    }
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_and_no_tick_runs_twice() {
    let Ticking { env, hits, a, b } = ticking("lead-crash").await;
    signal(&a, "-KILL");
    let crashed = k8s_openapi::jiff::Timestamp::now();
    assert_eq!(leader_among(&env, &["b"]).await, "b");
    wait_for(
        &env,
        "ticking",
        Duration::from_secs(30),
        "two runs after the crash",
        |s| succeeded_after(s, crashed) >= 2,
    )
    .await;
    assert!(stop(b).await.success());
    let _ = tokio::task::spawn_blocking(move || {
        let mut a = a;
        a.wait()
    })
    .await;
    let requests = hits.lock().unwrap().len();
    assert_each_tick_once(&env, requests).await;
}

#[tokio::test]
async fn a_stopping_leader_hands_over_and_no_tick_runs_twice() {
    let Ticking { env, hits, a, b } = ticking("lead-handover").await;
    let handed_over = k8s_openapi::jiff::Timestamp::now();
    assert!(stop(a).await.success(), "a graceful stop exits 0");
    assert_eq!(leader_among(&env, &["b"]).await, "b");
    wait_for(
        &env,
        "ticking",
        Duration::from_secs(30),
        "two runs after the hand-over",
        |s| succeeded_after(s, handed_over) >= 2,
    )
    .await;
    assert!(stop(b).await.success());
    let requests = hits.lock().unwrap().len();
    assert_each_tick_once(&env, requests).await;
}

#[tokio::test]
async fn a_paused_leader_resumed_after_another_leads_runs_and_writes_nothing() {
    let Ticking { env, hits, a, b } = ticking("lead-pause").await;
    signal(&a, "-STOP");
    assert_eq!(leader_among(&env, &["b"]).await, "b");
    let taken_over = k8s_openapi::jiff::Timestamp::now();
    wait_for(
        &env,
        "ticking",
        Duration::from_secs(30),
        "a run by the new leader",
        |s| succeeded_after(s, taken_over) >= 1,
    )
    .await;
    let before_resume = hits.lock().unwrap().len();
    signal(&a, "-CONT");
    // The resumed replica finds the Lease held by another: it stops, with an error, without a
    // write (its client refuses them) and without starting a run.
    let exited = tokio::task::spawn_blocking(move || {
        let mut a = a;
        wait_exit(&mut a, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert!(!exited.success(), "losing the Lease is an error exit");
    wait_for(
        &env,
        "ticking",
        Duration::from_secs(30),
        "the schedule goes on",
        |s| succeeded_after(s, taken_over) >= 3,
    )
    .await;
    assert_eq!(leader_among(&env, &["b"]).await, "b");
    assert!(stop(b).await.success());
    assert!(hits.lock().unwrap().len() >= before_resume);
    let requests = hits.lock().unwrap().len();
    assert_each_tick_once(&env, requests).await;
}
