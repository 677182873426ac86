//! What a run writes while it goes on: `Running` once it lasts (a one-shot run) and each retry
//! as the engine announces it, with their Events.

use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::jiff::Timestamp;
use mcall_engine::EngineEvent;
use mcall_generated::{McallTask, Phase, Reason};

use super::{CLAIM_AFTER, Run};
use crate::Result;
use crate::controller::executions::TaskKey;
use crate::controller::report::writes::Tracked;
use crate::controller::report::{Note, publish};
use crate::controller::runs::RunKind;
use crate::controller::status;

/// Records `Running` once the run has gone on for [`CLAIM_AFTER`] (a one-shot run also
/// records a `Started` Event then), and each retry as the engine announces it; never ends (the
/// run's end drops it, a write in flight included: the report after it reads the task again on
/// a conflict).
pub(super) async fn status_writes(
    run: &Run,
    tracked: &mut Tracked<McallTask>,
    claimed: &AtomicBool,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<EngineEvent>,
    started_at: Timestamp,
) -> std::convert::Infallible {
    let claim_timer = tokio::time::sleep(CLAIM_AFTER);
    let mut claim_timer = std::pin::pin!(claim_timer);
    let mut announced = false;
    loop {
        tokio::select! {
            () = &mut claim_timer, if !announced && run.kind.writes_running_late() => {
                announced = true;
                // Events first: the run's end drops this future, a write in flight included.
                if matches!(run.kind, RunKind::OneShot) {
                    let note = format!("running {} input(s)", run.plan.inputs().len());
                    publish(&run.ctx.events, run.task.as_ref(), &Note::new(Reason::Started, note));
                }
                if !claimed.load(Ordering::Relaxed) {
                    let written = write_running(run, tracked, started_at, None).await;
                    claimed.store(written, Ordering::Relaxed);
                }
            }
            Some(event) = events.recv() => {
                let EngineEvent::Retrying { attempt, at, reason } = event;
                announce_retry(run, attempt, &reason);
                let at = Timestamp::try_from(at).unwrap_or_else(|_| Timestamp::now());
                let retry = (attempt, at, reason.as_str());
                let written = if claimed.load(Ordering::Relaxed) {
                    write_retry(run, tracked, retry).await
                } else {
                    write_running(run, tracked, started_at, Some(retry)).await
                };
                claimed.fetch_or(written, Ordering::Relaxed);
            }
            else => std::future::pending::<()>().await,
        }
    }
}

pub(super) fn announce_retry(run: &Run, attempt: u32, reason: &str) {
    let note = Note::new(
        Reason::Retrying,
        format!("attempt {attempt} after: {reason}"),
    );
    publish(&run.ctx.events, run.task.as_ref(), &note);
}

/// Records the run as `Running` (and the retry under way, if any). False when nothing was
/// written: the write failed (logged; the result is still written at the end) or the run is no
/// longer current.
async fn write_running(
    run: &Run,
    tracked: &mut Tracked<McallTask>,
    started_at: Timestamp,
    retry: Option<(u32, Timestamp, &str)>,
) -> bool {
    let (ctx, key, execution, generation) = (&run.ctx, &run.key, &run.execution, run.generation);
    let written = tracked
        .write(|latest| {
            ctx.executions.is_current(key, execution).then(|| {
                let previous = latest.status.as_ref();
                let running = match &run.kind {
                    RunKind::OneShot => status::running(previous, generation, started_at),
                    RunKind::Scheduled(scheduled) => {
                        status::scheduled_running(previous, generation, started_at, scheduled)
                    }
                };
                match retry {
                    Some((attempt, at, reason)) => status::retrying(&running, attempt, at, reason),
                    None => running,
                }
            })
        })
        .await;
    logged(written, key, "recording the run as Running")
}

/// Records a retry on the status of the current, claimed run.
async fn write_retry(
    run: &Run,
    tracked: &mut Tracked<McallTask>,
    (attempt, at, reason): (u32, Timestamp, &str),
) -> bool {
    let (ctx, key, execution) = (&run.ctx, &run.key, &run.execution);
    let written = tracked
        .write(|latest| {
            let running = latest
                .status
                .as_ref()
                .filter(|s| s.phase == Some(Phase::Running));
            running
                .filter(|_| ctx.executions.is_current(key, execution))
                .map(|current| status::retrying(current, attempt, at, reason))
        })
        .await;
    logged(written, key, "recording a retry")
}

fn logged<T>(written: Result<Option<T>>, key: &TaskKey, what: &str) -> bool {
    match written {
        Ok(written) => written.is_some(),
        Err(e) => {
            tracing::debug!(namespace = key.namespace, name = key.name, error = %e, "{what} failed");
            false
        }
    }
}
