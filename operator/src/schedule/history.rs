//! The bounded run history in `status.history`.

use mcall_generated::{Phase, RunRecord};

/// Orders `history` newest first (by scheduled time, then start time) and keeps the newest
/// `successful_limit` Succeeded runs and the newest `failed_limit` others (Failed, and the
/// Skipped records of skipped or missed ticks). Negative limits count as 0.
pub fn trim_history(history: &mut Vec<RunRecord>, successful_limit: i64, failed_limit: i64) {
    let limit = |n: i64| usize::try_from(n).unwrap_or(0);
    let (successful_limit, failed_limit) = (limit(successful_limit), limit(failed_limit));
    // Stable, so records with equal times keep their relative order.
    history.sort_by(|a, b| {
        (&b.scheduled_time.0, b.start_time.as_ref().map(|t| t.0))
            .cmp(&(&a.scheduled_time.0, a.start_time.as_ref().map(|t| t.0)))
    });
    let (mut successful, mut failed) = (0, 0);
    history.retain(|record| {
        let (kept, limit) = if record.phase == Phase::Succeeded {
            (&mut successful, successful_limit)
        } else {
            (&mut failed, failed_limit)
        };
        *kept += 1;
        *kept <= limit
    });
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn record(second: i64, phase: Phase) -> RunRecord {
        let at = Time(Timestamp::from_second(second).unwrap());
        RunRecord {
            run_id: None,
            scheduled_time: MicroTime(at.0),
            start_time: Some(at.clone()),
            completion_time: Some(at),
            phase,
            error_code: None,
            output: None,
        }
    }

    fn summary(history: &[RunRecord]) -> Vec<(i64, Phase)> {
        history
            .iter()
            .map(|r| (r.scheduled_time.0.as_second(), r.phase))
            .collect()
    }

    #[test]
    fn keeps_the_newest_runs_per_outcome_newest_first() {
        use Phase::*;
        let mut history = vec![
            record(1, Succeeded),
            record(5, Failed),
            record(2, Failed),
            record(6, Succeeded),
            record(3, Succeeded),
            record(7, Skipped),
            record(4, Succeeded),
        ];
        trim_history(&mut history, 3, 1);
        assert_eq!(
            summary(&history),
            [(7, Skipped), (6, Succeeded), (4, Succeeded), (3, Succeeded)]
        );
    }

    #[test]
    fn skipped_and_failed_share_the_failed_limit() {
        use Phase::*;
        let mut history = vec![record(1, Failed), record(2, Skipped), record(3, Failed)];
        trim_history(&mut history, 3, 2);
        assert_eq!(summary(&history), [(3, Failed), (2, Skipped)]);
    }

    #[test]
    fn zero_and_negative_limits_keep_nothing_of_that_outcome() {
        use Phase::*;
        let mut history = vec![record(1, Succeeded), record(2, Failed)];
        trim_history(&mut history, 0, -1);
        assert!(history.is_empty());

        let mut history = vec![record(1, Succeeded), record(2, Failed)];
        trim_history(&mut history, 1, 0);
        assert_eq!(summary(&history), [(1, Succeeded)]);
    }

    #[test]
    fn equal_scheduled_times_are_ordered_by_start_time() {
        use Phase::*;
        let mut early = record(10, Succeeded);
        early.start_time = Some(Time(Timestamp::from_second(11).unwrap()));
        let mut late = record(10, Failed);
        late.start_time = Some(Time(Timestamp::from_second(12).unwrap()));
        let mut history = vec![early, late];
        trim_history(&mut history, 5, 5);
        assert_eq!(summary(&history), [(10, Failed), (10, Succeeded)]);
    }

    #[test]
    fn within_the_limits_only_the_order_changes() {
        use Phase::*;
        let mut history = vec![record(1, Succeeded), record(2, Succeeded)];
        trim_history(&mut history, 3, 1);
        assert_eq!(summary(&history), [(2, Succeeded), (1, Succeeded)]);
        let mut empty = Vec::new();
        trim_history(&mut empty, 3, 1);
        assert!(empty.is_empty());
    }
}
