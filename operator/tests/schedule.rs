//! Scheduled tasks through the operator on the real control plane: repeated runs with bounded
//! history, Forbid and Replace, run-now, invalid schedules, and exactly-once across a crash.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use kube::api::{Patch, PatchParams};
use mcall_generated::{McallTaskStatus, Phase};
use serde_json::json;

const T: Duration = Duration::from_secs(40);

fn history(status: &McallTaskStatus) -> Vec<(String, Phase, Option<String>)> {
    status
        .history
        .iter()
        .flatten()
        .map(|r| {
            (
                r.scheduled_time.0.to_string(),
                r.phase,
                r.error_code.clone(),
            )
        })
        .collect()
}

/// Asserts that no scheduled time (tick or run-now request) ran twice and that the loopback
/// server saw one request per successful run; returns how many succeeded.
fn each_run_once(status: &McallTaskStatus, hits: &std::sync::Mutex<Vec<String>>) -> usize {
    let runs = history(status);
    let times: BTreeSet<&String> = runs.iter().map(|(time, _, _)| time).collect();
    assert_eq!(times.len(), runs.len(), "nothing ran twice: {runs:?}");
    let succeeded = runs
        .iter()
        .filter(|(_, phase, _)| *phase == Phase::Succeeded)
        .count();
    assert_eq!(
        hits.lock().unwrap().len(),
        succeeded,
        "every request is one recorded run: {runs:?}"
    );
    succeeded
}

#[tokio::test]
async fn every_two_seconds_runs_repeatedly_with_history_trimmed() {
    let env = test_env("sched-every").await;
    let op = start_operator(&env, config_for(&env));
    create_task(
        &env,
        "ticker",
        json!({"type": "cmd", "input": "date +%s", "schedule": "@every 2s",
        "successfulRunsHistoryLimit": 2, "failedRunsHistoryLimit": 1}),
    )
    .await;
    let task = wait_for(&env, "ticker", T, "three runs", |s| {
        s.last_successful_time.is_some()
            && s.history.as_ref().is_some_and(|h| h.len() == 2)
            && s.retry_count.is_some()
    })
    .await;
    // Let at least one more tick pass: the history stays at the limit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = env.tasks.get("ticker").await.unwrap().status.unwrap();
    let runs = history(&status);
    assert_eq!(
        runs.len(),
        2,
        "trimmed to successfulRunsHistoryLimit: {runs:?}"
    );
    assert!(runs.iter().all(|(_, phase, _)| *phase == Phase::Succeeded));
    assert_ne!(runs[0].0, runs[1].0, "each run has its own tick");
    let last = status.last_schedule_time.unwrap().0;
    let next = status.next_schedule_time.unwrap().0;
    assert_eq!(
        next.duration_since(last),
        k8s_openapi::jiff::SignedDuration::from_secs(2),
        "next tick is one interval after the last"
    );
    // The ticks are the task's own: offset from the epoch grid by its UID, to the microsecond.
    let uid = task.metadata.uid.clone().unwrap();
    let spread = mcall::schedule::Schedule::parse("@every 2s", None)
        .unwrap()
        .spread_by(&uid);
    assert_eq!(spread.latest_at_or_before(last), Some(last));
    assert_eq!(spread.next_after(last), Some(next));
    assert!(task.status.unwrap().phase.is_some());
    op.stop().await;
}

