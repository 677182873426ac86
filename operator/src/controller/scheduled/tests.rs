//! Plans of scheduled tasks as tables: (task, runs here, Lease, dependencies, now) → effects.
//! Times are whole minutes from `at(0)`; the schedule fires every minute.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use mcall_generated::McallTask;

use super::*;
use crate::controller::fixtures::at;
use crate::controller::report::writes::Precondition;

const MINUTE: i64 = 60;

/// A task on `* * * * *` created at `at(-600)`, generation 1, no status.
fn task() -> McallTask {
    let mut task: McallTask = serde_json::from_value(serde_json::json!({
        "apiVersion": "mcall.tz.io/v1", "kind": "McallTask",
        "metadata": {"name": "t", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": {"type": "get", "input": "http://127.0.0.1/", "schedule": "* * * * *"}
    }))
    .unwrap();
    task.metadata.creation_timestamp = Some(Time(at(-600)));
    task
}

fn with_status(mut task: McallTask, edit: impl FnOnce(&mut McallTaskStatus)) -> McallTask {
    let mut status = McallTaskStatus {
        observed_generation: Some(1),
        phase: Some(Phase::Succeeded),
        ..Default::default()
    };
    edit(&mut status);
    task.status = Some(status);
    task
}

fn observed(task: &McallTask, now: Timestamp) -> Observed<'_> {
    Observed {
        task,
        generation: 1,
        now,
        rejection: None,
        active: None,
        last_ran: None,
        previous_process_until: at(-3600),
        dependencies: Vec::new(),
        all_inputs_in_pods: false,
    }
}

/// The run a plan starts, if it starts exactly one.
fn started(plan: &Plan) -> Option<&ScheduledRun> {
    match plan.effects.as_slice() {
        [Effect::StartRun { kind, .. }] => match kind.as_ref() {
            RunKind::Scheduled(run) => Some(run),
            RunKind::OneShot => None,
        },
        _ => None,
    }
}

/// The status written onto the version read and the Event reason, of a one-write plan.
fn written(plan: &Plan) -> (McallTaskStatus, Option<&'static str>) {
    match plan.effects.as_slice() {
        [
            Effect::WriteStatus {
                status,
                precondition: Precondition::OnRead,
                then,
            },
        ] => ((**status).clone(), then.as_ref().map(|n| n.reason.as_str())),
        other => panic!("expected one conditional write, got {other:?}"),
    }
}

#[test]
fn an_unparsable_schedule_is_rejected_once_per_generation() {
    let mut bad = task();
    bad.spec.schedule = Some("61 * * * *".into());
    let plan = plan(&observed(&bad, at(0)));
    let (status, event) = written(&plan);
    assert_eq!(
        (status.phase, event),
        (Some(Phase::Failed), Some("InvalidSchedule"))
    );
    let rejected = McallTask {
        status: Some(status),
        ..bad.clone()
    };
    assert_eq!(super::plan(&observed(&rejected, at(5))), Plan::idle());
}

#[test]
fn a_spec_the_engine_refuses_is_rejected_like_a_bad_schedule() {
    let t = task();
    let o = Observed {
        rejection: Some((Reason::CommandsNotAllowed, "not here".into())),
        ..observed(&t, at(0))
    };
    let (status, event) = written(&plan(&o));
    assert_eq!(
        (status.phase, event),
        (Some(Phase::Failed), Some("CommandsNotAllowed"))
    );
}

#[test]
fn a_due_tick_starts_a_run_claimed_now_and_wakes_before_the_next() {
    let t = with_status(task(), |s| {
        s.last_schedule_time = Some(MicroTime(at(-MINUTE)))
    });
    let plan = plan(&observed(&t, at(5)));
    let run = started(&plan).expect("a run");
    assert_eq!(
        (run.scheduled, run.tick, run.claim),
        (at(0), Some(at(0)), Claim::Now)
    );
    assert_eq!(run.next, Some(at(MINUTE)));
    assert_eq!(
        plan.requeue_after,
        Some(Duration::from_secs(54)),
        "the next tick minus the lead"
    );
}

