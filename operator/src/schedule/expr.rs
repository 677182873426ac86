//! `spec.schedule` and `spec.timeZone`: parsing into a [`Schedule`] and computing its ticks.
//!
//! Cron fields are parsed by the `cron` crate. This module only rewrites the standard 5-field
//! syntax into the crate's 6-field one (a leading `0` seconds field), maps the macros, translates
//! the day-of-week numbering and applies the standard day-of-month/day-of-week rule (see the
//! parent module's documentation). `@every` is not cron syntax and is parsed here.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The shortest `@every` interval. Every tick writes the task's status before the run starts, so
/// sub-second intervals would mostly load the API server.
pub const MIN_EVERY: SignedDuration = SignedDuration::from_secs(1);

/// Bound on the steps one tick computation takes (only reached by a bug; a DST fold holds at most
/// a few hundred matching local times).
const MAX_STEPS: usize = 100_000;

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// A `spec.schedule` or `spec.timeZone` the operator cannot use. The controller reports it as
/// phase Failed with reason [`ScheduleError::REASON`]; the message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "spec.schedule: the schedule is empty; use five cron fields (minute hour day-of-month \
         month day-of-week), a macro such as @daily, or @every <duration>"
    )]
    Empty,

    #[error(
        "spec.schedule: \"{expr}\" has {found} fields; use exactly five (minute hour \
         day-of-month month day-of-week), a macro such as @daily, or @every <duration>"
    )]
    FieldCount { expr: String, found: usize },

    #[error(
        "spec.schedule: unknown macro \"{name}\"; use @yearly, @annually, @monthly, @weekly, \
         @daily, @midnight, @hourly or @every <duration>"
    )]
    UnknownMacro { name: String },

    #[error("spec.schedule: \"{expr}\": {reason}")]
    Every { expr: String, reason: String },

    #[error("spec.schedule: invalid {field} field \"{value}\" in \"{expr}\": {reason}")]
    Field {
        expr: String,
        field: &'static str,
        value: String,
        reason: String,
    },

    #[error(
        "spec.timeZone: unknown time zone \"{name}\"; use an IANA name such as \"Europe/Berlin\" \
         or \"UTC\" (names are case-sensitive)"
    )]
    UnknownTimeZone { name: String },
}

impl ScheduleError {
    /// The condition reason the controller reports.
    pub const REASON: mcall_generated::Reason = mcall_generated::Reason::InvalidSchedule;

    /// The spec field at fault, as a path.
    pub fn field_path(&self) -> &'static str {
        match self {
            ScheduleError::UnknownTimeZone { .. } => "spec.timeZone",
            _ => "spec.schedule",
        }
    }
}

/// A parsed `spec.schedule` in its time zone: the set of instants ("ticks") at which a run is due.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    source: String,
    tz: Tz,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    /// Local wall-clock times in `tz`. One crate schedule, or two when both day fields are
    /// restricted: a day matches when either matches (the standard rule), which the crate, which
    /// requires both, cannot express in one schedule.
    Cron(Vec<cron::Schedule>),
    /// `offset + k × period` since the Unix epoch, in nanoseconds, with `0 ≤ offset < period`.
    Every { period: i128, offset: i128 },
}

impl Schedule {
    /// Parses `spec.schedule` (five cron fields, a macro, or `@every <duration>`) in `time_zone`
    /// (an IANA name; UTC when `None`).
    pub fn parse(expr: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = parse_time_zone(time_zone)?;
        let source = expr.trim();
        let kind = if let Some(spec) = source.strip_prefix("@every") {
            if !spec.is_empty() && !spec.starts_with(char::is_whitespace) {
                return Err(ScheduleError::UnknownMacro {
                    name: source.to_owned(),
                });
            }
            Kind::Every {
                period: parse_every(source, spec.trim())?,
                offset: 0,
            }
        } else if source.starts_with('@') {
            let five = expand_macro(source)?;
            Kind::Cron(parse_cron(source, five)?)
        } else {
            Kind::Cron(parse_cron(source, source)?)
        };
        Ok(Schedule {
            source: source.to_owned(),
            tz,
            kind,
        })
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.source
    }