#[tokio::test]
async fn each_tick_costs_one_status_write_its_result_claims_the_next() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};

    let env = test_env("sched-writes").await;
    let op = start_operator(&env, config_for(&env));
    create_task(
        &env,
        "frugal",
        json!({"type": "cmd", "input": "true", "schedule": "@every 1s",
        "successfulRunsHistoryLimit": 100}),
    )
    .await;
    let runs = |s: &McallTaskStatus| s.history.as_ref().map_or(0, Vec::len);
    let first = wait_for(&env, "frugal", T, "two runs", |s| runs(s) >= 2).await;
    let before = runs(&first.status.unwrap());
    // Every write of the task shows on a watch; count them over some ticks.
    let config = watcher::Config::default().fields("metadata.name=frugal");
    let mut writes = std::pin::pin!(watcher(env.tasks.clone(), config).applied_objects());
    let mut versions = BTreeSet::new();
    let mut latest = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while let Ok(Some(task)) = tokio::time::timeout_at(deadline, writes.next()).await {
        let task = task.unwrap();
        versions.insert(task.metadata.resource_version.clone());
        latest = task.status;
    }
    let latest = latest.unwrap();
    let ticks = runs(&latest) - before;
    assert!(ticks >= 4, "about one run a second: {ticks}");
    assert!(
        latest.claimed_tick.is_some() || latest.phase == Some(Phase::Running),
        "the result claimed the next tick: {latest:?}"
    );
    // The first version seen is the one before the window.
    let writes = versions.len() - 1;
    assert!(
        writes <= ticks + 1,
        "{writes} status writes for {ticks} ticks (one each, give or take the window's edges)"
    );
    op.stop().await;
}

