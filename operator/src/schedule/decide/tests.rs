//! The decision with a fake clock: every instant is a constructed `Timestamp`.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mcall_generated::ScheduleConcurrencyPolicy::{self, Allow, Forbid, Replace};

use super::*;

fn at(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("bad timestamp {s}: {e}"))
}

/// A scheduled task and what status and the cluster say about it; modifiers chain.
#[derive(Clone)]
struct Case {
    schedule: Schedule,
    now: Timestamp,
    created: Timestamp,
    suspend: bool,
    policy: ScheduleConcurrencyPolicy,
    deadline: Option<i64>,
    last: Option<Timestamp>,
    active: Option<Timestamp>,
    requested: Option<String>,
    handled: Option<String>,
}

/// Created at 2025-01-01T00:00:00Z with policy Allow, no deadline, never scheduled.
fn task(expr: &str) -> Case {
    task_in(expr, None)
}

fn task_in(expr: &str, tz: Option<&str>) -> Case {
    Case {
        schedule: Schedule::parse(expr, tz).unwrap(),
        now: at("2025-01-01T00:00:00Z"),
        created: at("2025-01-01T00:00:00Z"),
        suspend: false,
        policy: Allow,
        deadline: None,
        last: None,
        active: None,
        requested: None,
        handled: None,
    }
}

impl Case {
    fn now(mut self, now: &str) -> Self {
        self.now = at(now);
        self
    }
    fn created(mut self, created: &str) -> Self {
        self.created = at(created);
        self
    }
    fn last(mut self, last: &str) -> Self {
        self.last = Some(at(last));
        self
    }
    fn active(mut self, scheduled: &str) -> Self {
        self.active = Some(at(scheduled));
        self
    }
    fn policy(mut self, policy: ScheduleConcurrencyPolicy) -> Self {
        self.policy = policy;
        self
    }
    fn deadline(mut self, seconds: i64) -> Self {
        self.deadline = Some(seconds);
        self
    }
    fn suspended(mut self, suspend: bool) -> Self {
        self.suspend = suspend;
        self
    }
    fn run_now(mut self, requested: &str, handled: Option<&str>) -> Self {
        self.requested = Some(requested.to_owned());
        self.handled = handled.map(str::to_owned);
        self
    }
    fn schedule(mut self, expr: &str) -> Self {
        self.schedule = Schedule::parse(expr, None).unwrap();
        self
    }

    fn decide(&self) -> ScheduleDecision {
        decide(&ScheduleInput {
            schedule: &self.schedule,
            now: self.now,
            created: self.created,
            suspend: self.suspend,
            concurrency_policy: self.policy,
            starting_deadline_seconds: self.deadline,
            last_schedule_time: self.last,
            active_run: self.active,
            run_now: RunNowRequest {
                requested: self.requested.as_deref(),
                handled: self.handled.as_deref(),
            },
        })
    }

    /// What the controller does after acting on a decision: record the tick and the handled
    /// run-now value; a started run becomes the active one.
    fn after(mut self, decision: &ScheduleDecision) -> Self {
        if let Some(tick) = decision.tick {
            self.last = Some(tick.time);
        }
        if let Some(run) = &decision.run {
            self.active = Some(run.scheduled_time);
            if let Some(value) = &run.run_now {
                self.handled = Some(value.clone());
            }
        }
        self
    }
}

fn tick_run(time: &str, older_missed: usize) -> Option<DueTick> {
    Some(DueTick {
        time: at(time),
        verdict: TickVerdict::Run,
        older_missed,
    })
}

fn run_for_tick(time: &str, active: ActiveRunAction) -> Option<Run> {
    Some(Run {
        scheduled_time: at(time),
        tick: Some(at(time)),
        run_now: None,
        active,
    })
}

fn idle(next: Option<&str>) -> ScheduleDecision {
    ScheduleDecision {
        tick: None,
        run: None,
        run_now_deferred: false,
        next_schedule_time: next.map(at),
        requeue_at: next.map(at),
    }
}

// === Ticks ===

#[test]
fn before_the_first_tick_it_sleeps_until_it() {
    let case = task("0 * * * *")
        .created("2025-01-01T10:00:10Z")
        .now("2025-01-01T10:30:00Z");
    assert_eq!(case.decide(), idle(Some("2025-01-01T11:00:00Z")));
}