#[test]
fn a_tick_within_the_lead_is_claimed_ahead() {
    let t = with_status(task(), |s| {
        s.last_schedule_time = Some(MicroTime(at(0)));
        s.next_schedule_time = Some(MicroTime(at(MINUTE)));
    });
    let ahead = plan(&observed(&t, at(MINUTE - 1)));
    let run = started(&ahead).expect("a run");
    assert_eq!((run.tick, run.claim), (Some(at(MINUTE)), Claim::Ahead));
    let early = plan(&observed(&t, at(MINUTE - 5)));
    assert!(early.effects.is_empty(), "not yet: {early:?}");
    assert_eq!(early.requeue_after, Some(Duration::from_secs(4)));
}

#[test]
fn a_new_task_with_its_first_run_soon_writes_nothing_until_then() {
    let mut t = task();
    t.metadata.creation_timestamp = Some(Time(at(-30)));
    let plan = plan(&observed(&t, at(-20)));
    assert_eq!(plan.effects, []);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(19)));
}

#[test]
fn a_due_tick_with_an_unmet_dependency_is_recorded_skipped() {
    let t = with_status(task(), |s| {
        s.last_schedule_time = Some(MicroTime(at(-MINUTE)))
    });
    let o = Observed {
        dependencies: vec![("db".into(), Some(Phase::Failed))],
        ..observed(&t, at(1))
    };
    let (status, event) = written(&plan(&o));
    assert_eq!(event, Some("Skipped"));
    assert_eq!(
        status.last_schedule_time,
        Some(MicroTime(at(0))),
        "the tick is decided"
    );
    let record = &status.history.as_ref().unwrap()[0];
    assert_eq!(
        (record.phase, record.error_code.as_deref()),
        (Phase::Skipped, Some("Skipped"))
    );
}

#[test]
fn forbid_records_a_tick_skipped_while_a_run_is_active() {
    let mut t = task();
    t.spec.concurrency_policy = mcall_generated::ScheduleConcurrencyPolicy::Forbid;
    let t = with_status(t, |s| {
        s.last_schedule_time = Some(MicroTime(at(-MINUTE)));
        s.phase = Some(Phase::Running);
        s.current_run = Some(MicroTime(at(-MINUTE)));
    });
    let o = Observed {
        active: Some(at(-MINUTE)),
        ..observed(&t, at(1))
    };
    let (status, event) = written(&plan(&o));
    assert_eq!(event, Some("Skipped"));
    assert_eq!(status.last_schedule_time, Some(MicroTime(at(0))));
}

#[test]
fn a_run_recorded_running_that_runs_nowhere_was_interrupted() {
    let t = with_status(task(), |s| {
        s.phase = Some(Phase::Running);
        s.current_run = Some(MicroTime(at(0)));
        s.last_schedule_time = Some(MicroTime(at(0)));
    });
    let (status, event) = written(&plan(&observed(&t, at(10))));
    assert_eq!(
        (status.phase, event),
        (Some(Phase::Failed), Some("Interrupted"))
    );
    assert_eq!(status.current_run, None);
}

