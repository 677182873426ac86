use k8s_openapi::jiff::ToSpan;
use mcall_generated::{McallTaskSpec, McallWorkflow};

use super::*;
use crate::workflow::fixtures::workflow;
use crate::workflow::steps::Child;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mcall_generated::StepReason;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

fn no_template(_: &str, _: &str) -> Option<McallTaskSpec> {
    None
}

fn plan_at(wf: &McallWorkflow, children: Vec<Child>, now: Timestamp) -> Plan {
    plan_with(wf, children, now, &no_template)
}

fn plan_with(
    wf: &McallWorkflow,
    children: Vec<Child>,
    now: Timestamp,
    template: &(dyn Fn(&str, &str) -> Option<McallTaskSpec> + Sync),
) -> Plan {
    plan(&Observed {
        workflow: wf,
        children,
        template,
        cross_namespace_templates: false,
        now,
    })
}

fn echo_template(_: &str, name: &str) -> Option<McallTaskSpec> {
    (name == "tmpl").then(|| {
        serde_json::from_value(serde_json::json!({"type": "cmd", "input": "echo t"})).unwrap()
    })
}

/// The workflow with the status the plan wrote.
fn after(mut wf: McallWorkflow, plan: &Plan) -> McallWorkflow {
    if let Some(status) = &plan.status {
        wf.status = Some(status.clone());
    }
    wf
}

fn child(run: &str, step: &str, phase: Phase) -> Child {
    Child {
        name: format!("wf.{run}.{step}"),
        run: run.into(),
        step: step.into(),
        phase: Some(phase),
        error_code: Some(if phase == Phase::Failed { "1" } else { "0" }.into()),
        ..Child::default()
    }
}

fn created(plan: &Plan) -> Vec<String> {
    plan.create
        .iter()
        .map(|t| t.metadata.name.clone().unwrap())
        .collect()
}

const THREE: &str = "concurrency: 2
tasks:
- {name: a, type: cmd, input: 'true'}
- {name: b, type: cmd, input: 'true'}
- {name: c, type: cmd, input: 'true', dependencies: [a]}";

#[test]
fn a_new_workflow_records_its_run_first_then_creates_ready_steps_up_to_the_concurrency() {
    let wf = workflow(THREE);
    let plan = plan_at(&wf, vec![], at(0));
    assert!(
        plan.status.is_some(),
        "the run id lands before any child exists"
    );
    let s = plan.status.as_ref().unwrap();
    assert_eq!(
        (s.run_id.as_deref(), s.phase),
        (Some("r1"), Some(Phase::Running))
    );
    assert_eq!(created(&plan), ["wf.r1.a", "wf.r1.b"]);
    assert_eq!(plan.events[0].reason, Reason::Started);

    // The cache now shows a running and b done: c waits for a, and nothing is created twice
    // beyond the limit.
    let wf = after(wf, &plan);
    let plan = plan_at(
        &wf,
        vec![
            child("r1", "a", Phase::Running),
            child("r1", "b", Phase::Succeeded),
        ],
        at(1),
    );
    assert!(plan.create.is_empty(), "{:?}", created(&plan));
    let wf = after(wf, &plan);
    let plan = plan_at(
        &wf,
        vec![
            child("r1", "a", Phase::Succeeded),
            child("r1", "b", Phase::Succeeded),
        ],
        at(2),
    );
    assert_eq!(created(&plan), ["wf.r1.c"]);
}

#[test]
fn a_run_ends_when_every_step_has_and_a_steady_state_writes_nothing() {
    let wf = after(workflow(THREE), &plan_at(&workflow(THREE), vec![], at(0)));
    let done = vec![
        child("r1", "a", Phase::Succeeded),
        child("r1", "b", Phase::Succeeded),
        child("r1", "c", Phase::Succeeded),
    ];
    let plan = plan_at(&wf, done.clone(), at(3));
    let s = plan.status.as_ref().unwrap();
    assert_eq!(s.phase, Some(Phase::Succeeded));
    assert_eq!(s.progress.as_deref(), Some("3/3"));
    assert_eq!(s.history.as_ref().unwrap()[0].run_id.as_deref(), Some("r1"));
    assert_eq!(plan.events.last().unwrap().reason, Reason::Succeeded);
    let wf = after(wf, &plan);
    let again = plan_at(&wf, done, at(50));
    assert!(
        again.status.is_none() && again.create.is_empty() && again.delete.is_empty(),
        "{again:?}"
    );
}