#[test]
fn no_tick_at_or_before_creation_is_due() {
    let case = task("0 * * * *")
        .created("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:00:00.5Z");
    assert_eq!(case.decide(), idle(Some("2025-01-01T11:00:00Z")));
    // An old lastScheduleTime (e.g. a recreated object with copied status) does not reach
    // before creation either.
    let case = case.last("2024-12-01T00:00:00Z");
    assert_eq!(case.decide(), idle(Some("2025-01-01T11:00:00Z")));
}

#[test]
fn a_due_tick_runs_and_requeues_at_the_next_one() {
    let case = task("0 * * * *")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T11:00:00.004Z");
    assert_eq!(
        case.decide(),
        ScheduleDecision {
            tick: tick_run("2025-01-01T11:00:00Z", 0),
            run: run_for_tick("2025-01-01T11:00:00Z", ActiveRunAction::NoneActive),
            run_now_deferred: false,
            next_schedule_time: Some(at("2025-01-01T12:00:00Z")),
            requeue_at: Some(at("2025-01-01T12:00:00Z")),
        }
    );
}

#[test]
fn the_first_tick_after_creation_runs() {
    let case = task("*/5 * * * *")
        .created("2025-01-01T10:03:00Z")
        .now("2025-01-01T10:05:00Z");
    let decision = case.decide();
    assert_eq!(decision.tick, tick_run("2025-01-01T10:05:00Z", 0));
    assert_eq!(
        decision.next_schedule_time,
        Some(at("2025-01-01T10:10:00Z"))
    );
}

#[test]
fn the_same_input_twice_gives_the_same_tick_and_a_recorded_tick_never_runs_again() {
    let case = task("0 * * * *")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T11:00:01Z");
    let first = case.decide();
    assert_eq!(first, case.decide()); // A restart before status was written: same identity.
    assert_eq!(first.tick.unwrap().time, at("2025-01-01T11:00:00Z"));

    // After the controller recorded the tick (and restarted, or lost and regained leadership),
    // the same tick is not due any more, even later within the hour.
    let recorded = case.clone().after(&first);
    for now in [
        "2025-01-01T11:00:01Z",
        "2025-01-01T11:30:00Z",
        "2025-01-01T11:59:59.999Z",
    ] {
        let decision = recorded.clone().now(now).decide();
        assert_eq!(decision.tick, None, "{now}");
        assert_eq!(decision.run, None, "{now}");
        assert_eq!(
            decision.requeue_at,
            Some(at("2025-01-01T12:00:00Z")),
            "{now}"
        );
    }
}

#[test]
fn woken_a_little_early_it_requeues_for_the_tick() {
    let case = task("0 * * * *")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:59:59.990Z");
    assert_eq!(case.decide(), idle(Some("2025-01-01T11:00:00Z")));
}

#[test]
fn a_clock_behind_the_recorded_tick_does_not_run_it_again() {
    // Another replica with a clock ahead recorded 11:00 already.
    let case = task("0 * * * *")
        .last("2025-01-01T11:00:00Z")
        .now("2025-01-01T10:59:59Z");
    assert_eq!(case.decide(), idle(Some("2025-01-01T12:00:00Z")));
}

#[test]
fn every_two_seconds_ticks_on_even_seconds() {
    let case = task("@every 2s")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:00:02.003Z");
    let decision = case.decide();
    assert_eq!(decision.tick, tick_run("2025-01-01T10:00:02Z", 0));
    assert_eq!(decision.requeue_at, Some(at("2025-01-01T10:00:04Z")));
    let later = case.after(&decision).now("2025-01-01T10:00:03Z").decide();
    assert_eq!(later.tick, None);
    assert_eq!(later.requeue_at, Some(at("2025-01-01T10:00:04Z")));
}

#[test]
fn a_schedule_that_never_fires_is_not_requeued() {
    let case = task("0 0 30 2 *").now("2025-06-01T00:00:00Z");
    assert_eq!(case.decide(), idle(None));
}

// === Missed ticks and the starting deadline ===

