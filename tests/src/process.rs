//! Spawning etcd and kube-apiserver and waiting until they serve. Shared by the owned
//! ([`crate::ControlPlane::start`]) and detached ([`crate::ControlPlane::start_detached`]) modes.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::pki::Pki;
use crate::{Error, Result, client, io_err};

/// Loopback ports of one control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
}

impl Ports {
    /// Picks three distinct free loopback ports. The listeners are held until all three are
    /// chosen so the kernel cannot hand out the same port twice; there is still a small window
    /// before etcd/apiserver bind them, which is acceptable for a test harness.
    pub fn pick() -> Result<Ports> {
        let listeners = (0..3)
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(Error::PickPort)?;
        let port = |i: usize| listeners[i].local_addr().map(|a| a.port());
        Ok(Ports {
            etcd_client: port(0).map_err(Error::PickPort)?,
            etcd_peer: port(1).map_err(Error::PickPort)?,
            apiserver: port(2).map_err(Error::PickPort)?,
        })
    }

    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver)
    }
}

/// The running etcd and kube-apiserver. Dropping it kills both (unless [`Self::detach`]ed), so
/// a failure half-way through startup never leaves processes behind.
#[derive(Debug)]
pub(crate) struct Processes {
    etcd: Option<Child>,
    apiserver: Option<Child>,
    pub etcd_log: PathBuf,
    pub apiserver_log: PathBuf,
}

impl Processes {
    pub fn etcd_pid(&self) -> Option<u32> {
        self.etcd.as_ref().map(Child::id)
    }

    pub fn apiserver_pid(&self) -> Option<u32> {
        self.apiserver.as_ref().map(Child::id)
    }

    /// Gives up ownership: the processes keep running after this value (and the caller) is
    /// gone. Returns `(etcd pid, apiserver pid)`.
    pub fn detach(mut self) -> (u32, u32) {
        let etcd = self.etcd.take().map(|c| c.id()).unwrap_or_default();
        let apiserver = self.apiserver.take().map(|c| c.id()).unwrap_or_default();
        (etcd, apiserver)
    }

    /// Kills both processes (apiserver first: it is etcd's only client) and reaps them.
    pub fn kill(&mut self) {
        for child in [self.apiserver.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            kill_and_reap(child);
        }
    }

    /// Reports a process that has already exited, with the tail of its log.
    fn check_alive(&mut self) -> Result<()> {
        let entries = [
            ("etcd", &mut self.etcd, &self.etcd_log),
            ("kube-apiserver", &mut self.apiserver, &self.apiserver_log),
        ];
        for (what, child, log) in entries {
            let Some(child) = child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::ProcessExited {
                    what,
                    status: status.to_string(),
                    log: log.clone(),
                    tail: log_tail(log, 40),
                });
            }
        }
        Ok(())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kill_and_reap(mut child: Child) {
    // SIGKILL: these are throwaway processes whose data is deleted right after.
    let _ = child.kill();
    let _ = child.wait();
}

/// Where a control plane keeps its files: PKI, etcd data, logs.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }
    pub fn etcd_data(&self) -> PathBuf {
        self.dir.join("etcd-data")
    }
    pub fn etcd_log(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }
    pub fn apiserver_log(&self) -> PathBuf {
        self.dir.join("kube-apiserver.log")
    }
    /// kube-apiserver insists on a writable `--cert-dir` (default /var/run/kubernetes) even
    /// when given explicit serving certs.
    pub fn apiserver_cert_dir(&self) -> PathBuf {
        self.dir.join("apiserver-certs")
    }
}