#[test]
fn at_the_deadline_running_steps_are_cancelled_and_the_rest_skipped() {
    let spec = format!("timeout: 10\nfailFast: false\n{THREE}");
    let wf = after(workflow(&spec), &plan_at(&workflow(&spec), vec![], at(0)));
    let children = vec![
        child("r1", "a", Phase::Running),
        child("r1", "b", Phase::Succeeded),
    ];
    let plan = plan_at(&wf, children, at(11));
    assert_eq!(
        plan.delete,
        ["wf.r1.a"],
        "the running child goes, and its run with it"
    );
    let s = plan.status.as_ref().unwrap();
    assert_eq!(
        (s.phase, s.reason.as_deref()),
        (Some(Phase::Failed), Some("DeadlineExceeded"))
    );
    let steps = s.task_statuses.as_ref().unwrap();
    assert_eq!(
        (steps[0].phase, steps[0].reason),
        (Phase::Failed, Some(StepReason::DeadlineExceeded))
    );
    assert_eq!(
        (steps[2].phase, steps[2].reason),
        (Phase::Skipped, Some(StepReason::DeadlineExceeded))
    );
}

#[test]
fn a_failed_run_is_re_run_after_its_delay_with_exponential_backoff() {
    let spec = "retryPolicy: {maxRetries: 2, retryDelay: 10s, backoffPolicy: exponential}
tasks: [{name: a, type: cmd, input: 'false'}]";
    let wf = after(workflow(spec), &plan_at(&workflow(spec), vec![], at(0)));
    let plan = plan_at(&wf, vec![child("r1", "a", Phase::Failed)], at(1));
    let s = plan.status.as_ref().unwrap();
    assert_eq!(
        (s.phase, s.reason.as_deref()),
        (Some(Phase::Running), Some("RetryScheduled"))
    );
    assert_eq!(s.next_retry_time.as_ref().unwrap().0, at(11));
    let wf = after(wf, &plan);
    let waiting = plan_at(&wf, vec![child("r1", "a", Phase::Failed)], at(5));
    assert!(waiting.create.is_empty() && waiting.status.is_none());
    let rerun = plan_at(&wf, vec![child("r1", "a", Phase::Failed)], at(11));
    assert_eq!(created(&rerun), ["wf.r2.a"]);
    let s = rerun.status.as_ref().unwrap();
    assert_eq!((s.run_id.as_deref(), s.retry_count), (Some("r2"), Some(1)));
    // The second failure waits twice as long.
    let wf = after(wf, &rerun);
    let plan = plan_at(
        &wf,
        vec![
            child("r1", "a", Phase::Failed),
            child("r2", "a", Phase::Failed),
        ],
        at(12),
    );
    assert_eq!(
        plan.status
            .as_ref()
            .unwrap()
            .next_retry_time
            .as_ref()
            .unwrap()
            .0,
        at(32)
    );
}

#[test]
fn a_spec_change_cancels_the_running_run_and_starts_another() {
    let wf = after(workflow(THREE), &plan_at(&workflow(THREE), vec![], at(0)));
    let mut changed = wf.clone();
    changed.metadata.generation = Some(2);
    let plan = plan_at(
        &changed,
        vec![
            child("r1", "a", Phase::Running),
            child("r1", "b", Phase::Succeeded),
        ],
        at(1),
    );
    assert!(plan.delete.contains(&"wf.r1.a".to_owned()));
    let s = plan.status.as_ref().unwrap();
    assert_eq!(s.run_id.as_deref(), Some("r2"));
    let superseded = &s.history.as_ref().unwrap()[0];
    assert_eq!(
        (
            superseded.run_id.as_deref(),
            superseded.error_code.as_deref()
        ),
        (Some("r1"), Some("Superseded"))
    );
    assert_eq!(created(&plan), ["wf.r2.a", "wf.r2.b"]);
}

#[test]
fn an_invalid_workflow_is_failed_once_and_creates_nothing() {
    let spec = "tasks:
- {name: a, type: cmd, input: x, dependencies: [b]}
- {name: b, type: cmd, input: x, dependencies: [a]}";
    let wf = workflow(spec);
    let plan = plan_at(&wf, vec![], at(0));
    assert!(plan.create.is_empty());
    let s = plan.status.as_ref().unwrap();
    assert_eq!(s.reason.as_deref(), Some("InvalidSpec"));
    assert_eq!(s.message.as_deref(), Some("spec.tasks: cycle a → b → a"));
    let again = plan_at(&after(wf, &plan), vec![], at(9));
    assert!(
        again.status.is_none() && again.events.is_empty(),
        "{again:?}"
    );
}

