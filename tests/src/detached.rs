//! Detached mode for humans (`cargo xtask up|down|status`): the same control plane, always
//! with kube-controller-manager (a cluster to try things on should delete namespaces and
//! collect garbage), but its processes outlive the command that started them and are found
//! again through pid files in a state directory.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::control_plane::{ControlPlaneOptions, NodeSetup, launch};
use crate::node;
use crate::process::{APISERVER, CONTROLLER_MANAGER, ETCD, Layout};
use crate::{ControlPlane, Error, Result, client, io_err, tools};

/// The processes of a detached plane, in start order; each has a `<binary>.pid` file.
const BINARIES: [&str; 3] = [ETCD, APISERVER, CONTROLLER_MANAGER];
/// The node's processes (their pid files; the node's teardown stops them).
const NODE_BINARIES: [&str; 5] = [
    "containerd",
    "kubelet",
    "kube-proxy",
    "kube-scheduler",
    "coredns",
];
/// Where a detached plane's node lives, under the state directory.
const NODE_DIR: &str = "node";
const SERVER_FILE: &str = "server";
const KUBECONFIG: &str = "kubeconfig";

/// A freshly started detached control plane.
#[derive(Debug, Clone)]
pub struct DetachedInfo {
    /// Absolute state directory.
    pub state_dir: PathBuf,
    /// Absolute path of the admin kubeconfig (`<state_dir>/kubeconfig`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    pub etcd_pid: u32,
    pub apiserver_pid: u32,
    pub controller_manager_pid: u32,
    pub apiserver_log: PathBuf,
    pub controller_manager_log: PathBuf,
    /// Wall time until all three processes (and the node, if any) were ready.
    pub startup_time: Duration,
    /// The node's directory (logs, containerd socket), if the plane has a node.
    pub node_dir: Option<PathBuf>,
    /// Wall time from the node's first process to a Ready node.
    pub node_startup_time: Option<Duration>,
}

/// What `status_detached` found.
#[derive(Debug, Clone)]
pub struct DetachedStatus {
    /// Pid of a live etcd recorded in the state dir.
    pub etcd_pid: Option<u32>,
    /// Pid of a live kube-apiserver recorded in the state dir.
    pub apiserver_pid: Option<u32>,
    /// Pid of a live kube-controller-manager recorded in the state dir.
    pub controller_manager_pid: Option<u32>,
    /// Pid of the node's live kubelet, if the plane has a node.
    pub kubelet_pid: Option<u32>,
    /// This plane's node holds the machine (its claim is registered).
    pub node_registered: bool,
    /// All three run (and the node's kubelet, if it has one), and the apiserver answered the
    /// readiness probe.
    pub healthy: bool,
    /// Why it is not healthy (empty when healthy).
    pub detail: String,
    pub server: Option<String>,
    pub kubeconfig: PathBuf,
}

impl DetachedStatus {
    /// Whether any of the processes is still running.
    pub fn is_running(&self) -> bool {
        self.etcd_pid.is_some()
            || self.apiserver_pid.is_some()
            || self.controller_manager_pid.is_some()
            || self.node_registered
    }
}