/// Spawns etcd and kube-apiserver. Both are put in their own process group so a terminal
/// Ctrl-C (SIGINT to the foreground group) does not hit them half-way: the owner (Drop or the
/// watchdog) decides when they die, and detached ones survive the shell that started them.
pub(crate) fn spawn(
    bin_dir: &Path,
    layout: &Layout,
    pki: &Pki,
    ports: Ports,
    extra_apiserver_args: &[String],
) -> Result<Processes> {
    let mut procs = Processes {
        etcd: None,
        apiserver: None,
        etcd_log: layout.etcd_log(),
        apiserver_log: layout.apiserver_log(),
    };
    let etcd_peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    let etcd_client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let etcd_args = vec![
        "--name=mcall".to_string(),
        format!("--data-dir={}", layout.etcd_data().display()),
        format!("--listen-client-urls={etcd_client}"),
        format!("--advertise-client-urls={etcd_client}"),
        format!("--listen-peer-urls={etcd_peer}"),
        format!("--initial-advertise-peer-urls={etcd_peer}"),
        format!("--initial-cluster=mcall={etcd_peer}"),
        // Throwaway data: skipping fsync makes every write (and so the apiserver) much faster.
        "--unsafe-no-fsync=true".to_string(),
        "--log-level=error".to_string(),
    ];
    procs.etcd = Some(spawn_logged(
        "etcd",
        &bin_dir.join("etcd"),
        &etcd_args,
        &procs.etcd_log,
    )?);

    std::fs::create_dir_all(layout.apiserver_cert_dir())
        .map_err(io_err("creating", layout.apiserver_cert_dir()))?;
    let mut args = vec![
        format!("--etcd-servers={etcd_client}"),
        "--bind-address=127.0.0.1".to_string(),
        "--advertise-address=127.0.0.1".to_string(),
        format!("--secure-port={}", ports.apiserver),
        format!("--cert-dir={}", layout.apiserver_cert_dir().display()),
        format!("--tls-cert-file={}", pki.serving_cert.display()),
        format!("--tls-private-key-file={}", pki.serving_key.display()),
        format!("--client-ca-file={}", pki.ca_cert.display()),
        "--authorization-mode=RBAC".to_string(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
        format!("--service-account-key-file={}", pki.sa_public_key.display()),
        format!(
            "--service-account-signing-key-file={}",
            pki.sa_signing_key.display()
        ),
        "--service-cluster-ip-range=10.96.0.0/24".to_string(),
        // Fewer moving parts and less startup work: no API priority & fairness bookkeeping,
        // no profiling endpoints, no `kubernetes` endpoint lease reconciler (nothing here
        // routes to the apiserver through the Service). With `none` the apiserver logs a
        // misleading "Found stale data, removed previous endpoints" error at startup: its
        // no-op RemoveEndpoints returns success, which the caller reads as stale data.
        "--enable-priority-and-fairness=false".to_string(),
        "--profiling=false".to_string(),
        "--endpoint-reconciler-type=none".to_string(),
        // ServiceAccount admission rejects pods whose ServiceAccount does not exist, and the
        // `default` ServiceAccount of a namespace is created by kube-controller-manager, which
        // does not run here; tests that write pods (acting as the kubelet) would fail.
        // TokenRequest does not depend on it.
        "--disable-admission-plugins=ServiceAccount".to_string(),
    ];
    args.extend(extra_apiserver_args.iter().cloned());
    procs.apiserver = Some(spawn_logged(
        "kube-apiserver",
        &bin_dir.join("kube-apiserver"),
        &args,
        &procs.apiserver_log,
    )?);
    Ok(procs)
}

fn spawn_logged(what: &'static str, binary: &Path, args: &[String], log: &Path) -> Result<Child> {
    let out = File::create(log).map_err(io_err("creating log file", log))?;
    let err = out
        .try_clone()
        .map_err(io_err("duplicating log file handle", log))?;
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn {
            what,
            binary: binary.to_path_buf(),
            source,
        })
}

/// The last `lines` lines of a log file, or a note why it could not be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<could not read {}: {e}>", path.display()),
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

/// Blocks until the control plane is ready (see [`client::probe_ready`]) or `timeout` passes,
/// failing early if etcd or the apiserver exits.
///
/// The probe is async (kube client) and the caller may itself be inside a tokio runtime (a
/// `#[tokio::test]` calling [`crate::ControlPlane::shared`]), where `block_on` would panic; so
/// the probe runs on its own thread with a small current-thread runtime, and this thread
/// watches the processes meanwhile.
pub(crate) fn wait_ready(
    procs: &mut Processes,
    kubeconfig_yaml: String,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Probe>();
    let thread_stop = stop.clone();
    let probe = std::thread::Builder::new()
        .name("mcall-readiness".into())
        .spawn(move || {
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
                while !thread_stop.load(Ordering::Relaxed) {
                    // Bounded so a wedged request cannot outlive the deadline by much.
                    let probe =
                        tokio::time::timeout(Duration::from_secs(5), client::probe_ready(&client));
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
        })
        .map_err(|e| Error::ProbeThread(format!("spawning: {e}")))?;

    let mut last = String::from("no probe finished yet");
    let result = loop {
        if let Err(e) = procs.check_alive() {
            break Err(e);
        }
        let now = Instant::now();
        if now >= deadline {
            break Err(Error::NotReady {
                timeout,
                last_error: last,
                log: procs.apiserver_log.clone(),
                tail: log_tail(&procs.apiserver_log, 40),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_distinct_ports() {
        let p = Ports::pick().unwrap();
        assert_ne!(p.etcd_client, p.etcd_peer);
        assert_ne!(p.etcd_client, p.apiserver);
        assert_ne!(p.etcd_peer, p.apiserver);
        assert_eq!(p.server_url(), format!("https://127.0.0.1:{}", p.apiserver));
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        std::fs::write(&log, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&log, 2), "c\nd");
        assert!(log_tail(&dir.path().join("missing"), 2).starts_with("<could not read"));
    }
}