#[test]
fn a_due_tick_starts_a_run_and_forbid_skips_a_tick_while_it_runs() {
    let spec = "schedule: '@every 60s'
tasks: [{name: a, type: cmd, input: sleep 100}]";
    let mut wf = workflow(spec);
    wf.metadata.creation_timestamp = Some(Time(at(-30)));
    let tick = |n: i64| Timestamp::from_second((at(0).as_second() / 60 + n) * 60).unwrap();
    let before_tick = plan_at(&wf, vec![], tick(0) - 1.second());
    assert!(before_tick.create.is_empty(), "nothing is due yet");
    let plan = plan_at(&wf, vec![], tick(0) + 1.second());
    let s = plan.status.as_ref().unwrap();
    assert_eq!(s.last_schedule_time.as_ref().unwrap().0, tick(0));
    assert_eq!(s.next_schedule_time.as_ref().unwrap().0, tick(1));
    assert_eq!(created(&plan), ["wf.r1.a"]);
    let wf = after(wf, &plan);
    let plan = plan_at(
        &wf,
        vec![child("r1", "a", Phase::Running)],
        tick(1) + 1.second(),
    );
    let s = plan.status.as_ref().unwrap();
    assert!(plan.create.is_empty(), "Forbid");
    assert_eq!(s.last_schedule_time.as_ref().unwrap().0, tick(1));
    assert_eq!(s.history.as_ref().unwrap()[0].phase, Phase::Skipped);
}

#[test]
fn children_of_older_runs_outside_the_history_are_deleted() {
    let wf = after(workflow(THREE), &plan_at(&workflow(THREE), vec![], at(0)));
    let mut wf = wf;
    let s = wf.status.as_mut().unwrap();
    s.run_id = Some("r3".into());
    let plan = plan_at(
        &wf,
        vec![
            child("r1", "a", Phase::Succeeded),
            child("r4", "a", Phase::Running),
        ],
        at(1),
    );
    assert_eq!(
        plan.delete,
        ["wf.r1.a"],
        "r4 is newer than the cache's status: kept"
    );
}

const WITH_TEMPLATE: &str = "tasks: [{name: a, taskRef: {name: tmpl}}]";

#[test]
fn a_missing_template_fails_the_workflow_until_it_appears() {
    let wf = workflow(WITH_TEMPLATE);
    let plan = plan_at(&wf, vec![], at(0));
    let s = plan.status.as_ref().unwrap();
    assert_eq!(s.reason.as_deref(), Some("InvalidSpec"));
    assert!(plan.create.is_empty());
    assert_eq!(
        plan.requeue_after,
        Some(validate::MISSING_TEMPLATE_RECHECK),
        "looked at again"
    );
    let wf = after(wf, &plan);
    let again = plan_at(&wf, vec![], at(10));
    assert!(again.status.is_none(), "no write while it stays missing");
    let appeared = plan_with(&wf, vec![], at(20), &echo_template);
    assert_eq!(created(&appeared), ["wf.r1.a"]);
}

#[test]
fn a_finished_one_shot_run_does_not_care_that_its_template_went() {
    let wf = workflow(WITH_TEMPLATE);
    let wf = after(wf.clone(), &plan_with(&wf, vec![], at(0), &echo_template));
    let wf = after(
        wf.clone(),
        &plan_with(
            &wf,
            vec![child("r1", "a", Phase::Succeeded)],
            at(1),
            &echo_template,
        ),
    );
    assert_eq!(wf.status.as_ref().unwrap().phase, Some(Phase::Succeeded));
    let later = plan_at(&wf, vec![child("r1", "a", Phase::Succeeded)], at(2));
    assert!(later.status.is_none(), "{later:?}");
}

#[test]
fn a_step_that_could_never_run_fails_the_workflow_before_anything_is_created() {
    let wf = workflow(
        "tasks:\n- {name: a, type: cmd, input: 'true'}\n- {name: b, type: cmd, input: 'true', expect: 'regex:('}",
    );
    let plan = plan_at(&wf, vec![], at(0));
    assert!(plan.create.is_empty());
    let s = plan.status.as_ref().unwrap();
    assert_eq!(s.reason.as_deref(), Some("InvalidSpec"));
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .starts_with("spec.tasks[1]: step \"b\""),
        "{s:#?}"
    );
}

