//! Leadership and liveness on one Lease (`mcall-operator` in the operator's namespace).
//!
//! **Leadership.** Every replica contends for the Lease; the holder leads: it watches, reconciles
//! and executes, the others wait, ready and idle. Every write to the Lease is conditional on the
//! version last read or written (a PUT with `resourceVersion`), so two replicas can never both
//! believe they took it. A follower takes the Lease once it is released or has expired
//! (`renewTime + leaseDurationSeconds`), looking again every retry period and exactly at the expiry.
//! The leader renews every retry period; when it has not renewed for the renew deadline (shorter
//! than the lease duration) it stops: [`Leading`] turns false, which refuses its API writes and
//! the start of runs, and the runtime cancels its runs, all before another replica can take the
//! Lease. A leader that lost the Lease (another replica holds it: after a pause past its lease,
//! say) never writes again; the process exits and restarts as a follower.
//!
//! **Liveness, for scheduled ticks.** A scheduled task's next tick is claimed when the previous
//! run's result is written (`status.claimedTick`), so a tick costs one status write. Whoever finds
//! the claim unstarted runs it, which needs to know which claims a process that is gone may have
//! started. The rule: a process starts a claimed run only once a renewal of its Lease sent no
//! earlier than [`VOUCH_AHEAD`] before the tick has landed (`renewTime + VOUCH_AHEAD` at or after
//! it; when none has, one is asked for at the tick, and one renewal serves every tick due by
//! then). So a new leader knows that a claim for a tick after the previous holder's last
//! `renewTime + VOUCH_AHEAD` was never started and runs it, and records one at or before it as
//! interrupted (it may have run): only a holder that died within those 100 ms before a claimed tick
//! leaves a tick that never ran recorded so. A holder that
//! stops gracefully releases the Lease with the time it stopped; one that crashed is waited out
//! (until `renewTime + leaseDurationSeconds`) before anything runs.

mod elect;
mod keep;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;

use crate::config::LeaseConfig;

pub use elect::acquire;
pub use keep::{Ending, Leader};

/// How this replica takes part.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// Unique to this process.
    pub identity: String,
    /// `leaseDurationSeconds`: how long a renewal vouches for the holder.
    pub duration: Duration,
    /// A leader that has not renewed for this long stops leading; shorter than `duration`, so it
    /// has stopped before another replica may take the Lease.
    pub renew_deadline: Duration,
    /// How often the leader renews and a follower looks again.
    pub retry_period: Duration,
    /// Leader election: wait while another replica holds the Lease, and stop on losing it. Off,
    /// this process assumes it is the only operator: it waits out the previous holder once, then
    /// takes the Lease whoever renews it, and never steps down.
    pub elect: bool,
}

impl LeaseSettings {
    /// The operator's settings for this process. The defaults (`LeaseConfig::default`): a 2 s
    /// lease, renewed every 0.5 s, given up after 1.5 s without a renewal: a crashed leader is
    /// replaced within about 2.5 s, and a leader cut off stops within 1.5 s, half a second before
    /// anyone may take over.
    pub fn new(config: &LeaseConfig, namespace: &str, identity: String) -> Self {
        LeaseSettings {
            namespace: namespace.to_owned(),
            name: config.name.clone(),
            identity,
            duration: config.duration,
            renew_deadline: config.renew_deadline,
            retry_period: config.retry_period,
            elect: config.leader_election,
        }
    }

    /// Why these settings cannot work, if so.
    pub fn problem(&self) -> Option<String> {
        if self.duration.as_secs() == 0 || self.duration.subsec_nanos() != 0 {
            return Some("the lease duration must be a whole number of seconds, at least 1".into());
        }
        if self.renew_deadline >= self.duration {
            return Some(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?}): a leader must stop before another may take over",
                self.renew_deadline, self.duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period * 2 > self.renew_deadline {
            return Some(format!(
                "the retry period ({:?}) must be positive and at most half the renew deadline ({:?}), so a leader gets two tries to renew",
                self.retry_period, self.renew_deadline
            ));
        }
        None
    }
}