#[test]
fn after_downtime_only_the_latest_tick_runs_and_older_ones_are_counted() {
    let case = task("0 * * * *")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T13:20:00Z");
    let decision = case.decide();
    assert_eq!(decision.tick, tick_run("2025-01-01T13:00:00Z", 2));
    assert_eq!(
        decision.run,
        run_for_tick("2025-01-01T13:00:00Z", ActiveRunAction::NoneActive)
    );
    assert_eq!(
        decision.next_schedule_time,
        Some(at("2025-01-01T14:00:00Z"))
    );
}

#[test]
fn a_missed_tick_within_the_deadline_runs() {
    let case = task("0 * * * *")
        .deadline(600)
        .last("2025-01-01T12:00:00Z")
        .now("2025-01-01T13:05:00Z");
    assert_eq!(case.decide().tick, tick_run("2025-01-01T13:00:00Z", 0));
}

#[test]
fn a_missed_tick_outside_the_deadline_is_recorded_as_missed() {
    let case = task("0 * * * *")
        .deadline(60)
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T13:05:00Z");
    assert_eq!(
        case.decide(),
        ScheduleDecision {
            tick: Some(DueTick {
                time: at("2025-01-01T13:00:00Z"),
                verdict: TickVerdict::Missed {
                    late: SignedDuration::from_mins(5)
                },
                older_missed: 2,
            }),
            run: None,
            run_now_deferred: false,
            next_schedule_time: Some(at("2025-01-01T14:00:00Z")),
            requeue_at: Some(at("2025-01-01T14:00:00Z")),
        }
    );
    // Once recorded, the miss is not reported again.
    let recorded = case.clone().after(&case.decide());
    assert_eq!(recorded.decide(), idle(Some("2025-01-01T14:00:00Z")));
}

#[test]
fn the_deadline_counts_whole_seconds() {
    let case = task("0 * * * *").deadline(0).last("2025-01-01T10:00:00Z");
    let on_time = case.clone().now("2025-01-01T11:00:00.999Z").decide();
    assert_eq!(on_time.tick.unwrap().verdict, TickVerdict::Run);
    let late = case.clone().now("2025-01-01T11:00:01Z").decide();
    assert!(matches!(
        late.tick.unwrap().verdict,
        TickVerdict::Missed { .. }
    ));

    let case = task("0 * * * *").deadline(30).last("2025-01-01T10:00:00Z");
    let within = case.clone().now("2025-01-01T11:00:30.5Z").decide();
    assert_eq!(within.tick.unwrap().verdict, TickVerdict::Run);
    let past = case.now("2025-01-01T11:00:31Z").decide();
    assert!(matches!(
        past.tick.unwrap().verdict,
        TickVerdict::Missed { .. }
    ));
}

#[test]
fn the_missed_count_saturates() {
    let case = task("@every 1s")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T11:00:00.5Z");
    let tick = case.decide().tick.unwrap();
    assert_eq!(tick.time, at("2025-01-01T11:00:00Z"));
    assert_eq!(tick.older_missed, MISSED_COUNT_LIMIT);

    let case = task("@every 1s")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:01:41Z");
    assert_eq!(case.decide().tick.unwrap().older_missed, 100);
    let case = case.now("2025-01-01T10:01:40Z");
    assert_eq!(case.decide().tick.unwrap().older_missed, 99);
}

// === Concurrency policy ===

#[test]
fn forbid_skips_a_tick_while_a_run_is_active() {
    let case = task("*/5 * * * *")
        .policy(Forbid)
        .last("2025-01-01T10:00:00Z")
        .active("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:05:00.01Z");
    let decision = case.decide();
    assert_eq!(
        decision.tick,
        Some(DueTick {
            time: at("2025-01-01T10:05:00Z"),
            verdict: TickVerdict::Skipped,
            older_missed: 0,
        })
    );
    assert_eq!(decision.run, None);
    assert_eq!(decision.requeue_at, Some(at("2025-01-01T10:10:00Z")));
    // Recorded as skipped, it is not reconsidered when the active run ends.
    let mut finished = case.after(&decision);
    finished.active = None;
    assert_eq!(
        finished.now("2025-01-01T10:07:00Z").decide(),
        idle(Some("2025-01-01T10:10:00Z"))
    );
}