#[test]
fn a_spec_change_while_a_re_run_waits_calls_it_off_without_recording_the_run_twice() {
    let spec = "retryPolicy: {maxRetries: 1, retryDelay: 60s}\ntasks: [{name: a, type: cmd, input: 'false'}]";
    let wf = after(workflow(spec), &plan_at(&workflow(spec), vec![], at(0)));
    let wf = after(
        wf.clone(),
        &plan_at(&wf, vec![child("r1", "a", Phase::Failed)], at(1)),
    );
    assert!(wf.status.as_ref().unwrap().next_retry_time.is_some());
    let mut changed = wf;
    changed.metadata.generation = Some(2);
    let plan = plan_at(&changed, vec![child("r1", "a", Phase::Failed)], at(2));
    let s = plan.status.as_ref().unwrap();
    let runs: Vec<Option<&str>> = s
        .history
        .iter()
        .flatten()
        .map(|r| r.run_id.as_deref())
        .collect();
    assert_eq!(runs, [Some("r1")], "r1 is recorded once");
    assert_eq!(
        (s.run_id.as_deref(), s.retry_count),
        (Some("r2"), Some(0)),
        "the new spec's run"
    );
}

#[test]
fn a_created_child_the_cache_does_not_show_yet_holds_its_slot() {
    let spec = "concurrency: 2
tasks:
- {name: d, type: cmd, input: x}
- {name: e, type: cmd, input: x}
- {name: a1, type: cmd, input: x, dependencies: [d]}
- {name: a2, type: cmd, input: x, dependencies: [d]}
- {name: b, type: cmd, input: x, dependencies: [e]}";
    let p1 = plan_at(&workflow(spec), vec![], at(0));
    let wf = after(workflow(spec), &p1);
    let p2 = plan_at(
        &wf,
        vec![
            child("r1", "d", Phase::Running),
            child("r1", "e", Phase::Succeeded),
        ],
        at(1),
    );
    assert_eq!(created(&p2), ["wf.r1.b"]);
    let wf = after(wf, &p2);
    // d ended; the cache does not show b yet: b keeps its slot.
    let ended = vec![
        child("r1", "d", Phase::Succeeded),
        child("r1", "e", Phase::Succeeded),
    ];
    let p3 = plan_at(&wf, ended.clone(), at(2));
    assert_eq!(created(&p3), ["wf.r1.a1"]);
    // Still not seen 5 s after: its creation is repeated (a no-op if it exists).
    let wf = after(wf, &p3);
    let p4 = plan_at(&wf, ended, at(7));
    assert_eq!(created(&p4), ["wf.r1.a1", "wf.r1.b"]);
}

#[test]
fn deleting_a_step_s_child_cancels_the_step_and_it_does_not_run_again() {
    let spec = "failFast: false\ntasks:\n- {name: a, type: cmd, input: x}\n- {name: b, type: cmd, input: x, dependencies: [a]}";
    let wf = after(workflow(spec), &plan_at(&workflow(spec), vec![], at(0)));
    let wf = after(
        wf.clone(),
        &plan_at(&wf, vec![child("r1", "a", Phase::Running)], at(1)),
    );
    let p = plan_at(&wf, vec![], at(2));
    assert!(p.create.is_empty(), "{:?}", created(&p));
    let s = p.status.as_ref().unwrap();
    let a = &s.task_statuses.as_ref().unwrap()[0];
    assert_eq!(
        (a.phase, a.reason),
        (Phase::Failed, Some(StepReason::Cancelled))
    );
    assert_eq!(s.phase, Some(Phase::Failed), "b is skipped, the run ends");
}

#[test]
fn suspending_a_scheduled_workflow_lets_the_running_run_go_on() {
    let spec = "schedule: '@every 60s'\ntasks: [{name: a, type: cmd, input: sleep 100}]";
    let mut wf = workflow(spec);
    wf.metadata.creation_timestamp = Some(Time(at(-30)));
    let tick0 = Timestamp::from_second((at(0).as_second() / 60) * 60).unwrap();
    let mut wf = after(wf.clone(), &plan_at(&wf, vec![], tick0 + 1.second()));
    wf.spec.suspend = true;
    wf.metadata.generation = Some(2);
    let p = plan_at(
        &wf,
        vec![child("r1", "a", Phase::Running)],
        tick0 + 5.second(),
    );
    assert!(p.delete.is_empty(), "{:?}", p.delete);
    wf.spec.tasks[0].input = Some("echo changed".into());
    let p = plan_at(
        &wf,
        vec![child("r1", "a", Phase::Running)],
        tick0 + 6.second(),
    );
    assert_eq!(p.delete, ["wf.r1.a"], "new steps do cancel it");
}