    /// The IANA name of the schedule's time zone (`UTC` by default).
    pub fn time_zone(&self) -> &'static str {
        self.tz.name()
    }

    /// The period of an `@every` schedule.
    pub fn interval(&self) -> Option<SignedDuration> {
        match self.kind {
            Kind::Every { period, .. } => Some(SignedDuration::from_nanos_i128(period)),
            Kind::Cron(_) => None,
        }
    }

    /// Shifts an `@every` schedule's ticks by an offset derived from `key` (a task's UID): tasks
    /// with the same interval then fire spread over the interval instead of all at the same
    /// instant, as Prometheus spreads scrapes. The offset is stable for a given key, whole
    /// microseconds (what status times record) and less than the period. Cron schedules keep
    /// their wall-clock times.
    pub fn spread_by(mut self, key: &str) -> Schedule {
        if let Kind::Every { period, offset } = &mut self.kind {
            let micros = (*period / 1_000).max(1);
            *offset = i128::from(stable_hash(key)) % micros * 1_000;
        }
        self
    }

    /// The first tick strictly after `t`; `None` when there is none (a cron expression that never
    /// matches, such as `0 0 30 2 *`, or one past the year 2100, where the `cron` crate stops).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every { period, offset } => {
                let k = (t.as_nanosecond() - offset).div_euclid(*period) + 1;
                Timestamp::from_nanosecond(k.checked_mul(*period)? + offset).ok()
            }
            Kind::Cron(alternatives) => {
                let t = to_chrono(t)?;
                alternatives
                    .iter()
                    .filter_map(|s| cron_next_after(s, self.tz, t))
                    .min()
                    .and_then(from_chrono)
            }
        }
    }

    /// The last tick at or before `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every { period, offset } => {
                let k = (t.as_nanosecond() - offset).div_euclid(*period);
                Timestamp::from_nanosecond(k.checked_mul(*period)? + offset).ok()
            }
            Kind::Cron(alternatives) => {
                let t = to_chrono(t)?;
                alternatives
                    .iter()
                    .filter_map(|s| cron_latest_at_or_before(s, self.tz, t))
                    .max()
                    .and_then(from_chrono)
            }
        }
    }

    /// The ticks in `(after, up_to]`, oldest first, at most `limit` of them (the oldest ones).
    pub fn ticks_between(
        &self,
        after: Timestamp,
        up_to: Timestamp,
        limit: usize,
    ) -> Vec<Timestamp> {
        let mut ticks = Vec::new();
        let mut cursor = after;
        while ticks.len() < limit {
            match self.next_after(cursor) {
                Some(tick) if tick <= up_to => {
                    ticks.push(tick);
                    cursor = tick;
                }
                _ => break,
            }
        }
        ticks
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.source, self.tz.name())
    }
}

// === Ticks of a cron expression ===
//
// The crate walks local wall-clock times. Its iterator yields a local time that does not exist
// (spring-forward gap) not at all, and one that occurs twice (fall-back fold) twice, and it can
// yield the first occurrence of a folded time even when asked for times after the second. The
// two functions below define a tick as the *first* instant of a matching local time and return
// only ticks strictly after (or at or before) the instant asked about.

fn cron_next_after(schedule: &cron::Schedule, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut cursor = t.with_timezone(&tz);
    for _ in 0..MAX_STEPS {
        // `after` starts at the next whole local second after the cursor; for a folded time it
        // returns the earlier instant first, which is the tick.
        let candidate = schedule.after(&cursor).next()?;
        if candidate.with_timezone(&Utc) > t {
            return Some(candidate.with_timezone(&Utc));
        }
        // A folded local time whose first instant is already past: go on from it.
        cursor = candidate;
    }
    None
}

fn cron_latest_at_or_before(
    schedule: &cron::Schedule,
    tz: Tz,
    t: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    // The crate looks back from the second before a whole-second instant; asking from one
    // nanosecond later includes `t` itself.
    let from = (t + chrono::Duration::nanoseconds(1)).with_timezone(&tz);
    // The latest matching local time at or before t's local time, at its first instant. The first
    // instant of a local time grows with the local time, so this is at or before `t`.
    let mut latest = schedule
        .after(&from)
        .next_back()
        .and_then(|c| tz.from_local_datetime(&c.naive_local()).earliest())
        .map(|c| c.with_timezone(&Utc))
        .filter(|c| *c <= t);
    // In a fold, matching local times later than t's (first occurrence already past) can still
    // be ticks at or before t: walk forward. Outside a fold this is one step.
    let mut cursor = latest.unwrap_or(t - chrono::Duration::hours(3));
    for _ in 0..MAX_STEPS {
        match cron_next_after(schedule, tz, cursor) {
            Some(next) if next <= t => {
                latest = Some(next);
                cursor = next;
            }
            _ => break,
        }
    }
    latest
}

