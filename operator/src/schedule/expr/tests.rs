use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;

fn at(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("bad timestamp {s}: {e}"))
}

fn parse(expr: &str) -> Schedule {
    Schedule::parse(expr, None).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

fn parse_in(expr: &str, tz: &str) -> Schedule {
    Schedule::parse(expr, Some(tz)).unwrap_or_else(|e| panic!("{expr} in {tz}: {e}"))
}

fn ticks(schedule: &Schedule, after: &str, up_to: &str) -> Vec<String> {
    schedule
        .ticks_between(at(after), at(up_to), 1000)
        .iter()
        .map(|t| t.to_string())
        .collect()
}

/// Day of week of a UTC instant, 0 = Sunday (1970-01-01 was a Thursday).
fn weekday(t: Timestamp) -> i64 {
    (t.as_second().div_euclid(86_400) + 4).rem_euclid(7)
}

/// The days of the week (0 = Sunday) on which `0 9 * * <dow>` fires in the week from Sunday
/// 2025-01-05, in firing order.
fn firing_days(day_of_week: &str) -> Vec<i64> {
    let schedule = parse(&format!("0 9 * * {day_of_week}"));
    let ticks = schedule.ticks_between(at("2025-01-05T00:00:00Z"), at("2025-01-11T23:59:59Z"), 10);
    assert!(
        ticks.iter().all(|t| t.as_second() % 86_400 == 9 * 3600),
        "{day_of_week}: {ticks:?}"
    );
    ticks.into_iter().map(weekday).collect()
}

// === Expressions and macros ===

#[test]
fn five_fields_are_minute_hour_day_month_weekday() {
    let s = parse("15 10 * * *");
    assert_eq!(
        s.next_after(at("2025-01-01T00:00:00Z")),
        Some(at("2025-01-01T10:15:00Z"))
    );
    let s = parse("*/20 * * * *");
    assert_eq!(
        ticks(&s, "2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z"),
        [
            "2025-01-01T00:20:00Z",
            "2025-01-01T00:40:00Z",
            "2025-01-01T01:00:00Z"
        ]
    );
    let s = parse(" 0 0 1 jan,JUL * ");
    assert_eq!(s.expression(), "0 0 1 jan,JUL *");
    assert_eq!(
        ticks(&s, "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ["2025-07-01T00:00:00Z", "2026-01-01T00:00:00Z"]
    );
}

#[test]
fn macros_mean_their_five_field_expansions() {
    let from = at("2025-06-11T10:30:00Z"); // A Wednesday.
    let cases = [
        ("@yearly", "2026-01-01T00:00:00Z"),
        ("@annually", "2026-01-01T00:00:00Z"),
        ("@monthly", "2025-07-01T00:00:00Z"),
        ("@weekly", "2025-06-15T00:00:00Z"), // Sunday.
        ("@daily", "2025-06-12T00:00:00Z"),
        ("@midnight", "2025-06-12T00:00:00Z"),
        ("@hourly", "2025-06-11T11:00:00Z"),
    ];
    for (expr, next) in cases {
        assert_eq!(parse(expr).next_after(from), Some(at(next)), "{expr}");
    }
    assert_eq!(weekday(at("2025-06-15T00:00:00Z")), 0);
}

#[test]
fn macros_follow_the_time_zone() {
    let s = parse_in("@daily", "America/New_York");
    assert_eq!(s.time_zone(), "America/New_York");
    assert_eq!(
        s.next_after(at("2025-06-11T12:00:00Z")),
        Some(at("2025-06-12T04:00:00Z"))
    );
    assert_eq!(parse("@daily").time_zone(), "UTC");
}

#[test]
fn next_after_is_strict_and_latest_at_or_before_is_inclusive() {
    let s = parse("0 * * * *");
    assert_eq!(
        s.next_after(at("2025-01-01T10:00:00Z")),
        Some(at("2025-01-01T11:00:00Z"))
    );
    assert_eq!(
        s.next_after(at("2025-01-01T09:59:59.999Z")),
        Some(at("2025-01-01T10:00:00Z"))
    );
    assert_eq!(
        s.next_after(at("2025-01-01T10:00:00.5Z")),
        Some(at("2025-01-01T11:00:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(at("2025-01-01T10:00:00Z")),
        Some(at("2025-01-01T10:00:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(at("2025-01-01T10:59:59.999Z")),
        Some(at("2025-01-01T10:00:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(at("2025-01-01T09:59:59.999999999Z")),
        Some(at("2025-01-01T09:00:00Z"))
    );
}

#[test]
fn ticks_between_is_half_open_ordered_and_limited() {
    let s = parse("*/15 * * * *");
    assert_eq!(
        ticks(&s, "2025-01-01T10:00:00Z", "2025-01-01T10:45:00Z"),
        [
            "2025-01-01T10:15:00Z",
            "2025-01-01T10:30:00Z",
            "2025-01-01T10:45:00Z"
        ]
    );
    let first_two = s.ticks_between(at("2025-01-01T10:00:00Z"), at("2025-01-02T00:00:00Z"), 2);
    assert_eq!(
        first_two,
        [at("2025-01-01T10:15:00Z"), at("2025-01-01T10:30:00Z")]
    );
    assert!(
        s.ticks_between(at("2025-01-01T10:00:00Z"), at("2025-01-01T10:14:59Z"), 5)
            .is_empty()
    );
    assert!(
        s.ticks_between(at("2025-01-01T10:00:00Z"), at("2025-01-01T11:00:00Z"), 0)
            .is_empty()
    );
}

#[test]
fn a_schedule_that_never_fires_has_no_ticks() {
    let s = parse("0 0 30 2 *");
    assert_eq!(s.next_after(at("2025-01-01T00:00:00Z")), None);
    assert_eq!(s.latest_at_or_before(at("2025-01-01T00:00:00Z")), None);
}

// === Day of week ===

#[test]
fn day_of_week_uses_standard_numbering() {
    // 0 9 * * 1 fires on Mondays (the cron crate alone would read 1 as Sunday).
    let monday = parse("0 9 * * 1");
    let next = monday.next_after(at("2025-01-01T00:00:00Z")).unwrap(); // From a Wednesday.
    assert_eq!(next, at("2025-01-06T09:00:00Z"));
    assert_eq!(weekday(next), 1);

    assert_eq!(firing_days("0"), [0]);
    assert_eq!(firing_days("7"), [0]);
    assert_eq!(firing_days("6"), [6]);
    assert_eq!(firing_days("1-5"), [1, 2, 3, 4, 5]);
    assert_eq!(firing_days("5-7"), [0, 5, 6]);
    assert_eq!(firing_days("0-6"), [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(firing_days("*"), [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(firing_days("?"), [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(firing_days("*/2"), [0, 2, 4, 6]);
    assert_eq!(firing_days("1-5/2"), [1, 3, 5]);
    assert_eq!(firing_days("2/2"), [2, 4, 6]);
    assert_eq!(firing_days("0,3,7"), [0, 3]);
    assert_eq!(firing_days("1,5-6"), [1, 5, 6]);
}

#[test]
fn day_of_week_names_are_standard_and_case_insensitive() {
    assert_eq!(firing_days("MON-FRI"), [1, 2, 3, 4, 5]);
    assert_eq!(firing_days("sun,Sat"), [0, 6]);
    assert_eq!(firing_days("tue-thu/2"), [2, 4]);
    assert_eq!(parse("@weekly").next_after(at("2025-01-01T00:00:00Z")), {
        Some(at("2025-01-05T00:00:00Z"))
    });
}

#[test]
fn restricted_day_of_month_and_day_of_week_match_either() {
    // September 2025: the 13th is a Saturday; Fridays are the 5th, 12th, 19th and 26th.
    let s = parse("0 0 13 * 5");
    assert_eq!(
        ticks(&s, "2025-09-01T00:00:00Z", "2025-09-30T00:00:00Z"),
        [
            "2025-09-05T00:00:00Z",
            "2025-09-12T00:00:00Z",
            "2025-09-13T00:00:00Z",
            "2025-09-19T00:00:00Z",
            "2025-09-26T00:00:00Z"
        ]
    );
    // With either field unrestricted, both must match (here: only the day of month counts).
    let s = parse("0 0 13 * *");
    assert_eq!(
        ticks(&s, "2025-09-01T00:00:00Z", "2025-09-30T00:00:00Z"),
        ["2025-09-13T00:00:00Z"]
    );
    let s = parse("0 0 ? * fri");
    assert_eq!(
        ticks(&s, "2025-09-01T00:00:00Z", "2025-09-13T00:00:00Z"),
        ["2025-09-05T00:00:00Z", "2025-09-12T00:00:00Z"]
    );
    assert_eq!(
        parse("0 0 13 * 5").latest_at_or_before(at("2025-09-18T00:00:00Z")),
        Some(at("2025-09-13T00:00:00Z"))
    );
}

// === @every ===

#[test]
fn every_is_anchored_at_the_unix_epoch() {
    let s = parse("@every 2s");
    assert_eq!(s.interval(), Some(SignedDuration::from_secs(2)));
    assert_eq!(
        s.next_after(at("2025-01-01T10:00:01.5Z")),
        Some(at("2025-01-01T10:00:02Z"))
    );
    assert_eq!(
        s.next_after(at("2025-01-01T10:00:02Z")),
        Some(at("2025-01-01T10:00:04Z"))
    );
    assert_eq!(
        s.latest_at_or_before(at("2025-01-01T10:00:03.999Z")),
        Some(at("2025-01-01T10:00:02Z"))
    );
    assert_eq!(
        s.latest_at_or_before(at("2025-01-01T10:00:04Z")),
        Some(at("2025-01-01T10:00:04Z"))
    );
    assert_eq!(
        ticks(&s, "2025-01-01T10:00:00Z", "2025-01-01T10:00:07Z"),
        [
            "2025-01-01T10:00:02Z",
            "2025-01-01T10:00:04Z",
            "2025-01-01T10:00:06Z"
        ]
    );
    // An odd interval: multiples of 7s since 1970, whatever the starting point.
    let s = parse("@every 7s");
    let next = s.next_after(at("2025-01-01T00:00:00Z")).unwrap();
    assert_eq!(next.as_second() % 7, 0);
    assert!(next > at("2025-01-01T00:00:00Z") && next <= at("2025-01-01T00:00:07Z"));
}

#[test]
fn spread_every_ticks_are_offset_by_a_stable_key_derived_amount() {
    let s = parse("@every 10s").spread_by("0b7e4c1a-5f0e-4d43-9d1b-3c1e2f6a9b10");
    let first = s.next_after(at("2025-01-01T10:00:00Z")).unwrap();
    let offset = first.as_nanosecond().rem_euclid(10_000_000_000);
    assert_eq!(
        offset % 1_000,
        0,
        "whole microseconds, as status records them"
    );
    assert!(
        first > at("2025-01-01T10:00:00Z") && first <= at("2025-01-01T10:00:10Z"),
        "{first}"
    );
    // Every tick keeps the period and the offset; next and latest agree on the grid.
    let second = s.next_after(first).unwrap();
    assert_eq!(second.duration_since(first), SignedDuration::from_secs(10));
    assert_eq!(s.latest_at_or_before(second), Some(second));
    assert_eq!(
        s.latest_at_or_before(second - SignedDuration::from_nanos(1)),
        Some(first)
    );
    assert_eq!(
        s.ticks_between(first, first + SignedDuration::from_secs(35), 10),
        [
            second,
            second + SignedDuration::from_secs(10),
            second + SignedDuration::from_secs(20)
        ]
    );
    // The same key gives the same ticks (restarts do not move them).
    let again = parse("@every 10s").spread_by("0b7e4c1a-5f0e-4d43-9d1b-3c1e2f6a9b10");
    assert_eq!(again.next_after(at("2025-01-01T10:00:00Z")), Some(first));
}

#[test]
fn spread_every_ticks_of_many_tasks_cover_the_interval() {
    // 1,000 tasks on @every 10s: in no tenth of the interval should more than twice the
    // average (100) fire together.
    let mut buckets = [0usize; 10];
    for i in 0..1000 {
        let s = parse("@every 10s").spread_by(&format!("uid-{i:04}-of-a-task"));
        let tick = s.next_after(at("2025-01-01T00:00:00Z")).unwrap();
        let offset = tick.as_nanosecond().rem_euclid(10_000_000_000);
        buckets[(offset / 1_000_000_000) as usize] += 1;
    }
    assert!(buckets.iter().all(|&n| n > 50 && n < 200), "{buckets:?}");
}

#[test]
fn spread_leaves_cron_schedules_alone() {
    let s = parse("*/5 * * * *").spread_by("some-uid");
    assert_eq!(
        s.next_after(at("2025-01-01T10:01:00Z")),
        Some(at("2025-01-01T10:05:00Z"))
    );
}

#[test]
fn every_accepts_unit_sequences() {
    let cases = [
        ("@every 30s", 30_000),
        ("@every 1m30s", 90_000),
        ("@every 1h", 3_600_000),
        ("@every 2h15m", 8_100_000),
        ("@every 2000ms", 2_000),
        ("@every 1s1000ms", 2_000),
        ("@every   10m  ", 600_000),
    ];
    for (expr, millis) in cases {
        assert_eq!(
            parse(expr).interval(),
            Some(SignedDuration::from_millis(millis)),
            "{expr}"
        );
    }
    let s = parse("@every 1m30s");
    assert_eq!(
        s.next_after(at("1970-01-01T00:00:00Z")),
        Some(at("1970-01-01T00:01:30Z"))
    );
    let s = parse("@every 2000ms");
    assert_eq!(
        s.next_after(at("2025-01-01T00:00:00Z")),
        Some(at("2025-01-01T00:00:02Z"))
    );
}

#[test]
fn every_ignores_daylight_saving_time() {
    let s = parse_in("@every 1h", "Europe/Berlin");
    assert_eq!(s.time_zone(), "Europe/Berlin");
    assert_eq!(
        ticks(&s, "2025-10-26T00:00:00Z", "2025-10-26T03:00:00Z"),
        [
            "2025-10-26T01:00:00Z",
            "2025-10-26T02:00:00Z",
            "2025-10-26T03:00:00Z"
        ]
    );
}

// === Daylight saving time ===

#[test]
fn berlin_spring_forward_skips_the_missing_local_time() {
    // 2025-03-30: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    let s = parse_in("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        ticks(&s, "2025-03-28T12:00:00Z", "2025-03-31T12:00:00Z"),
        ["2025-03-29T01:30:00Z", "2025-03-31T00:30:00Z"]
    );
    // Times around the gap still fire.
    let s = parse_in("0 3 * * *", "Europe/Berlin");
    assert_eq!(
        s.next_after(at("2025-03-29T12:00:00Z")),
        Some(at("2025-03-30T01:00:00Z"))
    );
    let s = parse_in("30 1 * * *", "Europe/Berlin");
    assert_eq!(
        s.next_after(at("2025-03-29T12:00:00Z")),
        Some(at("2025-03-30T00:30:00Z"))
    );
    // Nothing at or before 03:30 CEST on the day belongs to the 30th.
    let s = parse_in("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        s.latest_at_or_before(at("2025-03-30T01:30:00Z")),
        Some(at("2025-03-29T01:30:00Z"))
    );
}

#[test]
fn berlin_fall_back_fires_a_repeated_local_time_once() {
    // 2025-10-26: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happens twice.
    let s = parse_in("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        ticks(&s, "2025-10-25T12:00:00Z", "2025-10-27T12:00:00Z"),
        ["2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z"]
    );
    // Asked from inside the second 02:xx hour, the next tick is the next day's.
    assert_eq!(
        s.next_after(at("2025-10-26T01:10:00Z")),
        Some(at("2025-10-27T01:30:00Z"))
    );
    assert_eq!(
        s.next_after(at("2025-10-26T00:30:00Z")),
        Some(at("2025-10-27T01:30:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(at("2025-10-26T01:45:00Z")),
        Some(at("2025-10-26T00:30:00Z"))
    );
}

#[test]
fn berlin_fall_back_hourly_and_every_minute() {
    // Hourly: 02:30 CEST, then 03:30 CET; 02:30 CET is the repeat of a time already fired.
    let s = parse_in("30 * * * *", "Europe/Berlin");
    assert_eq!(
        ticks(&s, "2025-10-25T22:00:00Z", "2025-10-26T03:00:00Z"),
        [
            "2025-10-25T22:30:00Z",
            "2025-10-25T23:30:00Z",
            "2025-10-26T00:30:00Z",
            "2025-10-26T02:30:00Z"
        ]
    );
    assert_eq!(
        s.latest_at_or_before(at("2025-10-26T02:00:00Z")),
        Some(at("2025-10-26T00:30:00Z"))
    );
    // Every minute: the repeated hour 02:00-02:59 CET is silent, 03:00 CET fires.
    let s = parse_in("* * * * *", "Europe/Berlin");
    assert_eq!(
        ticks(&s, "2025-10-26T00:58:00Z", "2025-10-26T02:02:00Z"),
        [
            "2025-10-26T00:59:00Z",
            "2025-10-26T02:00:00Z",
            "2025-10-26T02:01:00Z",
            "2025-10-26T02:02:00Z"
        ]
    );
    assert_eq!(
        s.latest_at_or_before(at("2025-10-26T01:30:00Z")),
        Some(at("2025-10-26T00:59:00Z"))
    );
    assert_eq!(
        s.next_after(at("2025-10-26T01:30:00Z")),
        Some(at("2025-10-26T02:00:00Z"))
    );
}

#[test]
fn new_york_spring_forward_skips_the_missing_local_time() {
    // 2025-03-09: 02:00 EST becomes 03:00 EDT.
    let s = parse_in("30 2 * * *", "America/New_York");
    assert_eq!(
        ticks(&s, "2025-03-08T00:00:00Z", "2025-03-10T12:00:00Z"),
        ["2025-03-08T07:30:00Z", "2025-03-10T06:30:00Z"]
    );
    let s = parse_in("0 * * * *", "America/New_York");
    assert_eq!(
        ticks(&s, "2025-03-09T05:30:00Z", "2025-03-09T08:00:00Z"),
        [
            "2025-03-09T06:00:00Z", // 01:00 EST
            "2025-03-09T07:00:00Z", // 03:00 EDT
            "2025-03-09T08:00:00Z", // 04:00 EDT
        ]
    );
}

#[test]
fn new_york_fall_back_fires_a_repeated_local_time_once() {
    // 2025-11-02: 02:00 EDT becomes 01:00 EST; 01:00-01:59 happens twice.
    let s = parse_in("30 1 * * *", "America/New_York");
    assert_eq!(
        ticks(&s, "2025-11-01T12:00:00Z", "2025-11-03T12:00:00Z"),
        ["2025-11-02T05:30:00Z", "2025-11-03T06:30:00Z"]
    );
    assert_eq!(
        s.next_after(at("2025-11-02T06:10:00Z")), // 01:10 EST, the second pass.
        Some(at("2025-11-03T06:30:00Z"))
    );
    let s = parse_in("0 * * * *", "America/New_York");
    assert_eq!(
        ticks(&s, "2025-11-02T04:30:00Z", "2025-11-02T08:00:00Z"),
        [
            "2025-11-02T05:00:00Z", // 01:00 EDT
            "2025-11-02T07:00:00Z", // 02:00 EST
            "2025-11-02T08:00:00Z", // 03:00 EST
        ]
    );
}

// === Errors ===

fn error(expr: &str) -> String {
    Schedule::parse(expr, None).expect_err(expr).to_string()
}

#[test]
fn invalid_every_intervals_are_refused() {
    let cases = [
        ("@every 0s", "must be positive"),
        ("@every 0h0m", "must be positive"),
        ("@every 500ms", "at least 1s"),
        ("@every 999ms", "at least 1s"),
        ("@every 1500ms", "whole number of seconds"),
        ("@every 1s500ms", "whole number of seconds"),
        ("@every", "needs a duration"),
        ("@every 5", "unit"),
        ("@every 5d", "unit"),
        ("@every 1.5h", "unit"),
        ("@every 1m 30s", "expected a number"),
        ("@every s", "expected a number"),
        ("@every -5s", "expected a number"),
        (
            "@every 99999999999999999999999999999999999999999h",
            "too large",
        ),
        ("@every 9999999999999h", "too long"),
    ];
    for (expr, reason) in cases {
        let message = error(expr);
        assert!(
            message.starts_with("spec.schedule: ") && message.contains(reason),
            "{expr}: {message}"
        );
    }
}

#[test]
fn invalid_cron_expressions_name_the_field() {
    let cases = [
        ("61 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 32 * *", "day-of-month"),
        ("* * 0 * *", "day-of-month"),
        ("* * * 13 *", "month"),
        ("* * * foo *", "month"),
        ("* * * * 8", "day-of-week"),
        ("* * * * 5-1", "day-of-week"),
        ("* * * * */0", "day-of-week"),
        ("* * * * funday", "day-of-week"),
        ("* * * * 1,,2", "day-of-week"),
        ("*/0 * * * *", "minute"),
        ("a * * * *", "minute"),
        ("5-1 * * * *", "minute"),
    ];
    for (expr, field) in cases {
        let err = Schedule::parse(expr, None).expect_err(expr);
        assert_eq!(err.field_path(), "spec.schedule");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("spec.schedule: invalid {field} field ")),
            "{expr}: {message}"
        );
    }
}

#[test]
fn wrong_shapes_and_unknown_macros_are_refused() {
    assert!(error("").contains("the schedule is empty"));
    assert!(error("   ").contains("the schedule is empty"));
    assert!(error("* * * *").contains("has 4 fields"));
    assert!(error("0 0 * * * *").contains("has 6 fields"));
    assert!(error("@fortnightly").contains("unknown macro \"@fortnightly\""));
    assert!(error("@everyday").contains("unknown macro \"@everyday\""));
    assert!(error("@daily 5").contains("unknown macro \"@daily 5\""));
    assert!(error("@DAILY").contains("unknown macro"));
    assert_eq!(
        error("* * * *"),
        "spec.schedule: \"* * * *\" has 4 fields; use exactly five (minute hour day-of-month \
         month day-of-week), a macro such as @daily, or @every <duration>"
    );
}

#[test]
fn unknown_time_zones_are_refused_with_the_field_name() {
    let err = Schedule::parse("0 * * * *", Some("Mars/Base")).unwrap_err();
    assert_eq!(err.field_path(), "spec.timeZone");
    assert!(
        err.to_string()
            .starts_with("spec.timeZone: unknown time zone \"Mars/Base\""),
        "{err}"
    );
    assert_eq!(ScheduleError::REASON.as_str(), "InvalidSchedule");
    // Names are case-sensitive, as in the IANA database; the zone is checked for @every too.
    assert!(Schedule::parse("@daily", Some("europe/berlin")).is_err());
    assert!(Schedule::parse("@every 5s", Some("Mars/Base")).is_err());
    assert!(Schedule::parse("@daily", Some("")).is_err());
    // When both are wrong, the zone is reported first.
    assert_eq!(
        Schedule::parse("bad", Some("Mars/Base"))
            .unwrap_err()
            .field_path(),
        "spec.timeZone"
    );
    for zone in [
        "UTC",
        "Etc/UTC",
        "Europe/Berlin",
        "America/New_York",
        "Asia/Kolkata",
    ] {
        assert!(Schedule::parse("@daily", Some(zone)).is_ok(), "{zone}");
    }
}