#[test]
fn a_run_recorded_running_in_pods_is_adopted_and_its_tick_stays_decided() {
    let t = with_status(task(), |s| {
        s.phase = Some(Phase::Running);
        s.current_run = Some(MicroTime(at(0)));
        s.last_schedule_time = Some(MicroTime(at(0)));
        s.next_schedule_time = Some(MicroTime(at(MINUTE)));
    });
    let in_pods = Observed {
        all_inputs_in_pods: true,
        ..observed(&t, at(10))
    };
    let plan = plan(&in_pods);
    let [
        Effect::Announce(note),
        Effect::StartRun { kind, status: None },
    ] = plan.effects.as_slice()
    else {
        panic!("expected an announced start, got {:?}", plan.effects);
    };
    assert_eq!(note.reason, Reason::Adopted);
    let RunKind::Scheduled(run) = kind.as_ref() else {
        panic!("a scheduled run");
    };
    assert_eq!(
        (
            run.scheduled,
            run.tick,
            run.next,
            run.claim,
            run.cancel_previous
        ),
        (at(0), Some(at(0)), Some(at(MINUTE)), Claim::Adopted, false)
    );
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(49)));

    // A run this process finished, its result not in the cache yet: not replayed.
    let finished_here = Observed {
        last_ran: Some(at(0)),
        all_inputs_in_pods: true,
        ..observed(&t, at(10))
    };
    let (_, event) = written(&super::plan(&finished_here));
    assert_eq!(event, Some("Interrupted"), "written onto the version read");

    // A run of an earlier generation: its spec is gone, so it is not replayed.
    let mut changed = t.clone();
    changed.metadata.generation = Some(2);
    let older = Observed {
        generation: 2,
        all_inputs_in_pods: true,
        ..observed(&changed, at(10))
    };
    let (status, event) = written(&super::plan(&older));
    assert_eq!(
        (status.phase, event),
        (Some(Phase::Failed), Some("Interrupted"))
    );
}

#[test]
fn a_claimed_tick_waits_then_runs_chained_unless_the_previous_process_may_have_run_it() {
    let t = with_status(task(), |s| {
        s.last_schedule_time = Some(MicroTime(at(0)));
        s.claimed_tick = Some(MicroTime(at(MINUTE)));
    });
    let waiting = plan(&observed(&t, at(30)));
    assert_eq!(waiting.effects, []);
    assert_eq!(waiting.requeue_after, Some(Duration::from_secs(29)));

    let due = plan(&observed(&t, at(MINUTE - 1)));
    let run = started(&due).expect("the claimed run");
    assert_eq!(
        (run.scheduled, run.claim, run.cancel_previous),
        (at(MINUTE), Claim::Chained, false)
    );

    let after_crash = Observed {
        previous_process_until: at(MINUTE + 2),
        ..observed(&t, at(MINUTE + 3))
    };
    let (status, event) = written(&plan(&after_crash));
    assert_eq!(
        (status.phase, event),
        (Some(Phase::Failed), Some("Interrupted"))
    );
    assert_eq!(status.claimed_tick, None);
}

#[test]
fn a_run_now_request_does_not_wait_for_a_claimed_tick() {
    let mut t = with_status(task(), |s| {
        s.last_schedule_time = Some(MicroTime(at(0)));
        s.claimed_tick = Some(MicroTime(at(MINUTE)));
    });
    t.metadata.annotations =
        Some([(schedule::RUN_NOW_ANNOTATION.to_owned(), "1".to_owned())].into());
    let plan = plan(&observed(&t, at(30)));
    let run = started(&plan).expect("the run-now run");
    assert_eq!((run.run_now.as_deref(), run.tick), (Some("1"), None));
}

#[test]
fn a_run_now_beside_a_claimed_tick_running_here_records_that_tick_as_decided() {
    let mut t = with_status(task(), |s| {
        s.last_schedule_time = Some(MicroTime(at(0)));
        s.claimed_tick = Some(MicroTime(at(MINUTE)));
    });
    t.spec.concurrency_policy = mcall_generated::ScheduleConcurrencyPolicy::Allow;
    t.metadata.annotations =
        Some([(schedule::RUN_NOW_ANNOTATION.to_owned(), "2".to_owned())].into());
    let o = Observed {
        active: Some(at(MINUTE)),
        ..observed(&t, at(MINUTE + 1))
    };
    let plan = plan(&o);
    match plan.effects.as_slice() {
        [
            Effect::StartRun {
                status: Some(base), ..
            },
        ] => {
            assert_eq!(base.last_schedule_time, Some(MicroTime(at(MINUTE))));
        }
        other => panic!("expected a run on the decided status, got {other:?}"),
    }
}
