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

/// Changes a scheduled task's spec in a way that changes no run (a history limit), and waits
/// for the operator to record `generation` as observed. The reconciles of one task run one at a
/// time, in the order of its changes, so once that write shows, every earlier change (a touch,
/// a result) has been reconciled too: the anchor for "and then nothing more ran".
async fn acknowledged_change(env: &TestEnv, name: &str, generation: i64) {
    let limit = json!({"spec": {"failedRunsHistoryLimit": 10 + generation}});
    env.tasks
        .patch(name, &PatchParams::default(), &Patch::Merge(&limit))
        .await
        .unwrap();
    wait_for(
        env,
        name,
        T,
        &format!("observedGeneration {generation}, no run in progress"),
        // A run that reconcile started instead writes Running first: wait for its result too.
        |s| {
            s.observed_generation == Some(generation)
                && s.current_run.is_none()
                && s.phase != Some(Phase::Running)
        },
    )
    .await;
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
    // Every version of the status, on a watch: the history never holds more than the limit, and
    // three ticks have run (one more than the history keeps) once a result names the third.
    let mut ran = BTreeSet::new();
    let task = watch_until(&env, "ticker", T, "a third run recorded", |task| {
        let Some(status) = task.status.as_ref() else {
            return false;
        };
        let runs = history(status);
        assert!(
            runs.len() <= 2,
            "trimmed to successfulRunsHistoryLimit in every write: {runs:?}"
        );
        ran.extend(status.history.iter().flatten().map(|r| r.scheduled_time.0));
        ran.len() >= 3 && status.phase == Some(Phase::Succeeded)
    })
    .await;
    let status = task.status.clone().unwrap();
    let runs = history(&status);
    assert_eq!(
        runs.len(),
        2,
        "trimmed to successfulRunsHistoryLimit: {runs:?}"
    );
    assert!(runs.iter().all(|(_, phase, _)| *phase == Phase::Succeeded));
    assert_ne!(runs[0].0, runs[1].0, "each run has its own tick");
    // The two newest runs are kept; the oldest was trimmed.
    let kept: BTreeSet<_> = status
        .history
        .iter()
        .flatten()
        .map(|r| r.scheduled_time.0)
        .collect();
    let newest: BTreeSet<_> = ran.iter().rev().take(2).copied().collect();
    assert_eq!(kept, newest, "the newest runs are kept, of {ran:?}");
    assert!(status.last_successful_time.is_some() && status.retry_count == Some(0));
    let last = status.last_schedule_time.unwrap().0;
    let next = status.next_schedule_time.unwrap().0;
    assert_eq!(Some(&last), ran.last(), "the last tick is the newest run's");
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
    for tick in &ran {
        assert_eq!(spread.latest_at_or_before(*tick), Some(*tick), "{ran:?}");
    }
    assert_eq!(spread.next_after(last), Some(next));
    op.stop().await;
}

