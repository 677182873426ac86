//! Waiting until a spawned process serves, while watching that none of them exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::process::{APISERVER, CONTROLLER_MANAGER, Processes, log_tail};
use crate::{Error, Result, client};

/// What [`wait_ready`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// kube-apiserver and its bootstrap objects, see [`client::probe_ready`].
    ApiServer,
    /// kube-controller-manager's `/healthz`, see [`client::probe_healthz`].
    ControllerManager,
}

impl Readiness {
    fn process(self) -> &'static str {
        match self {
            Readiness::ApiServer => APISERVER,
            Readiness::ControllerManager => CONTROLLER_MANAGER,
        }
    }

    async fn check(self, client: &kube::Client) -> std::result::Result<(), String> {
        match self {
            Readiness::ApiServer => client::probe_ready(client).await,
            Readiness::ControllerManager => {
                client::probe_healthz(client, &crate::controller_manager::CONTROLLERS).await
            }
        }
    }
}

/// What the readiness probe thread reports.
enum Probe {
    Ready,
    /// Not ready yet; the reason, kept for the timeout error.
    Pending(String),
    /// The probe itself cannot work (runtime or client could not be built).
    Failed(String),
}

/// Blocks until `target` is ready or `timeout` passes, failing early if any of the processes
/// exits. `kubeconfig_yaml` points at the server to probe.
///
/// The probe is async (kube client) and the caller may itself be inside a tokio runtime (a
/// `#[tokio::test]` calling [`crate::ControlPlane::shared`]), where `block_on` would panic; so
/// the probe runs on its own thread with a small current-thread runtime, and this thread
/// watches the processes meanwhile.
pub(crate) fn wait_ready(
    procs: &mut Processes,
    target: Readiness,
    kubeconfig_yaml: String,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Probe>();
    let probe = spawn_probe(target, kubeconfig_yaml, stop.clone(), tx)?;
    let log = match target {
        Readiness::ApiServer => procs.apiserver_log.clone(),
        Readiness::ControllerManager => procs.controller_manager_log.clone(),
    };
    let mut last = String::from("no probe finished yet");
    let result = loop {
        if let Err(e) = procs.check_alive() {
            break Err(e);
        }
        let now = Instant::now();
        if now >= deadline {
            break Err(Error::NotReady {
                what: target.process(),
                timeout,
                last_error: last,
                tail: log_tail(&log, 40),
                log,
            });
        }
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(100))) {
            Ok(Probe::Ready) => break Ok(()),
            Ok(Probe::Pending(reason)) => last = reason,
            Ok(Probe::Failed(reason)) => break Err(Error::ProbeThread(reason)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(Error::ProbeThread(
                    "the probe thread exited unexpectedly".into(),
                ));
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    // The thread sees `stop` (or a failed send) after its current probe (at most 5 s).
    drop(rx);
    let _ = probe.join();
    result
}

/// The probe thread: checks `target` every 100 ms and reports each result on `tx` until it is
/// ready, `stop` is set or the receiver is gone.
fn spawn_probe(
    target: Readiness,
    kubeconfig_yaml: String,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<Probe>,
) -> Result<std::thread::JoinHandle<()>> {
    let run = move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Probe::Failed(format!("building a tokio runtime: {e}")));
                return;
            }
        };
        rt.block_on(async {
            let client = match client::client_from_yaml(&kubeconfig_yaml, "admin").await {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Probe::Failed(e.to_string()));
                    return;
                }
            };
            // A send error means the waiting side gave up; stop quietly then.
            while !stop.load(Ordering::Relaxed) {
                // Bounded so a wedged request cannot outlive the deadline by much.
                let probe = tokio::time::timeout(Duration::from_secs(5), target.check(&client));
                let report = match probe.await {
                    Ok(Ok(())) => Probe::Ready,
                    Ok(Err(e)) => Probe::Pending(e),
                    Err(_) => Probe::Pending("a readiness request took over 5 s".into()),
                };
                let ready = matches!(report, Probe::Ready);
                if tx.send(report).is_err() || ready {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    };
    std::thread::Builder::new()
        .name("mcall-readiness".into())
        .spawn(run)
        .map_err(|e| Error::ProbeThread(format!("spawning: {e}")))
}