#[test]
fn forbid_runs_when_nothing_is_active() {
    let case = task("*/5 * * * *")
        .policy(Forbid)
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:05:00Z");
    assert_eq!(
        case.decide().run,
        run_for_tick("2025-01-01T10:05:00Z", ActiveRunAction::NoneActive)
    );
}

#[test]
fn replace_cancels_the_active_run_and_starts_the_tick() {
    let case = task("*/5 * * * *")
        .policy(Replace)
        .last("2025-01-01T10:00:00Z")
        .active("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:05:00Z");
    let decision = case.decide();
    assert_eq!(decision.tick, tick_run("2025-01-01T10:05:00Z", 0));
    assert_eq!(
        decision.run,
        run_for_tick("2025-01-01T10:05:00Z", ActiveRunAction::Cancel)
    );
}

#[test]
fn allow_starts_the_tick_and_leaves_the_active_run() {
    let case = task("*/5 * * * *")
        .policy(Allow)
        .last("2025-01-01T10:00:00Z")
        .active("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:05:00Z");
    assert_eq!(
        case.decide().run,
        run_for_tick("2025-01-01T10:05:00Z", ActiveRunAction::LeaveRunning)
    );
}

#[test]
fn a_late_tick_is_missed_whatever_the_policy() {
    for policy in [Allow, Forbid, Replace] {
        let case = task("*/5 * * * *")
            .policy(policy)
            .deadline(10)
            .last("2025-01-01T10:00:00Z")
            .active("2025-01-01T10:00:00Z")
            .now("2025-01-01T10:06:00Z");
        let decision = case.decide();
        assert!(
            matches!(decision.tick.unwrap().verdict, TickVerdict::Missed { .. }),
            "{policy:?}"
        );
        assert_eq!(decision.run, None, "{policy:?}");
    }
}

// === Suspend ===

#[test]
fn a_suspended_task_does_nothing_and_is_not_requeued() {
    let case = task("0 * * * *")
        .suspended(true)
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T11:00:00Z");
    assert_eq!(case.decide(), idle(None));
}

#[test]
fn resuming_runs_at_most_the_latest_tick() {
    // Suspended from 10:30 to 15:10; ticks at 11, 12, 13, 14 and 15 were not run.
    let resumed = task("0 * * * *")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T15:10:00Z");
    let decision = resumed.decide();
    assert_eq!(decision.tick, tick_run("2025-01-01T15:00:00Z", 4));
    assert_eq!(
        decision.run,
        run_for_tick("2025-01-01T15:00:00Z", ActiveRunAction::NoneActive)
    );
    // Only one run: right after it, nothing else is due.
    let after = resumed.clone().after(&decision);
    let again = after.now("2025-01-01T15:10:01Z").decide();
    assert_eq!((again.tick, again.run), (None, None));

    // With a deadline the latest tick is too old: missed, and the next one is waited for.
    let with_deadline = resumed.deadline(300).decide();
    assert!(matches!(
        with_deadline.tick.unwrap().verdict,
        TickVerdict::Missed { .. }
    ));
    assert_eq!(with_deadline.run, None);
    assert_eq!(with_deadline.requeue_at, Some(at("2025-01-01T16:00:00Z")));
}

// === Schedule edits ===

#[test]
fn an_edited_schedule_takes_effect_at_once() {
    let before = task("0 * * * *")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:20:00Z");
    assert_eq!(before.decide(), idle(Some("2025-01-01T11:00:00Z")));

    let edited = before.clone().schedule("*/30 * * * *");
    assert_eq!(edited.decide(), idle(Some("2025-01-01T10:30:00Z")));

    let edited = before.clone().schedule("@every 2s");
    // 599 older ticks since 10:00:00, counted up to the limit.
    assert_eq!(
        edited.decide().tick,
        tick_run("2025-01-01T10:20:00Z", MISSED_COUNT_LIMIT)
    );
    assert_eq!(
        edited.decide().next_schedule_time,
        Some(at("2025-01-01T10:20:02Z"))
    );

    // A tick of the new expression between the last one and now is due (as in CronJob, which
    // also counts from lastScheduleTime), unless the deadline says it is too late.
    let edited = before.clone().schedule("15 * * * *");
    assert_eq!(edited.decide().tick, tick_run("2025-01-01T10:15:00Z", 0));
    let edited = edited.deadline(60);
    assert!(matches!(
        edited.decide().tick.unwrap().verdict,
        TickVerdict::Missed { .. }
    ));
    assert_eq!(
        edited.decide().next_schedule_time,
        Some(at("2025-01-01T11:15:00Z"))
    );
}

