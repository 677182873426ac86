//! The one backoff every retry waits with: a task's own retries (`retryCount`), and the
//! operator's retries of failed reconciles, of run preparation and of result writes.
//!
//! Exponential with jitter (backon's): the n-th wait is `first × 2^(n-1)`, at most `max`, then
//! lengthened by up to as much again at random, so a thousand tasks that failed together (an API
//! server restart, a dependency down) do not retry in lockstep.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Beyond this many attempts the delay no longer grows (2^40 × any first delay exceeds any max).
const GROWTH_LIMIT: u32 = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The nominal first wait.
    pub first: Duration,
    /// The longest nominal wait; jitter may lengthen it up to twice this.
    pub max: Duration,
}

impl Backoff {
    /// The waits, one per retry, without end.
    pub fn delays(self) -> impl Iterator<Item = Duration> + Send + 'static {
        ExponentialBuilder::default()
            .with_min_delay(self.first)
            .with_max_delay(self.max.max(self.first))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// The wait before retry number `attempt` (1-based), for callers that count failures rather
    /// than iterate.
    pub fn delay(self, attempt: u32) -> Duration {
        let index = attempt.saturating_sub(1).min(GROWTH_LIMIT) as usize;
        self.delays().nth(index).unwrap_or(self.max)
    }

    /// The wait before `attempt` without jitter: what the docs promise as the lower bound.
    pub fn nominal(self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(GROWTH_LIMIT));
        self.first
            .saturating_mul(factor)
            .min(self.max.max(self.first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECONCILE: Backoff = Backoff {
        first: Duration::from_secs(5),
        max: Duration::from_secs(300),
    };

    #[test]
    fn waits_double_up_to_the_max_and_jitter_only_lengthens_them_up_to_twice() {
        let nominal: Vec<u64> = (1..=9).map(|n| RECONCILE.nominal(n).as_secs()).collect();
        assert_eq!(nominal, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        for attempt in [1, 2, 5, 7, 9, 100, u32::MAX] {
            for _ in 0..50 {
                let wait = RECONCILE.delay(attempt);
                let floor = RECONCILE.nominal(attempt);
                assert!(
                    wait >= floor && wait < floor * 2,
                    "attempt {attempt}: {wait:?} outside [{floor:?}, 2×)"
                );
            }
        }
    }

    #[test]
    fn the_iterator_follows_the_same_waits() {
        let backoff = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(250),
        };
        for (i, wait) in backoff.delays().take(6).enumerate() {
            let floor = backoff.nominal(i as u32 + 1);
            assert!(wait >= floor && wait < floor * 2, "#{i}: {wait:?}");
        }
    }

    #[test]
    fn jitter_spreads_waits() {
        let waits: std::collections::HashSet<Duration> =
            (0..20).map(|_| RECONCILE.delay(3)).collect();
        assert!(waits.len() > 1, "twenty waits all equal: no jitter");
    }
}
