//! Spawning etcd and kube-apiserver (kube-controller-manager: [`crate::controller_manager`];
//! waiting for them: [`crate::readiness`]). Shared by the owned ([`crate::ControlPlane::start`])
//! and detached ([`crate::ControlPlane::start_detached`]) modes.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::pki::Pki;
use crate::{Error, Result, io_err};

/// Binary names; also what errors call the processes and the names of the detached pid files.
pub(crate) const ETCD: &str = "etcd";
pub(crate) const APISERVER: &str = "kube-apiserver";
pub(crate) const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// Ports of one control plane: etcd's on loopback, the apiserver's on `host` (loopback, or the
/// node address when the plane has a node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub host: Ipv4Addr,
}

impl Ports {
    /// Picks three distinct free loopback ports. The listeners are held until all three are
    /// chosen so the kernel cannot hand out the same port twice; there is still a small window
    /// before etcd/apiserver bind them, which is acceptable for a test harness.
    pub fn pick(host: Ipv4Addr) -> Result<Ports> {
        let listeners = [Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, host]
            .into_iter()
            .map(|ip| TcpListener::bind((ip, 0)))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(Error::PickPort)?;
        let port = |i: usize| listeners[i].local_addr().map(|a| a.port());
        Ok(Ports {
            etcd_client: port(0).map_err(Error::PickPort)?,
            etcd_peer: port(1).map_err(Error::PickPort)?,
            apiserver: port(2).map_err(Error::PickPort)?,
            host,
        })
    }

    pub fn server_url(&self) -> String {
        format!("https://{}:{}", self.host, self.apiserver)
    }
}

/// One more free loopback port, for a process started later than the three above (the
/// controller manager): picking it just before its spawn keeps the window for a clash short.
pub(crate) fn pick_port() -> Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(Error::PickPort)
}

/// The running etcd, kube-apiserver and (optionally) kube-controller-manager. Dropping it kills
/// them (unless [`Self::detach`]ed), so a failure half-way through startup never leaves
/// processes behind.
#[derive(Debug)]
pub(crate) struct Processes {
    etcd: Option<Child>,
    apiserver: Option<Child>,
    /// Set by [`crate::controller_manager::spawn`], after the apiserver is ready.
    pub(crate) controller_manager: Option<Child>,
    pub etcd_log: PathBuf,
    pub apiserver_log: PathBuf,
    pub controller_manager_log: PathBuf,
}

