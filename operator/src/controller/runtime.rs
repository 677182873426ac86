//! Wiring: leadership on the operator's Lease, the Event publisher, one task watch with the task
//! and workflow controllers per watched namespace, readiness, and the drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector;
use kube::{Api, Client};
use mcall_generated::McallTask;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::context::{Context, Failures};
use super::executions::Executions;
use super::lease::{self, Ending, Leading, LeaseSettings, Liveness};
use super::reconcile::{error_policy, reconcile_counting_failures};
use super::report::events::{self, EventSink};
use super::report::writes::FIELD_MANAGER;
use super::watch::{PerTask, Signals, watch_tasks};
use crate::config::OperatorConfig;
use crate::metrics::Metrics;
use crate::server::Readiness;

/// How many tasks are reconciled at once. Executions run outside reconciles, so this bounds
/// memory and API bursts, not how many tasks run.
const RECONCILE_CONCURRENCY: u16 = 16;

/// The clients the operator uses: `api` for everything it reads and writes (the binary fences its
/// writes with [`Leading`]), `lease` for the Lease alone.
pub struct Clients {
    pub api: Client,
    pub lease: Client,
}

/// Whether this process leads, as the configuration makes it: asked by the client's fence.
pub fn leading_for(config: &OperatorConfig) -> Leading {
    if config.lease.leader_election {
        Leading::new(config.lease.renew_deadline)
    } else {
        Leading::always()
    }
}

/// Runs the McallTask controller with one client for everything (tests, embedding).
pub async fn run(
    client: Client,
    config: OperatorConfig,
    readiness: Readiness,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let clients = Clients {
        api: client.clone(),
        lease: client,
    };
    let leading = leading_for(&config);
    run_with(clients, leading, config, readiness, metrics, shutdown).await
}

/// Follows until this process holds the operator's Lease, then runs the McallTask controller
/// until `shutdown` is cancelled (running executions may finish within the configured grace
/// period, the rest are cancelled, the Lease is released) or until the Lease is lost (everything
/// is cancelled at once and an error returned: a restart follows the new leader).
pub async fn run_with(
    clients: Clients,
    leading: Leading,
    config: OperatorConfig,
    readiness: Readiness,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = LeaseSettings::new(&config.lease, config.lease_namespace(), identity(&config));
    if let Some(problem) = settings.problem() {
        anyhow::bail!("the Lease settings cannot work: {problem}");
    }
    // Followers are ready: a rolling update proceeds while another replica leads.
    readiness.set_ready();
    let lease_api = Api::namespaced(clients.lease, &settings.namespace);
    let acquired = lease::acquire(lease_api, settings, leading.clone(), shutdown.clone()).await;
    let Some((liveness, leader)) = acquired else {
        return Ok(());
    };
    let stop = CancellationToken::new();
    let lease_stop = CancellationToken::new();
    let executions = Executions::default();
    let kept = tokio::spawn(keep_lease(
        leader,
        lease_stop.clone(),
        shutdown,
        stop.clone(),
        executions.clone(),
    ));
    let events = EventSink::new(
        clients.api.clone(),
        FIELD_MANAGER,
        config.instance.as_deref(),
    );
    let events_stop = CancellationToken::new();
    let events_published = tokio::spawn(
        events
            .clone()
            .publish_queued(events_stop.clone(), events::FLUSH_GRACE),
    );
    let shared = Shared {
        client: clients.api,
        config: config.clone(),
        events,
        executions,
        slots: Arc::new(Semaphore::new(config.max_concurrent_executions.max(1))),
        shutdown: stop,
        liveness,
        leading: leading.clone(),
        metrics,
    };
    shared.metrics.set_leader(true);
    run_controllers(&shared).await;
    shared.metrics.set_leader(false);
    // Running executions may finish, unless leadership ends meanwhile.
    drain(&shared.executions, config.shutdown_grace, &leading).await;
    // Released only now: no run starts after the Lease says this process stopped.
    lease_stop.cancel();
    let ending = kept.await.unwrap_or(Ending::Stopped);
    // The Events of the last results, within a few seconds (refused once no longer leading).
    events_stop.cancel();
    let _ = events_published.await;
    match ending {
        Ending::Stopped => Ok(()),
        Ending::Lost(why) => anyhow::bail!(
            "lost the operator's Lease ({why}); stopping, a restart follows the new leader"
        ),
    }
}

/// Keeps the Lease until `lease_stop`; `stop` (the controllers' and runs' stop) follows
/// `shutdown`. When the Lease is lost (at the renew deadline, before anyone may take it), every
/// run is cancelled at once, whatever the controllers are doing.
async fn keep_lease(
    leader: lease::Leader,
    lease_stop: CancellationToken,
    shutdown: CancellationToken,
    stop: CancellationToken,
    executions: Executions,
) -> Ending {
    let stopped_starting = Arc::new(std::sync::OnceLock::new());
    let kept = leader.keep(lease_stop, stopped_starting.clone());
    tokio::pin!(kept);
    let ending = tokio::select! {
        ending = &mut kept => ending,
        () = shutdown.cancelled() => {
            // From here no claimed run starts (see `execute::may_start`): the release says so.
            let _ = stopped_starting.set(k8s_openapi::jiff::Timestamp::now());
            stop.cancel();
            kept.await
        }
    };
    if matches!(ending, Ending::Lost(_)) {
        executions.cancel_all();
    }
    stop.cancel();
    ending
}