fn detached_err(state_dir: &Path, reason: impl Into<String>) -> Error {
    Error::Detached {
        state_dir: state_dir.to_path_buf(),
        reason: reason.into(),
    }
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager that keep running after the
    /// caller exits, with all state (PKI, etcd data, logs, pid files, `kubeconfig`) in
    /// `state_dir`. Each start is a fresh, empty cluster. Fails if a plane recorded in
    /// `state_dir` is still running.
    ///
    /// With `node`, a local node too ([`crate::node`], in `<state_dir>/node`): its processes
    /// and its claim on the machine outlive the caller until [`Self::stop_detached`].
    pub fn start_detached(state_dir: &Path, node: bool) -> Result<DetachedInfo> {
        // Owner only: it holds the admin key (with a node, root on the machine).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .and_then(|()| {
                std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(io_err("creating the state directory", state_dir))?;
        let state_dir = state_dir
            .canonicalize()
            .map_err(io_err("resolving the state directory", state_dir))?;
        let status = ControlPlane::status_detached(&state_dir)?;
        if status.is_running() {
            return Err(detached_err(
                &state_dir,
                format!(
                    "a control plane is already running there (etcd pid {:?}, kube-apiserver pid {:?}, kube-controller-manager pid {:?}); stop it first",
                    status.etcd_pid, status.apiserver_pid, status.controller_manager_pid
                ),
            ));
        }
        let layout = Layout {
            dir: state_dir.clone(),
        };
        // Fresh cluster: the CA is new each time, so old data would be unusable anyway.
        for dir in [
            layout.etcd_data(),
            layout.pki_dir(),
            layout.apiserver_cert_dir(),
        ] {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io_err("removing stale", &dir))?;
            }
        }
        remove_state_files(&state_dir)?;

        let bin_dir = tools::tools_bin_dir()?;
        let kubeconfig = state_dir.join(KUBECONFIG);
        let opts = ControlPlaneOptions {
            controller_manager: true,
            node,
            // A human's command: fail at once when tests hold the machine's node.
            node_claim_wait: Duration::from_secs(1),
            ..Default::default()
        };
        let node_dir = node_dir(&state_dir);
        let node_setup = node.then(|| NodeSetup {
            dir: &node_dir,
            owner: node::Owner::Detached,
        });
        // Pid files are written as soon as the processes exist, so `down` finds them even if
        // this command is interrupted while waiting for readiness.
        let launched = launch(&bin_dir, &layout, &kubeconfig, &opts, node_setup, |pids| {
            for (binary, pid) in pids {
                let path = pid_file(&state_dir, binary);
                std::fs::write(&path, pid.to_string())
                    .map_err(io_err("writing pid file", &path))?;
            }
            Ok(())
        });
        let launched = match launched {
            Ok(l) => l,
            Err(e) => {
                // The processes were killed by `launch`; drop their stale pid files too.
                let _ = remove_state_files(&state_dir);
                return Err(e);
            }
        };
        let server_path = state_dir.join(SERVER_FILE);
        std::fs::write(&server_path, &launched.server).map_err(io_err("writing", &server_path))?;
        let apiserver_log = launched.procs.apiserver_log.clone();
        let controller_manager_log = launched.procs.controller_manager_log.clone();
        let node_startup_time = launched.node.as_ref().map(|n| n.startup);
        if let Some(node) = launched.node {
            node.detach();
        }
        let pids = launched.procs.detach();
        let pid = |binary: &str| {
            pids.iter()
                .find(|(b, _)| *b == binary)
                .map_or(0, |(_, pid)| *pid)
        };
        Ok(DetachedInfo {
            state_dir,
            kubeconfig: launched.kubeconfig,
            server: launched.server,
            etcd_pid: pid(ETCD),
            apiserver_pid: pid(APISERVER),
            controller_manager_pid: pid(CONTROLLER_MANAGER),
            apiserver_log,
            controller_manager_log,
            startup_time: launched.startup,
            node_dir: node.then_some(node_dir),
            node_startup_time,
        })
    }

    /// Stops a detached control plane: SIGTERM, up to 10 s grace, then SIGKILL; removes the
    /// pid files. Returns whether anything was running.
    pub fn stop_detached(state_dir: &Path) -> Result<bool> {
        // The node first, while the apiserver still answers; its teardown kills its processes
        // (a node of another checkout or of a test is left alone).
        let mut stopped = node::teardown_detached(&node_dir(state_dir))?;
        for binary in NODE_BINARIES {
            let _ = std::fs::remove_file(pid_file(state_dir, binary));
        }
        // Clients first: the controller manager, then the apiserver (etcd's only client); each
        // shuts down more cleanly that way.
        for binary in BINARIES.iter().rev() {
            if let Some(pid) = live_pid(state_dir, binary) {
                terminate(state_dir, pid, binary)?;
                stopped = true;
            }
        }
        remove_state_files(state_dir)?;
        Ok(stopped)
    }

    /// Whether the detached plane in `state_dir` runs, and whether it is healthy (all three
    /// processes alive; `/readyz` and the bootstrap objects, checked with the admin kubeconfig).
    pub fn status_detached(state_dir: &Path) -> Result<DetachedStatus> {
        let kubeconfig = state_dir.join(KUBECONFIG);
        let etcd_pid = live_pid(state_dir, ETCD);
        let apiserver_pid = live_pid(state_dir, APISERVER);
        let controller_manager_pid = live_pid(state_dir, CONTROLLER_MANAGER);
        let kubelet_pid = live_pid(state_dir, "kubelet");
        let has_node =
            node::registered_node_dir().as_deref() == Some(node_dir(state_dir).as_path());
        let server = std::fs::read_to_string(state_dir.join(SERVER_FILE))
            .ok()
            .map(|s| s.trim().to_string());
        let missing: Vec<&str> = [
            (ETCD, etcd_pid),
            (APISERVER, apiserver_pid),
            (CONTROLLER_MANAGER, controller_manager_pid),
        ]
        .into_iter()
        .chain(has_node.then_some(("kubelet", kubelet_pid)))
        .filter_map(|(binary, pid)| pid.is_none().then_some(binary))
        .collect();
        let (healthy, detail) = if !missing.is_empty() {
            (false, format!("not running: {}", missing.join(", ")))
        } else {
            match std::fs::read_to_string(&kubeconfig) {
                Err(e) => (false, format!("reading {}: {e}", kubeconfig.display())),
                Ok(yaml) => match probe_once(yaml) {
                    Ok(()) => (true, String::new()),
                    Err(e) => (false, e),
                },
            }
        };
        Ok(DetachedStatus {
            etcd_pid,
            apiserver_pid,
            controller_manager_pid,
            kubelet_pid,
            node_registered: has_node,
            healthy,
            detail,
            server,
            kubeconfig,
        })
    }
}

