//! This process's liveness, recorded in a Lease, and what the previous process's Lease said.
//!
//! A scheduled task's next tick is claimed when the previous run's result is written
//! (`status.claimedTick`), so a tick costs one status write. Whoever finds the claim unstarted
//! runs it, which needs to know which claims a process that is gone may have started. The rule:
//! a process starts a claimed run only while its Lease vouches for the tick
//! (`renewTime + leaseDurationSeconds` at or after it). So a restarted operator knows that a claim
//! for a tick after the previous holder's last vouch was never started and runs it, and records
//! one at or before it as interrupted (it may have run). A holder that stops gracefully releases
//! the Lease with the time it stopped; one that crashed is waited out before anything runs.
//!
//! There is no leader election yet: a second replica would take the Lease over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long a renewal vouches for this process.
pub const LEASE_DURATION: Duration = Duration::from_secs(3);
/// How often the Lease is renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// What a reconcile needs to know about liveness.
#[derive(Clone, Debug)]
pub struct Liveness {
    /// Claimed ticks at or before this may have been started by the previous process.
    pub previous_until: Timestamp,
    vouched_until: watch::Receiver<Timestamp>,
}

impl Liveness {
    /// Waits until this process's Lease vouches for starting a run at `tick`. False when the
    /// Lease keeper stopped (the operator is shutting down).
    pub async fn vouch_for(&self, tick: Timestamp) -> bool {
        let mut vouched = self.vouched_until.clone();
        vouched.wait_for(|until| *until >= tick).await.is_ok()
    }
}

/// Renews the Lease until stopped, then releases it.
pub struct LeaseKeeper {
    api: Api<Lease>,
    name: String,
    identity: String,
    vouched: watch::Sender<Timestamp>,
}

/// Reads what the previous holder left, waits out a holder that did not release the Lease, and
/// takes it.
pub async fn acquire(
    client: Client,
    namespace: &str,
    name: &str,
    identity: String,
) -> Result<(Liveness, LeaseKeeper), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let previous = api.get_opt(name).await?;
    let previous_until = previous
        .as_ref()
        .and_then(|lease| lease.spec.as_ref())
        .map_or(Timestamp::MIN, |spec| {
            let renewed = spec.renew_time.as_ref().map_or(Timestamp::MIN, |t| t.0);
            let released = spec.holder_identity.as_deref().is_none_or(str::is_empty);
            if released {
                renewed
            } else {
                let duration = spec
                    .lease_duration_seconds
                    .map_or(LEASE_DURATION, |s| Duration::from_secs(s.max(0) as u64));
                renewed.saturating_add(duration).unwrap_or(renewed)
            }
        });
    let wait = previous_until.duration_since(Timestamp::now());
    if wait > SignedDuration::ZERO {
        tracing::info!(
            lease = name,
            wait_ms = wait.as_millis(),
            "the previous operator did not release its Lease; waiting it out"
        );
        tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    }
    if previous.is_none() {
        let lease: Lease = serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name},
            "spec": {}
        }))
        .expect("a valid Lease");
        match api.create(&PostParams::default(), &lease).await {
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            other => drop(other?),
        }
    }
    let (vouched, vouched_until) = watch::channel(Timestamp::MIN);
    let keeper = LeaseKeeper {
        api,
        name: name.to_owned(),
        identity,
        vouched,
    };
    keeper.renew().await?;
    Ok((
        Liveness {
            previous_until,
            vouched_until,
        },
        keeper,
    ))
}

impl LeaseKeeper {
    async fn renew(&self) -> Result<(), kube::Error> {
        // The time written is the time vouched from: the next holder computes the same bound.
        let at = Timestamp::now();
        write(&self.api, &self.name, Some(&self.identity), at).await?;
        let until = at.saturating_add(LEASE_DURATION).unwrap_or(at);
        self.vouched.send_replace(until);
        Ok(())
    }

    /// Renews every [`RENEW_EVERY`] until `stop`, then releases the Lease: no run starts after
    /// this returns.
    pub async fn keep(self, stop: CancellationToken) {
        let mut interval = tokio::time::interval(RENEW_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    if let Err(e) = self.renew().await {
                        tracing::warn!(lease = self.name, error = %e, "renewing the Lease failed");
                    }
                }
                () = stop.cancelled() => break,
            }
        }
        let LeaseKeeper {
            api, name, vouched, ..
        } = self;
        // Nothing is vouched for from here on: a run still waiting for its vouch gives up.
        vouched.send_replace(Timestamp::MIN);
        drop(vouched);
        if let Err(e) = write(&api, &name, None, Timestamp::now()).await {
            tracing::warn!(lease = name, error = %e, "releasing the Lease failed");
        }
    }
}

async fn write(
    api: &Api<Lease>,
    name: &str,
    holder: Option<&str>,
    at: Timestamp,
) -> Result<(), kube::Error> {
    let patch = json!({"spec": {
        "holderIdentity": holder,
        "leaseDurationSeconds": LEASE_DURATION.as_secs(),
        "renewTime": MicroTime(at),
    }});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
}
