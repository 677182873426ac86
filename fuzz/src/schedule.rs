//! `spec.schedule` in `spec.timeZone`: `Schedule::parse`, then the ticks around an instant.
//!
//! Fields: expression, time zone (absent: UTC), the instant in Unix seconds, a spread key.
//!
//! Properties: parsing is deterministic and re-parsing the stored expression gives the same
//! schedule; the next tick is after the instant, the latest at or before it; a tick is its own
//! latest tick; ticks come out strictly increasing.

use k8s_openapi::jiff::Timestamp;
use mcall::schedule::Schedule;

use crate::Fields;

/// Ten years past and ahead of 2026: where the controller's instants are.
const NEAR: std::ops::RangeInclusive<i64> = 1_451_606_400..=2_082_758_400;

pub(crate) fn run(data: &[u8]) {
    let f = Fields::new(data);
    let (expr, tz) = (f.text(0), f.opt(1));
    let Ok(schedule) = Schedule::parse(expr, tz) else {
        assert_eq!(
            Schedule::parse(expr, tz).err().map(|e| e.to_string()),
            Schedule::parse(expr, tz).err().map(|e| e.to_string()),
            "a rejection is deterministic"
        );
        return;
    };
    assert_eq!(
        Schedule::parse(schedule.expression(), tz).as_ref(),
        Ok(&schedule),
        "the stored expression parses to the same schedule"
    );
    let schedule = match f.opt(3) {
        Some(key) => schedule.spread_by(key),
        None => schedule,
    };
    let seconds = f.text(2).trim().parse::<i64>().unwrap_or(1_764_547_200);
    let seconds = seconds.clamp(*NEAR.start(), *NEAR.end());
    let t = Timestamp::from_second(seconds).expect("NEAR is in range");
    check_ticks(&schedule, t);
}

fn check_ticks(schedule: &Schedule, t: Timestamp) {
    if let Some(next) = schedule.next_after(t) {
        assert!(next > t, "{schedule}: next tick {next} not after {t}");
        assert_eq!(
            schedule.latest_at_or_before(next),
            Some(next),
            "{schedule}: a tick is its own latest tick"
        );
    }
    if let Some(latest) = schedule.latest_at_or_before(t) {
        assert!(latest <= t, "{schedule}: latest tick {latest} after {t}");
    }
    let day_later = t
        .checked_add(k8s_openapi::jiff::SignedDuration::from_hours(24))
        .expect("NEAR is far from the end of time");
    let ticks = schedule.ticks_between(t, day_later, 16);
    assert!(
        ticks.windows(2).all(|w| w[0] < w[1]),
        "{schedule}: ticks not increasing: {ticks:?}"
    );
    assert!(ticks.iter().all(|tick| *tick > t && *tick <= day_later));
}
