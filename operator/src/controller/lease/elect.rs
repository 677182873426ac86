//! Taking the Lease: at once when there is none or it is released or expired; otherwise, with
//! leader election, once its holder releases it or stops renewing it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::keep::Leader;
use super::{Leading, LeaseSettings, Liveness, VOUCH_AHEAD};

/// What the Lease says, as far as taking it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Holding {
    /// `None`: released (or never held).
    pub holder: Option<String>,
    pub renewed: Option<Timestamp>,
    pub duration: Duration,
}

impl Holding {
    pub fn of(lease: &Lease) -> Holding {
        let spec = lease.spec.as_ref();
        Holding {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            renewed: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .map_or(Duration::ZERO, |s| Duration::from_secs(s.max(0) as u64)),
        }
    }

    /// The last claimed tick the holder may have started: its last `renewTime` plus
    /// [`VOUCH_AHEAD`], or the time it released the Lease (it started nothing after it).
    pub fn vouched_until(&self) -> Timestamp {
        let renewed = self.renewed.unwrap_or(Timestamp::MIN);
        match self.holder {
            None => renewed,
            Some(_) => renewed.saturating_add(VOUCH_AHEAD).unwrap_or(renewed),
        }
    }
}

/// Whether to take the Lease now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Take it; claimed ticks at or before `previous_until` may have been started by the
    /// previous holder.
    Take { previous_until: Timestamp },
    /// Another replica holds it: look again after this long at the latest.
    WaitFor(Duration),
}

/// Pure: whether `me` takes the Lease described by `found`, which this follower has seen
/// unchanged (same holder, same `renewTime`) for `unchanged_for` on its own monotonic clock. A
/// held Lease expires once it has not changed for its `leaseDurationSeconds` as this follower
/// saw it, as client-go's elector judges it: the holder's wall clock (in `renewTime`) is never
/// compared with this one's, so skewed clocks cannot let two replicas lead. Without election
/// (`waited_out`: this process has waited one lease since it started) the holder is taken over
/// whoever renews.
pub(super) fn judge(
    found: Option<&Holding>,
    me: &str,
    unchanged_for: Duration,
    waited_out: bool,
) -> Verdict {
    let Some(found) = found else {
        return Verdict::Take {
            previous_until: Timestamp::MIN,
        };
    };
    let held_by_other = found.holder.as_deref().is_some_and(|h| h != me);
    if held_by_other && unchanged_for < found.duration && !waited_out {
        return Verdict::WaitFor(found.duration - unchanged_for);
    }
    Verdict::Take {
        previous_until: found.vouched_until(),
    }
}

/// What this follower saw of the Lease, and since when (its own monotonic clock).
struct Seen {
    holder: Option<String>,
    renewed: Option<Timestamp>,
    since: Instant,
}

/// Follows until this process holds the Lease, then returns its liveness and the Lease's keeper;
/// `None` when `stop` came first. API failures are retried every retry period.
pub async fn acquire(
    api: Api<Lease>,
    settings: LeaseSettings,
    leading: Leading,
    stop: CancellationToken,
) -> Option<(Liveness, Leader)> {
    let started = Instant::now();
    let mut seen: Option<Seen> = None;
    let mut announced = false;
    loop {
        let attempt = tokio::select! {
            biased;
            () = stop.cancelled() => return None,
            attempt = try_take(&api, &settings, &mut seen, started) => attempt,
        };
        let wait = match attempt {
            Ok(Attempt::Taken(taken)) => {
                return Some(taken.lead(api, settings, leading));
            }
            Ok(Attempt::HeldFor(left, holder)) => {
                if !announced {
                    tracing::info!(
                        lease = settings.name,
                        holder,
                        "another replica leads; following"
                    );
                    announced = true;
                }
                left.min(settings.retry_period)
            }
            // Someone else wrote in between: look again at once.
            Ok(Attempt::Raced) => Duration::ZERO,
            Err(e) => {
                tracing::warn!(lease = settings.name, error = %e, "reading or taking the Lease failed; retrying");
                settings.retry_period
            }
        };
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The Lease as this process took it.
struct Taken {
    lease: Lease,
    sent: Instant,
    renewed: Timestamp,
    previous_until: Timestamp,
}

impl Taken {
    fn lead(
        self,
        api: Api<Lease>,
        settings: LeaseSettings,
        leading: Leading,
    ) -> (Liveness, Leader) {
        leading.renewed(self.sent);
        let (vouch, renewed) = watch::channel(self.renewed);
        let wanted = Arc::new(tokio::sync::Notify::new());
        tracing::info!(
            lease = settings.name,
            identity = settings.identity,
            previous_until = %self.previous_until,
            "took the Lease; leading"
        );
        let liveness = Liveness {
            previous_until: self.previous_until,
            renewed,
            wanted: wanted.clone(),
        };
        let leader = Leader::new(api, settings, self.lease, vouch, wanted, leading);
        (liveness, leader)
    }
}

enum Attempt {
    Taken(Box<Taken>),
    /// Held by another replica for at most this long (and by whom).
    HeldFor(Duration, String),
    /// The conditional write lost to another writer.
    Raced,
}

async fn try_take(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    seen: &mut Option<Seen>,
    started: Instant,
) -> Result<Attempt, kube::Error> {
    let found = api.get_opt(&settings.name).await?;
    let holding = found.as_ref().map(Holding::of);
    let (holder, renewed) = holding
        .as_ref()
        .map_or((None, None), |h| (h.holder.clone(), h.renewed));
    let unchanged = seen
        .as_ref()
        .is_some_and(|s| s.holder == holder && s.renewed == renewed);
    if !unchanged {
        *seen = Some(Seen {
            holder,
            renewed,
            since: Instant::now(),
        });
    }
    let unchanged_for = seen.as_ref().map_or(Duration::ZERO, |s| s.since.elapsed());
    // Without election the holder found first is waited out once, whoever renews after.
    let waited_out = !settings.elect && started.elapsed() >= settings.duration;
    let previous_until = match judge(
        holding.as_ref(),
        &settings.identity,
        unchanged_for,
        waited_out,
    ) {
        Verdict::WaitFor(left) => {
            let holder = holding.and_then(|h| h.holder).unwrap_or_default();
            return Ok(Attempt::HeldFor(left, holder));
        }
        Verdict::Take { previous_until } => previous_until,
    };
    let sent = Instant::now();
    let renewed = Timestamp::now();
    let lease = taken_lease(found, settings, renewed);
    let written = match lease.metadata.resource_version {
        // Conditional on the version read: of two replicas taking it, one fails with 409.
        Some(_) => {
            api.replace(&settings.name, &PostParams::default(), &lease)
                .await
        }
        None => api.create(&PostParams::default(), &lease).await,
    };
    match written {
        Ok(lease) => Ok(Attempt::Taken(Box::new(Taken {
            lease,
            sent,
            renewed,
            previous_until,
        }))),
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
            Ok(Attempt::Raced)
        }
        Err(e) => Err(e),
    }
}

/// `found` (or a new Lease) held by this process from `now`.
fn taken_lease(found: Option<Lease>, settings: &LeaseSettings, now: Timestamp) -> Lease {
    let mut lease = found.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(settings.name.clone()),
            namespace: Some(settings.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let changed_hands = spec.holder_identity.as_deref() != Some(settings.identity.as_str());
    if changed_hands {
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.acquire_time = Some(MicroTime(now));
    }
    spec.holder_identity = Some(settings.identity.clone());
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(settings.duration.as_secs() as i32);
    lease
}
