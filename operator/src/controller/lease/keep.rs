//! Keeping the Lease: renewals conditional on the version last written, stepping down when the
//! renew deadline passes or another replica holds it, and release on a graceful stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{Leading, LeaseSettings};

const DEADLINE_PASSED: &str = "not renewed within the renew deadline";

/// Sleeps until `at`; forever when `None`.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Why keeping the Lease ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Stopped, and the Lease released.
    Stopped,
    /// No longer the leader: why.
    Lost(String),
}

/// The holder's side of the Lease.
pub struct Leader {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// As last written: the next write is conditional on its version.
    lease: Lease,
    /// The `renewTime` of the last renewal that landed.
    vouch: watch::Sender<Timestamp>,
    /// A claimed tick has come: renew now (see [`super::Liveness::vouch_for`]).
    wanted: Arc<Notify>,
    leading: Leading,
}

/// The least time between two renewals asked for by ticks: under many ticks a renewal serves
/// every tick due by its time, and the Lease is written at most this often.
const ON_DEMAND_SPACING: Duration = Duration::from_millis(10);

enum Renewal {
    Renewed,
    /// Another replica holds the Lease.
    Lost(String),
    /// The API server failed; retried at the next period.
    Failed(String),
}

impl Leader {
    pub(super) fn new(
        api: Api<Lease>,
        settings: LeaseSettings,
        lease: Lease,
        vouch: watch::Sender<Timestamp>,
        wanted: Arc<Notify>,
        leading: Leading,
    ) -> Leader {
        Leader {
            api,
            settings,
            lease,
            vouch,
            wanted,
            leading,
        }
    }

    /// Renews every retry period until `stop` (then releases the Lease) or until this process no
    /// longer leads. Either way nothing is vouched for afterwards: a run still waiting for its
    /// vouch gives up.
    /// `stopped_starting`: when this process stopped starting claimed runs, if it did before
    /// `stop`; the release says so, so the next leader runs every claimed tick after it.
    pub async fn keep(
        mut self,
        stop: CancellationToken,
        stopped_starting: Arc<std::sync::OnceLock<Timestamp>>,
    ) -> Ending {
        let mut interval = tokio::time::interval(self.settings.retry_period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        let mut last_renewal = Instant::now();
        let ending = loop {
            // The renew deadline is a timer of its own: leading ends at it, even while a renewal
            // hangs, so the runs stop before another replica may take the Lease.
            let deadline = self.leading.ends_at().filter(|_| self.settings.elect);
            tokio::select! {
                biased;
                () = stop.cancelled() => break Ending::Stopped,
                () = until(deadline) => break Ending::Lost(DEADLINE_PASSED.into()),
                _ = interval.tick() => {}
                () = self.wanted.notified() => {
                    let spacing = (last_renewal + ON_DEMAND_SPACING).saturating_duration_since(Instant::now());
                    tokio::time::sleep(spacing).await;
                }
            }
            last_renewal = Instant::now();
            let renewal = tokio::select! {
                biased;
                () = until(deadline) => break Ending::Lost(DEADLINE_PASSED.into()),
                renewal = tokio::time::timeout(self.settings.retry_period, self.renew()) => renewal,
            };
            match renewal
                .unwrap_or_else(|_| Renewal::Failed("no answer within the retry period".into()))
            {
                Renewal::Renewed => {}
                Renewal::Lost(why) => break Ending::Lost(why),
                Renewal::Failed(why) => {
                    tracing::warn!(
                        lease = self.settings.name,
                        error = why,
                        "renewing the Lease failed"
                    );
                }
            }
        };
        self.leading.revoke();
        self.vouch.send_replace(Timestamp::MIN);
        match &ending {
            Ending::Stopped => {
                let at = stopped_starting
                    .get()
                    .copied()
                    .unwrap_or_else(Timestamp::now);
                self.release(at).await;
            }
            Ending::Lost(why) => {
                tracing::error!(
                    lease = self.settings.name,
                    reason = why,
                    "lost the Lease: no longer leading"
                );
            }
        }
        ending
    }

    async fn renew(&mut self) -> Renewal {
        for _ in 0..2 {
            let sent = Instant::now();
            let now = Timestamp::now();
            let mut lease = self.lease.clone();
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(MicroTime(now));
            spec.holder_identity = Some(self.settings.identity.clone());
            match self.write(&lease).await {
                Ok(written) => {
                    self.lease = written;
                    self.leading.renewed(sent);
                    self.vouch.send_replace(now);
                    return Renewal::Renewed;
                }
                Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                    match self.reread().await {
                        Ok(Some(lost)) => return Renewal::Lost(lost),
                        Ok(None) => continue,
                        Err(e) => return Renewal::Failed(e.to_string()),
                    }
                }
                Err(e) => return Renewal::Failed(e.to_string()),
            }
        }
        Renewal::Failed("the Lease kept changing".into())
    }

    /// After a conflict: `Some(why)` when another replica holds the Lease now (with election);
    /// otherwise the version to write onto is the one read.
    async fn reread(&mut self) -> Result<Option<String>, kube::Error> {
        let Some(found) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(Some("the Lease was deleted".into()));
        };
        let holder = found.spec.as_ref().and_then(|s| s.holder_identity.clone());
        if self.settings.elect && holder.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(Some(format!(
                "the Lease is held by {}",
                holder.unwrap_or_else(|| "nobody".into())
            )));
        }
        self.lease = found;
        Ok(None)
    }

    async fn write(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.api
            .replace(&self.settings.name, &PostParams::default(), lease)
            .await
    }

    /// Releases the Lease with the time this process stopped vouching (the next holder reads
    /// it), only if it still holds it.
    async fn release(&mut self, stopped_starting: Timestamp) {
        let mut lease = self.lease.clone();
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(stopped_starting));
        // Bounded: an unanswering API server must not hold the stop (the Lease then expires).
        let written = tokio::time::timeout(self.settings.duration, self.write(&lease)).await;
        match written.unwrap_or_else(|_| Err(kube::Error::Service("no answer".into()))) {
            Ok(_) => tracing::info!(lease = self.settings.name, "released the Lease"),
            Err(e) => {
                tracing::warn!(lease = self.settings.name, error = %e, "releasing the Lease failed");
            }
        }
    }
}