// === Run now ===

fn run_now(value: &str, scheduled: &str, active: ActiveRunAction) -> Option<Run> {
    Some(Run {
        scheduled_time: at(scheduled),
        tick: None,
        run_now: Some(value.to_owned()),
        active,
    })
}

#[test]
fn a_new_run_now_value_runs_once() {
    let case = task("0 * * * *")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:20:00Z")
        .run_now("2025-01-01T10:19:58Z", None);
    let decision = case.decide();
    assert_eq!(decision.tick, None);
    assert_eq!(
        decision.run,
        run_now(
            "2025-01-01T10:19:58Z",
            "2025-01-01T10:20:00Z",
            ActiveRunAction::NoneActive
        )
    );
    assert_eq!(decision.requeue_at, Some(at("2025-01-01T11:00:00Z")));

    // Handled: the same value does nothing, a new one runs again.
    let mut handled = case.after(&decision);
    handled.active = None;
    assert_eq!(
        handled.clone().now("2025-01-01T10:21:00Z").decide(),
        idle(Some("2025-01-01T11:00:00Z"))
    );
    let again = handled
        .run_now("second", Some("2025-01-01T10:19:58Z"))
        .now("2025-01-01T10:22:00Z")
        .decide();
    assert_eq!(
        again.run,
        run_now(
            "second",
            "2025-01-01T10:22:00Z",
            ActiveRunAction::NoneActive
        )
    );
}

#[test]
fn an_empty_run_now_value_is_no_request() {
    let case = task("0 * * * *")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:20:00Z")
        .run_now("", None);
    assert_eq!(case.decide(), idle(Some("2025-01-01T11:00:00Z")));
}

#[test]
fn a_tick_and_a_run_now_request_due_together_share_one_run() {
    let case = task("0 * * * *")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T11:00:00Z")
        .run_now("now", None);
    assert_eq!(
        case.decide().run,
        Some(Run {
            scheduled_time: at("2025-01-01T11:00:00Z"),
            tick: Some(at("2025-01-01T11:00:00Z")),
            run_now: Some("now".to_owned()),
            active: ActiveRunAction::NoneActive,
        })
    );
}

#[test]
fn run_now_follows_the_concurrency_policy() {
    let busy = task("0 * * * *")
        .last("2025-01-01T10:00:00Z")
        .active("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:20:00Z")
        .run_now("x", Some("w"));

    let forbid = busy.clone().policy(Forbid).decide();
    assert_eq!(forbid.run, None);
    assert!(forbid.run_now_deferred);
    assert_eq!(forbid.requeue_at, Some(at("2025-01-01T11:00:00Z")));
    // The request waited; once the run ended it runs.
    let mut ended = busy.clone().policy(Forbid);
    ended.active = None;
    assert_eq!(
        ended.decide().run,
        run_now("x", "2025-01-01T10:20:00Z", ActiveRunAction::NoneActive)
    );

    assert_eq!(
        busy.clone().policy(Replace).decide().run,
        run_now("x", "2025-01-01T10:20:00Z", ActiveRunAction::Cancel)
    );
    assert_eq!(
        busy.policy(Allow).decide().run,
        run_now("x", "2025-01-01T10:20:00Z", ActiveRunAction::LeaveRunning)
    );
}

#[test]
fn forbid_skips_the_tick_and_defers_run_now_together() {
    let decision = task("0 * * * *")
        .policy(Forbid)
        .last("2025-01-01T10:00:00Z")
        .active("2025-01-01T10:00:00Z")
        .now("2025-01-01T11:00:00Z")
        .run_now("x", None)
        .decide();
    assert_eq!(decision.tick.unwrap().verdict, TickVerdict::Skipped);
    assert_eq!(decision.run, None);
    assert!(decision.run_now_deferred);
}

