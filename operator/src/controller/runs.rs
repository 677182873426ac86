//! What a run is for: the types the planners, the starter and the execution share.

use k8s_openapi::jiff::Timestamp;

/// What a run is for.
#[derive(Clone, Debug, PartialEq)]
pub enum RunKind {
    /// A one-shot task's run for its current generation.
    OneShot,
    /// A scheduled task's run for a tick or a run-now request.
    Scheduled(ScheduledRun),
}

/// A scheduled run: which tick (or run-now request) it answers and how its claim is recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledRun {
    /// The run's identity: the tick, or the time of the run-now request.
    pub scheduled: Timestamp,
    /// The tick it decides (recorded as `lastScheduleTime`), if it runs for one.
    pub tick: Option<Timestamp>,
    /// The run-now value it answers (recorded as `runNowHandled`).
    pub run_now: Option<String>,
    /// The tick after it (`nextScheduleTime`), claimed by its result.
    pub next: Option<Timestamp>,
    /// False for `Allow`: the run in progress keeps going.
    pub cancel_previous: bool,
    pub limits: HistoryLimits,
    pub claim: Claim,
}

/// How a scheduled run's tick is recorded before the run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Claimed now, for a run that starts now.
    Now,
    /// Claimed now, up to a second early; the run waits for its tick.
    Ahead,
    /// Claimed already, by the previous run's result (`status.claimedTick`); the run waits for
    /// its tick and for this process's Lease to vouch for it.
    Chained,
    /// Claimed and recorded `Running` by the operator process that stopped during it: replayed
    /// over the pods that process created (the Pod executor), which are followed, not started
    /// again. Its claim is written again unchanged, on the version the adoption was decided on.
    Adopted,
}

/// How many runs `status.history` keeps, per outcome (`spec.*RunsHistoryLimit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    pub successful: i64,
    pub failed: i64,
}

impl RunKind {
    /// Whether the run writes `Running` only once it has gone on for a while: a one-shot run,
    /// or a scheduled one claimed by an earlier result. Other scheduled runs wrote their claim
    /// as `Running`.
    pub fn writes_running_late(&self) -> bool {
        match self {
            RunKind::OneShot => true,
            RunKind::Scheduled(run) => run.claim == Claim::Chained,
        }
    }
}