#[tokio::test]
async fn each_tick_costs_one_status_write_its_result_claims_the_next() {
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
    wait_for(&env, "frugal", T, "two runs", |s| runs(s) >= 2).await;
    // Every write of the task shows on a watch: count them over the next six ticks. The window
    // is bounded by those runs, not by a wall-clock time a loaded machine would stretch.
    const TICKS: usize = 6;
    let mut versions = BTreeSet::new();
    let mut before = None;
    let task = watch_until(&env, "frugal", T, "six more runs", |task| {
        versions.insert(task.metadata.resource_version.clone());
        let now = task.status.as_ref().map_or(0, runs);
        // The first version seen is the one before the window.
        let before = *before.get_or_insert(now);
        now - before >= TICKS
    })
    .await;
    let latest = task.status.unwrap();
    let history = latest.history.clone().unwrap();
    let before = before.unwrap();
    let ticks = runs(&latest) - before;
    // Newest first: the window's runs are the first `ticks` records.
    let window: Vec<_> = history[..ticks]
        .iter()
        .map(|r| r.scheduled_time.0)
        .collect();
    assert!(
        history[..ticks].iter().all(|r| r.phase == Phase::Succeeded),
        "{history:?}"
    );
    // About one run a second, in the schedule's own time (which a slow test cannot stretch):
    // the six runs' ticks span at most 7 s, so at most two of those eight ticks were lost to a
    // late start (the tolerance of "four runs in six seconds"), and none ran twice.
    let span = window[0].duration_since(window[ticks - 1]);
    assert!(
        span <= k8s_openapi::jiff::SignedDuration::from_secs(7),
        "{ticks} runs spread over {span} of ticks: {window:?}"
    );
    assert_eq!(
        window.iter().collect::<BTreeSet<_>>().len(),
        ticks,
        "{window:?}"
    );
    assert!(
        latest.claimed_tick.is_some() || latest.phase == Some(Phase::Running),
        "the result claimed the next tick: {latest:?}"
    );
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
        // Pacing, not waiting for anything: the requests are meant to land at every point of
        // the tick interval, whatever the operator does meanwhile.
        tokio::time::sleep(Duration::from_millis(370)).await;
    }
    wait_for(&env, "busy", T, "the last request handled", |s| {
        s.run_now_handled.as_deref() == Some("r13")
    })
    .await;
    // Its run is recorded, and so is every run the server answered so far. (A stop drains the
    // runs in progress anyway; this only makes sure the last request's run is not one of them.)
    wait_for(&env, "busy", T, "every request recorded as a run", |s| {
        s.current_run.is_none()
            && history(s)
                .iter()
                .filter(|(_, phase, _)| *phase == Phase::Succeeded)
                .count()
                == hits.lock().unwrap().len()
    })
    .await;
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
    // Touching the object without a new value does not run it again. A label alone leaves no
    // trace of the operator having looked, so the touch is followed by a spec change the
    // operator acknowledges (observedGeneration 2): that write comes from a reconcile after the
    // touch, which saw the old request and had to leave it alone.
    env.tasks
        .patch(
            "manual",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    acknowledged_change(&env, "manual", 2).await;
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
    // Nothing runs the request again: every reconcile of that result has happened once the
    // operator acknowledges a later change, and the stop lets whatever it started finish.
    acknowledged_change(&env, "manual", 3).await;
    op.stop().await;
    assert_eq!(hits.lock().unwrap().len(), 2);
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
    let succeeded_between = |s: &McallTaskStatus, from, to| {
        s.history
            .iter()
            .flatten()
            .filter(|r| {
                r.phase == Phase::Succeeded && r.scheduled_time.0 > from && r.scheduled_time.0 < to
            })
            .count()
    };
    let first = start_operator(&env, config_for(&env));
    let created = env.tasks.get("counted").await.unwrap();
    let began = created.metadata.creation_timestamp.unwrap().0;
    let far = k8s_openapi::jiff::Timestamp::MAX;
    wait_for(&env, "counted", T, "two runs by the first operator", |s| {
        succeeded_between(s, began, far) >= 2
    })
    .await;
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
    // Down across at least one tick: until the task's first tick after the stop has passed (a
    // known instant on its grid, so this waits for the event itself, not a guessed span).
    let uid = created.metadata.uid.unwrap();
    let missed = mcall::schedule::Schedule::parse("@every 2s", None)
        .unwrap()
        .spread_by(&uid)
        .next_after(stopped)
        .unwrap();
    let until = missed.duration_since(k8s_openapi::jiff::Timestamp::now());
    tokio::time::sleep(Duration::try_from(until).unwrap_or_default() + Duration::from_millis(50))
        .await;
    let restarted = k8s_openapi::jiff::Timestamp::now();
    assert!(missed < restarted);
    let second = start_operator(&env, config_for(&env));
    // The latest tick that fell while the operator was down runs once, after the restart (it is
    // within startingDeadlineSeconds), and the schedule goes on after it.
    wait_for(
        &env,
        "counted",
        T,
        "the missed tick and a later one run after the restart",
        |s| {
            succeeded_between(s, stopped, restarted) >= 1
                && succeeded_between(s, restarted, far) >= 1
        },
    )
    .await;
    // A graceful stop drains the runs in progress: every request the server saw is recorded.
    second.stop().await;

    let status = env.tasks.get("counted").await.unwrap().status.unwrap();
    let runs = history(&status);
    each_run_once(&status, &hits);
    assert!(
        succeeded_between(&status, stopped, restarted) >= 1,
        "the tick missed during the downtime ran after the restart: {runs:?}"
    );
    assert!(
        succeeded_between(&status, began, stopped) >= 2
            && succeeded_between(&status, restarted, far) >= 1,
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
    // One write per tick at most, not a loop: count the writes (every one shows on a watch)
    // until two more ticks have been refused; a window bounded by ticks, not by a clock.
    let mut versions = BTreeSet::new();
    let mut refused = BTreeSet::new();
    let mut before = None;
    watch_until(&env, "needs-secret", T, "two more refused ticks", |task| {
        versions.insert(task.metadata.resource_version.clone());
        let status = task.status.as_ref();
        refused.extend(
            status
                .and_then(|s| s.history.as_ref())
                .into_iter()
                .flatten()
                .filter(|r| r.error_code.as_deref() == Some("InvalidSpec"))
                .map(|r| r.scheduled_time.0),
        );
        let before = *before.get_or_insert(refused.len());
        refused.len() - before >= 2
    })
    .await;
    let ticks = refused.len() - before.unwrap();
    // The first version seen is the one before the window.
    let writes = versions.len() - 1;
    assert!(
        writes <= ticks + 1,
        "{writes} status writes for {ticks} refused ticks: {refused:?}"
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