fn to_chrono(t: Timestamp) -> Option<DateTime<Utc>> {
    let nanos = t.as_nanosecond();
    let seconds = i64::try_from(nanos.div_euclid(NANOS_PER_SECOND)).ok()?;
    let subsec = u32::try_from(nanos.rem_euclid(NANOS_PER_SECOND)).ok()?;
    DateTime::from_timestamp(seconds, subsec)
}

fn from_chrono(t: DateTime<Utc>) -> Option<Timestamp> {
    let nanos =
        i128::from(t.timestamp()) * NANOS_PER_SECOND + i128::from(t.timestamp_subsec_nanos());
    Timestamp::from_nanosecond(nanos).ok()
}

// === Parsing ===

fn parse_time_zone(name: Option<&str>) -> Result<Tz, ScheduleError> {
    match name {
        None => Ok(Tz::UTC),
        Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::UnknownTimeZone {
            name: name.to_owned(),
        }),
    }
}

/// The 5-field equivalent of a macro (the definitions of Vixie cron and robfig/cron).
fn expand_macro(source: &str) -> Result<&'static str, ScheduleError> {
    Ok(match source {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        // Also a known macro followed by anything: macros take no arguments.
        _ => {
            return Err(ScheduleError::UnknownMacro {
                name: source.to_owned(),
            });
        }
    })
}

/// FNV-1a: stable across builds and platforms (unlike `std`'s hasher), which an offset that must
/// survive restarts and upgrades needs.
fn stable_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Parses `<n><unit>…` (units `ms`, `s`, `m`, `h`) into nanoseconds.
fn parse_every(source: &str, spec: &str) -> Result<i128, ScheduleError> {
    let fail = |reason: String| ScheduleError::Every {
        expr: source.to_owned(),
        reason,
    };
    if spec.is_empty() {
        return Err(fail(
            "@every needs a duration such as 30s, 1m30s or 2h".to_owned(),
        ));
    }
    let mut rest = spec;
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail(format!(
                "expected a number at \"{rest}\"; write the duration as <number><unit>… with \
                 units ms, s, m or h, e.g. 1m30s"
            )));
        }
        let number: i128 = rest[..digits]
            .parse()
            .map_err(|_| fail(format!("the number {} is too large", &rest[..digits])))?;
        rest = &rest[digits..];
        let (unit_nanos, unit_len) = if rest.starts_with("ms") {
            (1_000_000, 2)
        } else if rest.starts_with('s') {
            (NANOS_PER_SECOND, 1)
        } else if rest.starts_with('m') {
            (60 * NANOS_PER_SECOND, 1)
        } else if rest.starts_with('h') {
            (3600 * NANOS_PER_SECOND, 1)
        } else {
            return Err(fail(format!(
                "missing or unknown unit at \"{rest}\"; use ms, s, m or h"
            )));
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(unit_nanos)
            .and_then(|n| total.checked_add(n))
            .filter(|n| *n <= i128::from(i64::MAX))
            .ok_or_else(|| fail("the interval is too long".to_owned()))?;
    }
    if total == 0 {
        return Err(fail("the interval must be positive".to_owned()));
    }
    if total < MIN_EVERY.as_nanos() {
        return Err(fail(format!(
            "the interval must be at least {MIN_EVERY:#}; each run is recorded in the \
             task's status"
        )));
    }
    // Ticks are recorded in status with whole-second precision; a tick at a fraction of a
    // second would not compare equal to its own record and would come due again.
    if total % 1_000_000_000 != 0 {
        return Err(fail(
            "the interval must be a whole number of seconds (e.g. 1500ms is not)".to_owned(),
        ));
    }
    Ok(total)
}

const FIELD_NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];

/// Parses a standard 5-field expression (`source` is what the user wrote, for messages).
fn parse_cron(source: &str, five: &str) -> Result<Vec<cron::Schedule>, ScheduleError> {
    let fields: Vec<&str> = five.split_whitespace().collect();
    if fields.is_empty() {
        return Err(ScheduleError::Empty);
    }
    let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
        return Err(ScheduleError::FieldCount {
            expr: source.to_owned(),
            found: fields.len(),
        });
    };
    let day_of_week_crate =
        translate_day_of_week(day_of_week).map_err(|reason| ScheduleError::Field {
            expr: source.to_owned(),
            field: "day-of-week",
            value: day_of_week.to_owned(),
            reason,
        })?;
    // The standard rule (Vixie cron, robfig/cron and so Kubernetes CronJob): when both day
    // fields are restricted, a day matches if either does; otherwise both must.
    let expressions = if is_star(day_of_month) || is_star(day_of_week) {
        vec![format!(
            "0 {minute} {hour} {day_of_month} {month} {day_of_week_crate}"
        )]
    } else {
        vec![
            format!("0 {minute} {hour} {day_of_month} {month} *"),
            format!("0 {minute} {hour} * {month} {day_of_week_crate}"),
        ]
    };
    expressions
        .iter()
        .map(|e| cron::Schedule::from_str(e))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| locate_field_error(source, &fields, &err.to_string()))
}

