//! Wiring: the operator's Lease, the Event publisher, one task watch and controller per watched
//! namespace, readiness, and the drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, Store};
use kube::{Api, Client};
use mcall_generated::McallTask;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::context::{Context, Failures};
use super::executions::Executions;
use super::liveness;
use super::reconcile::{error_policy, reconcile_counting_failures};
use super::report::events::{self, EventSink};
use super::report::writes::FIELD_MANAGER;
use super::watch::{PerTask, watch_tasks};
use crate::config::OperatorConfig;
use crate::metrics::Metrics;
use crate::server::Readiness;

/// How many tasks are reconciled at once. Executions run outside reconciles, so this bounds
/// memory and API bursts, not how many tasks run.
const RECONCILE_CONCURRENCY: u16 = 16;

/// Runs the McallTask controller until `shutdown` is cancelled, then lets running executions
/// finish within the configured grace period and cancels the rest. `metrics` records what it does.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    readiness: Readiness,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (liveness, lease) = take_lease(&client, &config).await?;
    let lease_stop = CancellationToken::new();
    let lease_kept = tokio::spawn(lease.keep(lease_stop.clone()));
    let events = EventSink::new(client.clone(), FIELD_MANAGER, config.instance.as_deref());
    let events_stop = CancellationToken::new();
    let events_published = tokio::spawn(
        events
            .clone()
            .publish_queued(events_stop.clone(), events::FLUSH_GRACE),
    );
    let shared = Shared {
        client,
        config: config.clone(),
        events,
        executions: Executions::default(),
        slots: Arc::new(Semaphore::new(config.max_concurrent_executions.max(1))),
        shutdown,
        liveness,
        metrics,
    };
    let namespaces: Vec<Option<String>> = if config.watch_namespaces.is_empty() {
        vec![None]
    } else {
        config.watch_namespaces.iter().cloned().map(Some).collect()
    };
    let (stores, controllers): (Vec<_>, Vec<_>) = namespaces
        .into_iter()
        .map(|ns| namespace_controller(&shared, ns))
        .unzip();
    let ready = async {
        for store in &stores {
            let _ = store.wait_until_ready().await;
        }
        readiness.set_ready();
        tracing::info!("caches synced; ready");
    };
    // Every operator process runs the controllers (there is no leader election yet).
    shared.metrics.set_leader(true);
    tokio::join!(futures::future::join_all(controllers), ready);
    shared.metrics.set_leader(false);

    drain(&shared.executions, config.shutdown_grace).await;
    // Released only now: no run starts after the Lease says this process stopped.
    lease_stop.cancel();
    let _ = lease_kept.await;
    // The Events of the last results, within a few seconds.
    events_stop.cancel();
    let _ = events_published.await;
    Ok(())
}

/// Takes the operator's Lease (see `liveness`) under an identity unique to this process.
async fn take_lease(
    client: &Client,
    config: &OperatorConfig,
) -> anyhow::Result<(liveness::Liveness, liveness::LeaseKeeper)> {
    let identity = format!(
        "{}-{}-{}",
        config.instance.as_deref().unwrap_or("mcall"),
        std::process::id(),
        k8s_openapi::jiff::Timestamp::now().as_microsecond()
    );
    liveness::acquire(
        client.clone(),
        config.lease_namespace(),
        crate::config::LEASE_NAME,
        identity,
    )
    .await
    .map_err(|e| anyhow::anyhow!("taking the operator's Lease: {e}"))
}

/// What the controllers of all watched namespaces share.
struct Shared {
    client: Client,
    config: OperatorConfig,
    events: EventSink,
    executions: Executions,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
    liveness: liveness::Liveness,
    metrics: Metrics,
}

/// The cache and the controller of one watched namespace (`None`: all).
fn namespace_controller(
    shared: &Shared,
    namespace: Option<String>,
) -> (Store<McallTask>, impl Future<Output = ()> + use<>) {
    let api: Api<McallTask> = match &namespace {
        Some(ns) => Api::namespaced(shared.client.clone(), ns),
        None => Api::all(shared.client.clone()),
    };
    let (store, writer) = reflector::store();
    // One watch feeds the cache, the controller, deletions and the dependents' wake-ups.
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let failures = Failures::default();
    let watch = watch_tasks(
        api,
        namespace,
        writer,
        store.clone(),
        PerTask {
            executions: shared.executions.clone(),
            failures: failures.clone(),
            metrics: shared.metrics.tasks.clone(),
        },
        wake,
    );
    let ctx = Arc::new(Context {
        client: shared.client.clone(),
        config: shared.config.clone(),
        events: shared.events.clone(),
        executions: shared.executions.clone(),
        slots: shared.slots.clone(),
        limits: mcall_engine::Limits::default(),
        store: store.clone(),
        shutdown: shared.shutdown.clone(),
        failures,
        liveness: shared.liveness.clone(),
        metrics: shared.metrics.clone(),
    });
    let stop = shared.shutdown.clone();
    let controller = Controller::for_stream(watch, store.clone())
        .reconcile_on(woken)
        // Bounded, so a cache of thousands of tasks is not reconciled all at once.
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile_counting_failures, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile loop");
            }
        });
    (store, controller)
}

/// Waits for running executions to finish, up to `grace`, then cancels the rest and gives them a
/// moment to report.
async fn drain(executions: &Executions, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while !executions.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !executions.is_empty() {
        tracing::warn!(
            running = executions.len(),
            "shutdown grace period over; cancelling running executions"
        );
        executions.cancel_all();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !executions.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
