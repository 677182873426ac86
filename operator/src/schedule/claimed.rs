//! What a reconcile does with a tick claimed ahead of time (`status.claimedTick`): the previous
//! run's result claimed it, so the tick costs no write of its own. Pure, like [`super::decide`].

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// What is known about a claimed tick that no run of this process is executing.
#[derive(Clone, Copy, Debug)]
pub struct ClaimedTick {
    /// `status.claimedTick`.
    pub tick: Timestamp,
    pub now: Timestamp,
    /// Claimed ticks at or before this may have been started by the previous operator process
    /// (see `controller::lease`).
    pub previous_process_until: Timestamp,
    /// This process already ran this tick (its result could not be written).
    pub ran_here: bool,
    /// The claim still holds: the spec is the one it was made under, not suspended, and no other
    /// run of the task is in progress.
    pub still_valid: bool,
    /// `spec.startingDeadlineSeconds`.
    pub starting_deadline_seconds: Option<i64>,
    /// How long before its tick a run is started (it then waits for the tick).
    pub lead: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimedVerdict {
    /// It may have run in a process that is gone (or ran here, unrecorded): record it as
    /// interrupted; never run it twice.
    Interrupted,
    /// Never started, and no longer wanted: drop the claim and decide without it.
    Release,
    /// Look again at this time (the tick minus the lead).
    WaitUntil(Timestamp),
    /// Start its run (it waits for the tick if that is still ahead).
    Run,
    /// Never started, but now later than `startingDeadlineSeconds`.
    Missed { late: SignedDuration },
}

pub fn judge_claimed(claim: &ClaimedTick) -> ClaimedVerdict {
    if claim.ran_here || claim.tick <= claim.previous_process_until {
        return ClaimedVerdict::Interrupted;
    }
    if !claim.still_valid {
        return ClaimedVerdict::Release;
    }
    let lead = SignedDuration::try_from(claim.lead).unwrap_or(SignedDuration::ZERO);
    if claim.tick.duration_since(claim.now) > lead {
        let at = claim.tick.checked_sub(lead).unwrap_or(claim.tick);
        return ClaimedVerdict::WaitUntil(at);
    }
    let late = claim.now.duration_since(claim.tick);
    match claim.starting_deadline_seconds {
        Some(deadline) if late.as_secs() > deadline.max(0) => ClaimedVerdict::Missed { late },
        _ => ClaimedVerdict::Run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    /// Tick at 100 s, now 95 s, previous process gone at 50 s.
    fn claim() -> ClaimedTick {
        ClaimedTick {
            tick: at(100),
            now: at(95),
            previous_process_until: at(50),
            ran_here: false,
            still_valid: true,
            starting_deadline_seconds: None,
            lead: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_future_claim_waits_until_just_before_its_tick() {
        assert_eq!(judge_claimed(&claim()), ClaimedVerdict::WaitUntil(at(99)));
    }

    #[test]
    fn within_the_lead_or_after_the_tick_it_runs() {
        let soon = ClaimedTick {
            now: at(99),
            ..claim()
        };
        assert_eq!(judge_claimed(&soon), ClaimedVerdict::Run);
        let late = ClaimedTick {
            now: at(130),
            ..claim()
        };
        assert_eq!(
            judge_claimed(&late),
            ClaimedVerdict::Run,
            "no deadline: late still runs"
        );
    }

    #[test]
    fn past_the_starting_deadline_it_is_missed() {
        let late = ClaimedTick {
            now: at(131),
            starting_deadline_seconds: Some(30),
            ..claim()
        };
        assert_eq!(
            judge_claimed(&late),
            ClaimedVerdict::Missed {
                late: SignedDuration::from_secs(31)
            }
        );
        let in_time = ClaimedTick {
            now: at(130),
            ..late
        };
        assert_eq!(judge_claimed(&in_time), ClaimedVerdict::Run);
    }

    #[test]
    fn a_tick_the_previous_process_may_have_started_is_interrupted_even_if_no_longer_wanted() {
        for still_valid in [true, false] {
            let maybe_started = ClaimedTick {
                previous_process_until: at(100),
                now: at(103),
                still_valid,
                ..claim()
            };
            assert_eq!(judge_claimed(&maybe_started), ClaimedVerdict::Interrupted);
        }
        let just_after = ClaimedTick {
            previous_process_until: at(99),
            now: at(103),
            ..claim()
        };
        assert_eq!(
            judge_claimed(&just_after),
            ClaimedVerdict::Run,
            "the previous process never vouched for the tick"
        );
    }

    #[test]
    fn a_tick_run_here_without_a_recorded_result_is_not_run_again() {
        let ran = ClaimedTick {
            ran_here: true,
            now: at(101),
            ..claim()
        };
        assert_eq!(judge_claimed(&ran), ClaimedVerdict::Interrupted);
    }

    #[test]
    fn a_claim_that_no_longer_holds_is_released() {
        let stale = ClaimedTick {
            still_valid: false,
            ..claim()
        };
        assert_eq!(judge_claimed(&stale), ClaimedVerdict::Release);
    }
}