#[tokio::test]
async fn run_now_requests_between_claimed_ticks_never_run_a_tick_twice() {
    let env = test_env("sched-runnow-ticks").await;
    let (port, hits) = http_server(200, "ok").await;
    let op = start_operator(&env, config_for(&env));
    create_task(
        &env,
        "busy",
        json!({"type": "get", "input": format!("http://127.0.0.1:{port}/"), "schedule": "@every 1s",
        "concurrencyPolicy": "Allow", "successfulRunsHistoryLimit": 100, "failedRunsHistoryLimit": 100}),
    )
    .await;
    wait_for(&env, "busy", T, "a claimed tick", |s| {
        s.claimed_tick.is_some()
    })
    .await;
    // Requests land at every point of the second between two ticks, including while the next
    // tick's claimed run waits for it.
    for i in 0..14 {
        let annotate =
            json!({"metadata": {"annotations": {"mcall.tz.io/run-now": format!("r{i}")}}});
        env.tasks
            .patch("busy", &PatchParams::default(), &Patch::Merge(&annotate))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(370)).await;
    }
    wait_for(&env, "busy", T, "the last request handled", |s| {
        s.run_now_handled.as_deref() == Some("r13")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    op.stop().await;

    let status = env.tasks.get("busy").await.unwrap().status.unwrap();
    each_run_once(&status, &hits);
}

#[tokio::test]
async fn forbid_skips_overlapping_ticks_and_replace_cancels_the_running_one() {
    let env = test_env("sched-policy").await;
    let op = start_operator(&env, config_for(&env));
    create_task(
        &env,
        "forbid",
        json!({"type": "cmd", "input": "sleep 5", "schedule": "@every 1s", "timeout": 60,
        "concurrencyPolicy": "Forbid", "failedRunsHistoryLimit": 10}),
    )
    .await;
    create_task(
        &env,
        "replace",
        json!({"type": "cmd", "input": "sleep 30", "schedule": "@every 2s", "timeout": 60,
        "concurrencyPolicy": "Replace", "failedRunsHistoryLimit": 10}),
    )
    .await;
    let forbid = wait_for(&env, "forbid", T, "skipped ticks", |s| {
        history(s)
            .iter()
            .filter(|(_, _, code)| code.as_deref() == Some("Skipped"))
            .count()
            >= 2
    })
    .await;
    assert_eq!(
        forbid.status.unwrap().phase,
        Some(Phase::Running),
        "the first run is still going"
    );
    let replace = wait_for(&env, "replace", T, "a replaced run", |s| {
        history(s)
            .iter()
            .any(|(_, phase, code)| *phase == Phase::Failed && code.as_deref() == Some("Cancelled"))
    })
    .await;
    assert_eq!(
        replace.status.unwrap().phase,
        Some(Phase::Running),
        "the newest run replaced the older"
    );
    op.stop().await;
}

#[tokio::test]
async fn run_now_runs_once_per_new_annotation_value() {
    let env = test_env("sched-runnow").await;
    let (port, hits) = http_server(200, "ok").await;
    let op = start_operator(&env, config_for(&env));
    // Yearly: no tick during the test, so every run is a run-now.
    create_task(
        &env,
        "manual",
        json!({"type": "get", "input": format!("http://127.0.0.1:{port}/"), "schedule": "@yearly"}),
    )
    .await;
    wait_for(&env, "manual", T, "a next tick", |s| {
        s.next_schedule_time.is_some()
    })
    .await;
    assert_eq!(hits.lock().unwrap().len(), 0);
    let annotate =
        |value: &str| json!({"metadata": {"annotations": {"mcall.tz.io/run-now": value}}});
    env.tasks
        .patch(
            "manual",
            &PatchParams::default(),
            &Patch::Merge(&annotate("1")),
        )
        .await
        .unwrap();
    wait_for(&env, "manual", T, "the run-now run", |s| {
        s.run_now_handled.as_deref() == Some("1") && s.phase == Some(Phase::Succeeded)
    })
    .await;
    // Touching the object without a new value does not run it again.
    env.tasks
        .patch(
            "manual",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hits.lock().unwrap().len(), 1);
    env.tasks
        .patch(
            "manual",
            &PatchParams::default(),
            &Patch::Merge(&annotate("2")),
        )
        .await
        .unwrap();
    wait_for(&env, "manual", T, "the second run-now run", |s| {
        s.run_now_handled.as_deref() == Some("2") && s.phase == Some(Phase::Succeeded)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hits.lock().unwrap().len(), 2);
    op.stop().await;
}

#[tokio::test]
async fn invalid_schedules_fail_with_a_reason() {
    let env = test_env("sched-invalid").await;
    let op = start_operator(&env, config_for(&env));
    // Both pass the CRD's pattern; only a cron parser can tell.
    create_task(
        &env,
        "bad-minute",
        json!({"type": "cmd", "input": "true", "schedule": "61 * * * *"}),
    )
    .await;
    create_task(
        &env,
        "bad-zone",
        json!({"type": "cmd", "input": "true", "schedule": "@hourly", "timeZone": "Mars/Base"}),
    )
    .await;
    for (name, part) in [
        ("bad-minute", "spec.schedule"),
        ("bad-zone", "spec.timeZone"),
    ] {
        let task = wait_for_phase(&env, name, Phase::Failed, T).await;
        let ready = task
            .status
            .unwrap()
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.r#type == "Ready")
            .unwrap();
        assert_eq!(ready.reason, "InvalidSchedule");
        assert!(ready.message.contains(part), "{}", ready.message);
    }
    op.stop().await;
}

#[tokio::test]
async fn a_restarted_operator_neither_repeats_nor_loses_ticks() {
    let env = test_env("sched-restart").await;
    let (port, hits) = http_server(200, "ok").await;
    create_task(&env, "counted", json!({"type": "get", "input": format!("http://127.0.0.1:{port}/"), "schedule": "@every 2s",
        "startingDeadlineSeconds": 30, "successfulRunsHistoryLimit": 100, "failedRunsHistoryLimit": 100})).await;
    let first = start_operator(&env, config_for(&env));
    tokio::time::sleep(Duration::from_secs(5)).await;
    first.stop().await;
    let stopped = k8s_openapi::jiff::Timestamp::now();
    let lease: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(env.client.clone(), &env.namespace);
    let lease = lease.get("mcall-operator").await.unwrap().spec.unwrap();
    assert_eq!(
        lease.holder_identity, None,
        "a graceful stop releases the Lease"
    );
    assert!(lease.renew_time.is_some_and(|t| t.0 <= stopped));
    // Down across at least one tick.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted = k8s_openapi::jiff::Timestamp::now();
    let second = start_operator(&env, config_for(&env));
    tokio::time::sleep(Duration::from_secs(5)).await;
    second.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let status = env.tasks.get("counted").await.unwrap().status.unwrap();
    let runs = history(&status);
    let succeeded = each_run_once(&status, &hits);
    // The latest tick that fell while the operator was down ran once, after the restart (it is
    // within startingDeadlineSeconds).
    let missed_then_run = status.history.iter().flatten().any(|r| {
        r.phase == Phase::Succeeded
            && r.scheduled_time.0 > stopped
            && r.scheduled_time.0 < restarted
    });
    assert!(
        missed_then_run,
        "the tick missed during the downtime ran after the restart: {runs:?}"
    );
    assert!(
        succeeded >= 4,
        "runs before and after the restart: {runs:?}"
    );
}

#[tokio::test]
async fn a_run_that_cannot_start_waits_for_the_next_tick_without_looping() {
    let env = test_env("sched-nosecret").await;
    let op = start_operator(&env, config_for(&env));
    create_task(
        &env,
        "needs-secret",
        json!({"type": "cmd", "input": "echo ok", "schedule": "@every 2s", "failedRunsHistoryLimit": 5,
               "environmentFrom": [{"name": "TOKEN", "secretKeyRef": {"name": "later", "key": "token"}}]}),
    )
    .await;
    wait_for(
        &env,
        "needs-secret",
        T,
        "a run refused for the missing Secret",
        |s| {
            history(s)
                .iter()
                .any(|(_, _, code)| code.as_deref() == Some("InvalidSpec"))
        },
    )
    .await;
    // One write per tick at most, not a loop: count resourceVersion changes over 3 s.
    let mut versions = BTreeSet::new();
    for _ in 0..30 {
        versions.insert(
            env.tasks
                .get("needs-secret")
                .await
                .unwrap()
                .metadata
                .resource_version,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        versions.len() <= 5,
        "{} status writes in 3 s",
        versions.len()
    );
    // Once the Secret exists, the next tick runs.
    create_secret(&env, "later", "token", "t").await;
    wait_for_phase(&env, "needs-secret", Phase::Succeeded, T).await;
    op.stop().await;
}

#[tokio::test]
async fn a_run_now_request_deferred_by_forbid_runs_when_the_active_run_ends() {
    let env = test_env("sched-deferred").await;
    let (port, hits) = http_server(200, "ok").await;
    let op = start_operator(&env, config_for(&env));
    let input =
        format!("sleep 2; curl -s http://127.0.0.1:{port}/ || wget -qO- http://127.0.0.1:{port}/");
    create_task(&env, "serial", json!({"type": "cmd", "input": input, "schedule": "@yearly", "concurrencyPolicy": "Forbid", "timeout": 30})).await;
    wait_for(&env, "serial", T, "a next tick", |s| {
        s.next_schedule_time.is_some()
    })
    .await;
    let annotate =
        |value: &str| json!({"metadata": {"annotations": {"mcall.tz.io/run-now": value}}});
    env.tasks
        .patch(
            "serial",
            &PatchParams::default(),
            &Patch::Merge(&annotate("1")),
        )
        .await
        .unwrap();
    wait_for_phase(&env, "serial", Phase::Running, T).await;
    // Requested while the first run is active: Forbid defers it, it must not be lost.
    env.tasks
        .patch(
            "serial",
            &PatchParams::default(),
            &Patch::Merge(&annotate("2")),
        )
        .await
        .unwrap();
    wait_for(&env, "serial", T, "the deferred run", |s| {
        s.run_now_handled.as_deref() == Some("2") && s.phase == Some(Phase::Succeeded)
    })
    .await;
    assert_eq!(
        hits.lock().unwrap().len(),
        2,
        "both requests ran, one after the other"
    );
    op.stop().await;
}