impl Processes {
    /// `(binary name, pid)` of every running process, in start order.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        [
            (ETCD, &self.etcd),
            (APISERVER, &self.apiserver),
            (CONTROLLER_MANAGER, &self.controller_manager),
        ]
        .into_iter()
        .filter_map(|(name, child)| child.as_ref().map(|c| (name, c.id())))
        .collect()
    }

    /// Gives up ownership: the processes keep running after this value (and the caller) is
    /// gone. Returns what [`Self::pids`] returned.
    pub fn detach(mut self) -> Vec<(&'static str, u32)> {
        let pids = self.pids();
        self.controller_manager.take();
        self.apiserver.take();
        self.etcd.take();
        pids
    }

    /// Kills the processes, clients before servers (controller manager, apiserver, then etcd,
    /// the apiserver's only backend), and reaps them.
    pub fn kill(&mut self) {
        for child in [
            self.controller_manager.take(),
            self.apiserver.take(),
            self.etcd.take(),
        ]
        .into_iter()
        .flatten()
        {
            kill_and_reap(child);
        }
    }

    /// Reports a process that has already exited, with the tail of its log.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        let entries = [
            (ETCD, &mut self.etcd, &self.etcd_log),
            (APISERVER, &mut self.apiserver, &self.apiserver_log),
            (
                CONTROLLER_MANAGER,
                &mut self.controller_manager,
                &self.controller_manager_log,
            ),
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
    pub fn controller_manager_log(&self) -> PathBuf {
        self.dir.join("kube-controller-manager.log")
    }
    /// kube-controller-manager's own kubeconfig (its client certificate, not the admin's).
    pub fn controller_manager_kubeconfig(&self) -> PathBuf {
        self.dir.join("kube-controller-manager.kubeconfig")
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
        controller_manager: None,
        etcd_log: layout.etcd_log(),
        apiserver_log: layout.apiserver_log(),
        controller_manager_log: layout.controller_manager_log(),
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
        ETCD,
        &bin_dir.join(ETCD),
        &etcd_args,
        &procs.etcd_log,
    )?);

    std::fs::create_dir_all(layout.apiserver_cert_dir())
        .map_err(io_err("creating", layout.apiserver_cert_dir()))?;
    let mut args = vec![
        format!("--etcd-servers={etcd_client}"),
        format!("--bind-address={}", ports.host),
        format!("--advertise-address={}", ports.host),
        format!("--secure-port={}", ports.apiserver),
        format!("--cert-dir={}", layout.apiserver_cert_dir().display()),
        format!("--tls-cert-file={}", pki.serving_cert.display()),
        format!("--tls-private-key-file={}", pki.serving_key.display()),
        format!("--client-ca-file={}", pki.ca_cert.display()),
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
    ];
    args.extend(match &pki.node {
        None => plane_only_args(),
        Some(node) => node_args(node, pki),
    });
    args.extend(extra_apiserver_args.iter().cloned());
    procs.apiserver = Some(spawn_logged(
        APISERVER,
        &bin_dir.join(APISERVER),
        &args,
        &procs.apiserver_log,
    )?);
    Ok(procs)
}

/// A plane without a node.
fn plane_only_args() -> Vec<String> {
    vec![
        "--authorization-mode=RBAC".to_string(),
        // No `kubernetes` endpoint lease reconciler: nothing routes to the apiserver through
        // the Service. With `none` the apiserver logs a misleading "Found stale data, removed
        // previous endpoints" error at startup: its no-op RemoveEndpoints returns success,
        // which the caller reads as stale data.
        "--endpoint-reconciler-type=none".to_string(),
        // ServiceAccount admission rejects pods whose ServiceAccount does not exist, and the
        // `default` ServiceAccount of a namespace is created by kube-controller-manager's
        // serviceaccount controller, which never runs here (the optional controller manager
        // runs only the garbage collector and the namespace controller); tests that write
        // pods (acting as the kubelet) would fail. TokenRequest does not depend on it.
        "--disable-admission-plugins=ServiceAccount".to_string(),
    ]
}

/// A plane with a node, as a real cluster's: kubelets authorized by the Node authorizer and
/// limited by NodeRestriction, ServiceAccount admission on, the `kubernetes` Service's
/// endpoint maintained (pods reach the apiserver through it), and the apiserver's own client
/// certificate for kubelets (logs, exec), whose serving certificate it verifies.
fn node_args(node: &crate::pki::NodePki, pki: &Pki) -> Vec<String> {
    vec![
        "--authorization-mode=Node,RBAC".to_string(),
        "--enable-admission-plugins=NodeRestriction".to_string(),
        "--endpoint-reconciler-type=lease".to_string(),
        format!(
            "--kubelet-client-certificate={}",
            node.apiserver_kubelet_client_cert.display()
        ),
        format!(
            "--kubelet-client-key={}",
            node.apiserver_kubelet_client_key.display()
        ),
        format!("--kubelet-certificate-authority={}", pki.ca_cert.display()),
        "--kubelet-preferred-address-types=InternalIP".to_string(),
    ]
}

pub(crate) fn spawn_logged(
    what: &'static str,
    binary: &Path,
    args: &[String],
    log: &Path,
) -> Result<Child> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_distinct_ports() {
        let p = Ports::pick(Ipv4Addr::LOCALHOST).unwrap();
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