/// Every watched namespace's controller, until `shared.shutdown`; ready once the caches synced.
async fn run_controllers(shared: &Shared) {
    let config = &shared.config;
    let namespaces: Vec<Option<String>> = if config.watch_namespaces.is_empty() {
        vec![None]
    } else {
        config.watch_namespaces.iter().cloned().map(Some).collect()
    };
    let (synced_tokens, controllers): (Vec<_>, Vec<_>) = namespaces
        .into_iter()
        .map(|ns| namespace_controller(shared, ns))
        .unzip();
    // A stop before the caches synced (leadership taken just as SIGTERM came) must not wait
    // for a sync that never comes: the controllers end without one.
    let synced = async {
        tokio::select! {
            () = async {
                for synced in &synced_tokens {
                    synced.cancelled().await;
                }
            } => tracing::info!("caches synced; reconciling"),
            () = shared.shutdown.cancelled() => {}
        }
    };
    tokio::join!(futures::future::join_all(controllers), synced);
}

/// This process's identity in the Lease: the pod's name (or `mcall`), pid and start time.
fn identity(config: &OperatorConfig) -> String {
    format!(
        "{}-{}-{}",
        config.instance.as_deref().unwrap_or("mcall"),
        std::process::id(),
        k8s_openapi::jiff::Timestamp::now().as_microsecond()
    )
}

/// What the controllers of all watched namespaces share.
struct Shared {
    client: Client,
    config: OperatorConfig,
    events: EventSink,
    executions: Executions,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
    liveness: Liveness,
    leading: Leading,
    metrics: Metrics,
}

/// The controllers of one watched namespace (`None`: all), and the token their task watch
/// cancels once its cache is complete (the store's own readiness wakes only some of its waiters).
fn namespace_controller(
    shared: &Shared,
    namespace: Option<String>,
) -> (CancellationToken, impl Future<Output = ()> + use<>) {
    let api: Api<McallTask> = match &namespace {
        Some(ns) => Api::namespaced(shared.client.clone(), ns),
        None => Api::all(shared.client.clone()),
    };
    let (store, writer) = reflector::store();
    // One watch feeds the cache, the controller, deletions and the dependents' wake-ups.
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let (wake_workflows, woken_workflows) = futures::channel::mpsc::unbounded();
    let tasks_synced = CancellationToken::new();
    let synced = tasks_synced.clone();
    let failures = Failures::default();
    let watch = watch_tasks(
        api,
        namespace.clone(),
        writer,
        store.clone(),
        PerTask {
            executions: shared.executions.clone(),
            failures: failures.clone(),
            metrics: shared.metrics.tasks.clone(),
        },
        Signals {
            dependents: wake,
            owners: wake_workflows,
            synced: tasks_synced.clone(),
        },
    );
    let workflows = crate::workflow::workflow_controller(
        shared.client.clone(),
        namespace.clone(),
        crate::workflow::FromTaskWatch {
            store: store.clone(),
            synced: tasks_synced,
            woken: woken_workflows,
        },
        shared.events.clone(),
        shared.config.cross_namespace_templates,
        shared.metrics.clone(),
        shared.shutdown.clone(),
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
        leading: shared.leading.clone(),
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
    let both = async {
        tokio::join!(controller, workflows);
    };
    let run = until_done_or_held(both, shared.shutdown.clone(), synced.clone());
    (synced, run)
}

/// Runs `controllers` to their end, or until [`held_at_shutdown`] gives up on them.
async fn until_done_or_held(
    controllers: impl Future<Output = ()>,
    stop: CancellationToken,
    synced: CancellationToken,
) {
    tokio::select! {
        () = controllers => {}
        () = held_at_shutdown(stop, synced) => {
            tracing::debug!("controllers stopped before their caches were complete");
        }
    }
}

/// How long the controllers of a namespace get to end after the shutdown once their task cache
/// was complete: in-flight reconciles finish within it (their executions are drained apart).
const CONTROLLER_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Resolves when the controllers should be abandoned rather than awaited: kube-runtime holds a
/// controller's runner until its store is ready, and a graceful shutdown that comes first waits
/// for that forever (the watch is no longer polled). Before the task cache is complete
/// (`synced`) nothing was reconciled, so nothing is in flight: at once; after it, once the
/// grace has passed (the workflow cache may still have been incomplete).
async fn held_at_shutdown(stop: CancellationToken, synced: CancellationToken) {
    stop.cancelled().await;
    if synced.is_cancelled() {
        tokio::time::sleep(CONTROLLER_SHUTDOWN_GRACE).await;
    }
}

/// Waits for running executions to finish, up to `grace`, then cancels the rest and gives them a
/// moment to report.
async fn drain(executions: &Executions, grace: Duration, leading: &Leading) {
    let deadline = tokio::time::Instant::now() + grace;
    while !executions.is_empty() && tokio::time::Instant::now() < deadline && leading.now() {
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