#[test]
fn run_now_works_while_suspended() {
    let decision = task("0 * * * *")
        .suspended(true)
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T12:20:00Z")
        .run_now("x", None)
        .decide();
    assert_eq!(decision.tick, None);
    assert_eq!(
        decision.run,
        run_now("x", "2025-01-01T12:20:00Z", ActiveRunAction::NoneActive)
    );
    assert_eq!(decision.requeue_at, None);
}

#[test]
fn run_now_runs_when_the_tick_is_missed() {
    let decision = task("0 * * * *")
        .deadline(60)
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T11:20:00Z")
        .run_now("x", None)
        .decide();
    assert!(matches!(
        decision.tick.unwrap().verdict,
        TickVerdict::Missed { .. }
    ));
    assert_eq!(
        decision.run,
        run_now("x", "2025-01-01T11:20:00Z", ActiveRunAction::NoneActive)
    );
}

#[test]
fn the_run_now_annotation_name() {
    assert_eq!(RUN_NOW_ANNOTATION, "mcall.tz.io/run-now");
    let request = RunNowRequest {
        requested: Some("a"),
        handled: Some("a"),
    };
    assert_eq!(request.pending(), None);
    assert_eq!(RunNowRequest::default().pending(), None);
}

// === Daylight saving time ===

#[test]
fn berlin_decisions_across_daylight_saving_time() {
    // Spring forward: on 2025-03-30 there is no 02:30; at 03:30 CEST nothing is due.
    let spring = task_in("30 2 * * *", Some("Europe/Berlin"))
        .last("2025-03-29T01:30:00Z")
        .now("2025-03-30T01:30:00Z");
    assert_eq!(spring.decide(), idle(Some("2025-03-31T00:30:00Z")));

    // Fall back: 02:30 CEST ran; at 02:30 CET (the repeat) nothing is due.
    let fall = task_in("30 2 * * *", Some("Europe/Berlin"))
        .last("2025-10-26T00:30:00Z")
        .now("2025-10-26T01:30:00.1Z");
    assert_eq!(fall.decide(), idle(Some("2025-10-27T01:30:00Z")));
}

#[test]
fn new_york_decisions_across_daylight_saving_time() {
    // Spring forward on 2025-03-09: 02:30 does not exist; the next tick is on the 10th.
    let spring = task_in("30 2 * * *", Some("America/New_York"))
        .last("2025-03-08T07:30:00Z")
        .now("2025-03-09T07:30:00Z");
    assert_eq!(spring.decide(), idle(Some("2025-03-10T06:30:00Z")));

    // Fall back on 2025-11-02: 01:30 EDT runs, 01:30 EST does not.
    let fall = task_in("30 1 * * *", Some("America/New_York"))
        .last("2025-11-01T05:30:00Z")
        .now("2025-11-02T05:30:00Z");
    let first = fall.decide();
    assert_eq!(first.tick, tick_run("2025-11-02T05:30:00Z", 0));
    assert_eq!(first.next_schedule_time, Some(at("2025-11-03T06:30:00Z")));
    let repeat = fall.after(&first).now("2025-11-02T06:30:00Z").decide();
    assert_eq!((repeat.tick, repeat.run), (None, None));
}

#[test]
fn a_run_now_value_too_long_for_the_status_is_recorded_by_a_token() {
    let long = "x".repeat(300);
    let case = task("0 * * * *")
        .last("2025-01-01T10:00:00Z")
        .now("2025-01-01T10:20:00Z")
        .run_now(&long, None);
    let decision = case.decide();
    let token = decision
        .run
        .as_ref()
        .and_then(|r| r.run_now.clone())
        .unwrap();
    assert!(token.len() <= 256, "{} bytes", token.len());
    assert!(token.starts_with(&long[..200]));
    assert_eq!(token, crate::schedule::decide::handled_token(&long));
    // Once recorded, the same request is handled; a different long one is new.
    let mut handled = case.after(&decision);
    handled.active = None;
    assert_eq!(
        handled.clone().now("2025-01-01T10:21:00Z").decide().run,
        None
    );
    let other = format!("{long}y");
    let again = handled
        .run_now(&other, Some(&token))
        .now("2025-01-01T10:22:00Z")
        .decide();
    assert!(again.run.is_some(), "a different request runs");
    // Short values are kept as they are.
    assert_eq!(crate::schedule::decide::handled_token("now"), "now");
}