fn node_dir(state_dir: &Path) -> PathBuf {
    let state_dir = state_dir
        .canonicalize()
        .unwrap_or_else(|_| state_dir.to_path_buf());
    state_dir.join(NODE_DIR)
}

fn pid_file(state_dir: &Path, binary: &str) -> PathBuf {
    state_dir.join(format!("{binary}.pid"))
}

fn remove_state_files(state_dir: &Path) -> Result<()> {
    let pid_files = BINARIES
        .iter()
        .chain(NODE_BINARIES.iter())
        .map(|binary| pid_file(state_dir, binary));
    for path in pid_files.chain([state_dir.join(SERVER_FILE)]) {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err("removing", path)(e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The pid recorded in `binary`'s pid file, if that process is alive and still runs `binary`
/// (guards against the pid having been reused by an unrelated process since).
fn live_pid(state_dir: &Path, binary: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file(state_dir, binary))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next()?;
    let runs_binary = Path::new(std::str::from_utf8(argv0).ok()?)
        .file_name()
        .is_some_and(|n| n == binary);
    (runs_binary && is_alive(pid)).then_some(pid)
}

/// Alive means present in /proc and not a zombie: a detached process whose parent is gone is
/// reaped by init, but one started by this very process stays a zombie until we exit.
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: `pid (comm) state ...`; comm may contain spaces or parens, so split at the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Sends `signal` via the shell's `kill` builtin (std has no kill-by-pid, and we forbid unsafe).
fn signal(pid: u32, signal: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            "kill -s \"$1\" \"$2\" 2>/dev/null",
            "mcall-kill",
            signal,
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    !is_alive(pid)
}

fn terminate(state_dir: &Path, pid: u32, binary: &str) -> Result<()> {
    signal(pid, "TERM");
    if wait_exit(pid, Duration::from_secs(10)) {
        return Ok(());
    }
    signal(pid, "KILL");
    if wait_exit(pid, Duration::from_secs(5)) {
        return Ok(());
    }
    Err(detached_err(
        state_dir,
        format!("{binary} (pid {pid}) is still alive after SIGTERM and SIGKILL"),
    ))
}

/// One readiness probe (bounded to 5 s) on its own thread and runtime, so callers need no
/// runtime and may even be inside one.
fn probe_once(kubeconfig_yaml: String) -> std::result::Result<(), String> {
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("building a tokio runtime: {e}"))?;
        rt.block_on(async {
            let client = client::client_from_yaml(&kubeconfig_yaml, "admin")
                .await
                .map_err(|e| e.to_string())?;
            tokio::time::timeout(Duration::from_secs(5), client::probe_ready(&client))
                .await
                .map_err(|_| "the readiness probe took over 5 s".to_string())?
        })
    });
    handle
        .join()
        .map_err(|_| "the readiness probe thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_of_dead_or_foreign_processes_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(live_pid(dir.path(), ETCD), None);
        // Our own pid is alive but is not etcd.
        std::fs::write(pid_file(dir.path(), ETCD), std::process::id().to_string()).unwrap();
        assert_eq!(live_pid(dir.path(), ETCD), None);
        assert!(is_alive(std::process::id()));
    }

    #[test]
    fn stop_with_nothing_running_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!ControlPlane::stop_detached(dir.path()).unwrap());
        let status = ControlPlane::status_detached(dir.path()).unwrap();
        assert!(!status.is_running() && !status.healthy);
    }
}
