//! Scheduled tasks: when a McallTask runs. Pure: no I/O, no Kubernetes client, no clock (the
//! caller passes `now`).
//!
//! - [`Schedule`] parses `spec.schedule` in `spec.timeZone` and computes its ticks.
//! - [`decide`] turns (schedule, recorded status, active run, run-now annotation, now) into what
//!   to do and when to look again.
//! - [`trim_history`] bounds `status.history`.
//!
//! # Expressions
//!
//! - Five cron fields, `minute hour day-of-month month day-of-week`, parsed by the `cron` crate.
//!   Day of week is standard: `0`–`7` with `0` and `7` = Sunday, or `sun`–`sat`; ranges, lists
//!   and steps keep their standard meaning (`1-5` is Monday to Friday). When both day fields are
//!   restricted (neither is `*` or `?`), a day matches if *either* matches, as in Vixie cron and
//!   robfig/cron: `0 0 13 * 5` fires on every 13th and every Friday.
//! - Macros: `@yearly` = `@annually` = `0 0 1 1 *`, `@monthly` = `0 0 1 * *`, `@weekly` =
//!   `0 0 * * 0`, `@daily` = `@midnight` = `0 0 * * *`, `@hourly` = `0 * * * *`.
//! - `@every <duration>`: a sequence of `<n>ms`, `<n>s`, `<n>m`, `<n>h` (e.g. `@every 1m30s`),
//!   at least [`MIN_EVERY`] (1s): each run is recorded in status first, so shorter intervals
//!   would mostly load the API server. `@every 0s` and `@every 500ms` are refused. Ticks are
//!   `offset + k × interval` since the Unix epoch, where the controller derives the offset
//!   (`0 ≤ offset < interval`, whole microseconds) from the task's UID
//!   ([`Schedule::spread_by`]): a thousand checks on `@every 10s` fire spread over the ten
//!   seconds rather than all at once (Prometheus spreads scrape times the same way), and the
//!   ticks do not move when the operator restarts or the task is edited. The time zone does not
//!   affect them (it is still validated).
//!
//! # Time zones and daylight saving time
//!
//! Cron fields are local wall-clock times in `spec.timeZone` (UTC by default). A tick is the
//! first instant at which the local clock shows a matching time:
//!
//! - **Spring forward**: a local time that does not exist that day does not fire at all:
//!   `30 2 * * *` in Europe/Berlin does not run on the last Sunday of March. This is what
//!   Kubernetes CronJob does (robfig/cron documents that jobs scheduled in a leap-ahead gap are
//!   not run); there is no catch-up at 03:00.
//! - **Fall back**: a local time that occurs twice fires once, at its first occurrence:
//!   `30 2 * * *` in Europe/Berlin runs at 02:30 CEST on the last Sunday of October, not again at
//!   02:30 CET. Here we differ from CronJob, where robfig/cron fires twice. For an hourly
//!   schedule the repeated hour is therefore silent: `30 * * * *` runs at 02:30 CEST, then at
//!   03:30 CET.
//!
//! # Exactly once per tick
//!
//! The tick is the run's identity. [`decide`] only considers ticks after
//! `status.lastScheduleTime`, and the controller writes the tick there before it acts, whatever
//! it does with it (run, skip, miss), so a restart or a leader change neither repeats nor drops
//! it.

mod claimed;
mod decide;
mod expr;
mod history;

pub use claimed::{ClaimedTick, ClaimedVerdict, judge_claimed};
pub use decide::{
    ActiveRunAction, DueTick, MISSED_COUNT_LIMIT, RUN_NOW_ANNOTATION, Run, RunNowRequest,
    ScheduleDecision, ScheduleInput, TickVerdict, decide,
};
pub use expr::{MIN_EVERY, Schedule, ScheduleError};
pub use history::trim_history;