/// Finds which field the `cron` crate rejected, by parsing each on its own.
fn locate_field_error(source: &str, fields: &[&str], whole: &str) -> ScheduleError {
    for (index, (name, value)) in FIELD_NAMES.iter().zip(fields).enumerate().take(4) {
        let mut probe = ["0", "*", "*", "*", "*", "*"];
        probe[index + 1] = value;
        if let Err(err) = cron::Schedule::from_str(&probe.join(" ")) {
            return ScheduleError::Field {
                expr: source.to_owned(),
                field: name,
                value: (*value).to_owned(),
                reason: crate_reason(&err.to_string(), FIELD_RANGES[index]),
            };
        }
    }
    ScheduleError::Field {
        expr: source.to_owned(),
        field: "cron",
        value: source.to_owned(),
        reason: crate_reason(whole, "the standard ranges"),
    }
}

const FIELD_RANGES: [&str; 4] = ["0-59", "0-23", "1-31", "1-12 or jan-dec"];

/// The crate's explanation (the last line of its message, after the expression and a caret)
/// with the field's range. Its out-of-range wording is off by one ("less than 59" for 0-59),
/// so that case gets ours.
fn crate_reason(message: &str, range: &str) -> String {
    let last = message.lines().last().unwrap_or_default().trim();
    let hint = format!("use {range}, ranges a-b, lists a,b and steps */n");
    if last.is_empty() || last.contains('^') || last.contains(" must be ") {
        format!("not a valid value; {hint}")
    } else {
        format!("{}; {hint}", last.trim_end_matches('.'))
    }
}

/// Whether a day field counts as unrestricted for the day-of-month/day-of-week rule: like
/// robfig/cron, any list item `*` or `?` without a step (or with step 1).
fn is_star(field: &str) -> bool {
    field.split(',').any(|item| {
        let (base, step) = item.split_once('/').unwrap_or((item, "1"));
        (base == "*" || base == "?") && step == "1"
    })
}

/// Rewrites a standard day-of-week field (0–7 with 0 and 7 = Sunday, or `sun`–`sat`) into the
/// `cron` crate's numbering (1–7 with 1 = Sunday) by expanding it into an explicit list, so that
/// ranges and steps keep their standard meaning. Returns the reason on error.
fn translate_day_of_week(field: &str) -> Result<String, String> {
    let mut days = [false; 7]; // Index 0 is Sunday.
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(parse_step(step)?)),
            None => (item, None),
        };
        let (first, last) = if base == "*" || base == "?" {
            (0, 6)
        } else if let Some((from, to)) = base.split_once('-') {
            let (from, to) = (parse_day(from)?, parse_day(to)?);
            if from > to {
                return Err(format!(
                    "the range {base} runs backwards; write it from the earlier day (0 = Sunday)"
                ));
            }
            (from, to)
        } else {
            let day = parse_day(base)?;
            // `n/step` means from n to the end of the week, as in robfig/cron.
            (day, if step.is_some() { day.max(6) } else { day })
        };
        for day in (first..=last).step_by(step.unwrap_or(1)) {
            days[day % 7] = true;
        }
    }
    if days.iter().all(|d| *d) {
        return Ok("*".to_owned());
    }
    let list: Vec<String> = (0..7)
        .filter(|d| days[*d])
        .map(|d| (d + 1).to_string())
        .collect();
    Ok(list.join(","))
}

fn parse_step(step: &str) -> Result<usize, String> {
    match step.parse::<usize>() {
        Ok(0) => Err("the step must be at least 1".to_owned()),
        Ok(step) => Ok(step),
        Err(_) => Err(format!("\"{step}\" is not a step; use */n or a-b/n")),
    }
}

fn parse_day(day: &str) -> Result<usize, String> {
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    if let Ok(number) = day.parse::<usize>() {
        return if number <= 7 {
            Ok(number)
        } else {
            Err(format!(
                "{number} is not a day of the week; use 0-7 (0 and 7 are Sunday) or sun-sat"
            ))
        };
    }
    NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(day))
        .ok_or_else(|| {
            format!("\"{day}\" is not a day of the week; use 0-7 (0 and 7 are Sunday) or sun-sat")
        })
}

#[cfg(test)]
mod tests;