/// Whether this process may act as the leader right now: cheap to clone and to ask. Asked before
/// every API write (the client's fence) and before a run starts.
#[derive(Clone, Debug)]
pub struct Leading {
    inner: Arc<LeadingState>,
}

#[derive(Debug)]
struct LeadingState {
    origin: Instant,
    /// When the last renewal that succeeded was sent, in ms since `origin` plus one (0: not
    /// leading; `u64::MAX`: leading for good, without election).
    renewed: AtomicU64,
    deadline: Duration,
}

impl Leading {
    pub fn new(renew_deadline: Duration) -> Leading {
        Leading {
            inner: Arc::new(LeadingState {
                origin: Instant::now(),
                renewed: AtomicU64::new(0),
                deadline: renew_deadline,
            }),
        }
    }

    /// Leading for good: the operator runs without leader election.
    pub fn always() -> Leading {
        let leading = Leading::new(Duration::ZERO);
        leading.inner.renewed.store(u64::MAX, Ordering::SeqCst);
        leading
    }

    pub fn now(&self) -> bool {
        match self.inner.renewed.load(Ordering::SeqCst) {
            0 => false,
            u64::MAX => true,
            renewed => {
                let since = Duration::from_millis(renewed - 1);
                self.inner.origin.elapsed() < since + self.inner.deadline
            }
        }
    }

    /// When leading ends unless renewed before (`None`: not leading, or leading for good).
    fn ends_at(&self) -> Option<tokio::time::Instant> {
        match self.inner.renewed.load(Ordering::SeqCst) {
            0 | u64::MAX => None,
            renewed => {
                let at =
                    self.inner.origin + Duration::from_millis(renewed - 1) + self.inner.deadline;
                Some(tokio::time::Instant::from_std(at))
            }
        }
    }

    /// A renewal sent at `sent` succeeded.
    fn renewed(&self, sent: Instant) {
        let ms = sent
            .saturating_duration_since(self.inner.origin)
            .as_millis();
        let value = u64::try_from(ms).unwrap_or(u64::MAX - 2) + 1;
        // Never backwards, never over "for good".
        let _ = self
            .inner
            .renewed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |old| {
                (old != u64::MAX && old < value).then_some(value)
            });
    }

    /// Not leading any more (lost, released, or stopping).
    fn revoke(&self) {
        self.inner.renewed.store(0, Ordering::SeqCst);
    }
}

/// How far past its `renewTime` a renewal vouches for starting claimed ticks. Under many ticks
/// (a renewal every few tens of ms) most find one recent enough and start at once; a lone tick
/// asks for a renewal and waits one round trip. A crash loses a claimed tick only if it falls
/// within this much after the holder's last renewal.
pub const VOUCH_AHEAD: Duration = Duration::from_millis(100);

/// What a reconcile needs to know about liveness.
#[derive(Clone, Debug)]
pub struct Liveness {
    /// Claimed ticks at or before this may have been started by the previous holder.
    pub previous_until: Timestamp,
    /// The `renewTime` of this process's last renewal that landed.
    renewed: watch::Receiver<Timestamp>,
    /// Asks the keeper for a renewal now.
    wanted: Arc<tokio::sync::Notify>,
}

impl Liveness {
    /// Waits until a renewal of this process's Lease sent no earlier than [`VOUCH_AHEAD`] before
    /// `tick` (which has come) has landed, asking for one. False when the Lease keeper stopped (the operator is stopping,
    /// or lost the Lease).
    pub async fn vouch_for(&self, tick: Timestamp) -> bool {
        let covers = |renewed: &Timestamp| {
            renewed
                .saturating_add(VOUCH_AHEAD)
                .is_ok_and(|until| until >= tick)
        };
        let mut renewed = self.renewed.clone();
        if !covers(&renewed.borrow()) {
            self.wanted.notify_one();
        }
        renewed.wait_for(covers).await.is_ok()
    }
}

#[cfg(test)]
mod tests;
