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

    /// When another replica may take the Lease: at once when released, else when the holder's
    /// last renewal runs out.
    pub fn expires_at(&self) -> Timestamp {
        let renewed = self.renewed.unwrap_or(Timestamp::MIN);
        match self.holder {
            None => renewed,
            Some(_) => renewed.saturating_add(self.duration).unwrap_or(renewed),
        }
    }
}

/// Whether to take the Lease now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Take it; claimed ticks at or before `previous_until` may have been started by the
    /// previous holder.
    Take { previous_until: Timestamp },
    /// Another replica holds it: look again at this time at the latest.
    WaitUntil(Timestamp),
}

/// Pure: whether `me` takes the Lease described by `found` at `now`. Without election the holder
/// is waited out once, until `wait_out` (its expiry when first seen), then taken whoever renews.
pub(super) fn judge(
    found: Option<&Holding>,
    me: &str,
    now: Timestamp,
    wait_out: Option<Timestamp>,
) -> Verdict {
    let Some(found) = found else {
        return Verdict::Take {
            previous_until: Timestamp::MIN,
        };
    };
    let expires_at = found.expires_at();
    let held_by_other = found.holder.as_deref().is_some_and(|h| h != me);
    let waited_out = wait_out.is_some_and(|until| now >= until);
    if held_by_other && now < expires_at && !waited_out {
        return Verdict::WaitUntil(expires_at);
    }
    Verdict::Take {
        previous_until: found.vouched_until(),
    }
}

/// Follows until this process holds the Lease, then returns its liveness and the Lease's keeper;
/// `None` when `stop` came first. API failures are retried every retry period.
pub async fn acquire(
    api: Api<Lease>,
    settings: LeaseSettings,
    leading: Leading,
    stop: CancellationToken,
) -> Option<(Liveness, Leader)> {
    let mut wait_out: Option<Timestamp> = None;
    let mut announced = false;
    loop {
        let attempt = tokio::select! {
            biased;
            () = stop.cancelled() => return None,
            attempt = try_take(&api, &settings, &mut wait_out) => attempt,
        };
        let wait = match attempt {
            Ok(Attempt::Taken(taken)) => {
                return Some(taken.lead(api, settings, leading));
            }
            Ok(Attempt::HeldUntil(until, holder)) => {
                if !announced {
                    tracing::info!(
                        lease = settings.name,
                        holder,
                        "another replica leads; following"
                    );
                    announced = true;
                }
                let left =
                    Duration::try_from(until.duration_since(Timestamp::now())).unwrap_or_default();
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
    /// Held by another replica until then (and by whom).
    HeldUntil(Timestamp, String),
    /// The conditional write lost to another writer.
    Raced,
}

async fn try_take(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    wait_out: &mut Option<Timestamp>,
) -> Result<Attempt, kube::Error> {
    let found = api.get_opt(&settings.name).await?;
    let holding = found.as_ref().map(Holding::of);
    let now = Timestamp::now();
    if !settings.elect && wait_out.is_none() {
        // Without election the holder found first is waited out once, whoever renews after.
        *wait_out = Some(holding.as_ref().map_or(now, Holding::expires_at));
    }
    let previous_until = match judge(holding.as_ref(), &settings.identity, now, *wait_out) {
        Verdict::WaitUntil(until) => {
            let holder = holding.and_then(|h| h.holder).unwrap_or_default();
            return Ok(Attempt::HeldUntil(until, holder));
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