#[test]
fn a_run_that_ended_in_time_but_is_judged_late_keeps_its_result() {
    let spec = format!("timeout: 10\n{THREE}");
    let wf = after(workflow(&spec), &plan_at(&workflow(&spec), vec![], at(0)));
    let done = ["a", "b", "c"]
        .map(|s| child("r1", s, Phase::Succeeded))
        .to_vec();
    let p = plan_at(&wf, done, at(11));
    let s = p.status.as_ref().unwrap();
    assert_eq!(
        (s.phase, s.reason.as_deref()),
        (Some(Phase::Succeeded), Some("Succeeded"))
    );
}

#[test]
fn a_tick_after_a_run_that_ended_unobserved_starts_the_next_run() {
    let spec = "schedule: '@every 60s'\ntasks: [{name: a, type: cmd, input: 'true'}]";
    let mut wf = workflow(spec);
    wf.metadata.creation_timestamp = Some(Time(at(-30)));
    let tick = |n: i64| Timestamp::from_second((at(0).as_second() / 60 + n) * 60).unwrap();
    let wf = after(wf.clone(), &plan_at(&wf, vec![], tick(0) + 1.second()));
    let p = plan_at(
        &wf,
        vec![child("r1", "a", Phase::Succeeded)],
        tick(1) + 1.second(),
    );
    assert_eq!(created(&p), ["wf.r2.a"]);
}

#[test]
fn a_superseded_run_s_child_that_survived_is_deleted_later() {
    let wf = after(workflow(THREE), &plan_at(&workflow(THREE), vec![], at(0)));
    let mut changed = wf.clone();
    changed.metadata.generation = Some(2);
    let running = vec![
        child("r1", "a", Phase::Running),
        child("r1", "b", Phase::Succeeded),
    ];
    let p = plan_at(&changed, running.clone(), at(1));
    assert!(p.delete.contains(&"wf.r1.a".to_owned()));
    // The status landed; the deletion did not.
    let changed = after(changed, &p);
    let p = plan_at(&changed, running, at(2));
    assert_eq!(
        p.delete,
        ["wf.r1.a"],
        "an executing child of an older run goes"
    );
}

#[test]
fn fail_fast_counts_a_failure_whose_only_handler_was_skipped() {
    let spec = "tasks:
- {name: a, type: cmd, input: 'false'}
- {name: h, type: cmd, input: x, dependencies: [a], condition: {when: failure, outputContains: nope}}
- {name: z, type: cmd, input: x, dependencies: [y]}
- {name: y, type: cmd, input: x}";
    let wf = after(workflow(spec), &plan_at(&workflow(spec), vec![], at(0)));
    let p = plan_at(
        &wf,
        vec![
            child("r1", "a", Phase::Failed),
            child("r1", "y", Phase::Succeeded),
        ],
        at(1),
    );
    assert!(
        created(&p).is_empty(),
        "z starts after an unhandled failure: {:?}",
        created(&p)
    );
}

#[test]
fn a_template_of_another_namespace_is_used_only_when_the_operator_allows_it() {
    let wf = workflow("tasks: [{name: a, taskRef: {name: tmpl, namespace: shared}}]");
    let shared_only =
        |ns: &str, name: &str| (ns == "shared").then(|| echo_template(ns, name)).flatten();
    let observed = |allowed| Observed {
        workflow: &wf,
        children: vec![],
        template: &shared_only,
        cross_namespace_templates: allowed,
        now: at(0),
    };
    let refused = plan(&observed(false));
    assert!(refused.create.is_empty());
    let message = refused.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        message.starts_with("spec.tasks[0].taskRef.namespace: "),
        "{message}"
    );
    let allowed = plan(&observed(true));
    assert_eq!(created(&allowed), ["wf.r1.a"]);
    assert_eq!(allowed.create[0].spec.input.as_deref(), Some("echo t"));
    assert_eq!(
        allowed.create[0].metadata.namespace.as_deref(),
        Some("ns"),
        "runs in the workflow's namespace"
    );
}
