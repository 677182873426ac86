//! What a local node changes on the machine, and how that is undone.
//!
//! One node per machine: kubelet, kube-proxy and the CNI bridge own machine-wide state
//! (sysctls, iptables chains, cgroups under `kubepods`, the bridge, an address on `lo`). A
//! claim on the machine is a lock held by a small `sh` keeper outside our process group. The
//! keeper also guarantees the teardown: once its owner (the test process) is gone, it runs
//! `teardown.sh` and removes the node's directory, as the control plane's watchdog does for
//! etcd and kube-apiserver. Every change is recorded in a state file *before* it is made, in a
//! registry under `/run` (cleared at boot), so a node that was never torn down (its keeper
//! killed too) is cleaned up by the next claim.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{BRIDGE, EGRESS_CHAIN, NODE_IP, POD_CIDR, node_err};
use crate::{Result, io_err};

/// The machine-wide registry: the lock, the current node's state file and the teardown script.
const REGISTRY: &str = "/run/mcall-node";
const TEARDOWN: &str = include_str!("teardown.sh");

/// Kernel settings kubelet, kube-proxy or the node itself change; restored by the teardown.
const SYSCTLS: [&str; 8] = [
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
];

/// Directories outside the node's own that kubelet insists on; removed by the teardown only if
/// they did not exist before.
const MACHINE_DIRS: [&str; 3] = ["/var/lib/kubelet", "/var/log/containers", "/var/log/pods"];

/// The keeper: `$1` owner pid (0: none, keep the claim until killed), `$2` lock file, `$3`
/// teardown script, `$4` state file, `$5` node directory, `$6` seconds to wait for the lock.
/// INT/HUP/TERM are ignored so a terminal Ctrl-C cannot stop it before the teardown; children
/// run with the lock's descriptor closed so the lock ends with the keeper.
const KEEPER: &str = r#"
owner=$1; lock=$2; teardown=$3; state=$4; dir=$5; wait=$6
trap '' INT HUP TERM
exec 9>"$lock"
flock -w "$wait" 9 || { echo busy; exit 3; }
echo locked
if [ "$owner" = 0 ]; then
  while :; do sleep 3600 9>&-; done
fi
while kill -0 "$owner" 2>/dev/null; do sleep 0.5 9>&-; done
sh "$teardown" "$state" >"${state%/*}/teardown.log" 2>&1 9>&-
rm -f "$state"
rm -rf "$dir"
"#;

/// Who a claim is for: the teardown runs when this process is gone, or (`Detached`) only when
/// [`Claim::release`] is called by `cargo xtask down`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Owner {
    Process(u32),
    Detached,
}

/// This machine, claimed for one node.
#[derive(Debug)]
pub(crate) struct Claim {
    keeper: Option<Child>,
    state_file: PathBuf,
    teardown: PathBuf,
}

/// What the teardown needs to know about a node; written as the state file.
pub(crate) struct NodeState<'a> {
    pub node_dir: &'a Path,
    pub runc_root: &'a Path,
    pub containerd_socket: &'a Path,
    pub kube_proxy: &'a Path,
}

impl Claim {
    /// Takes the machine's node lock (waiting up to `wait` for another node to go), cleans up
    /// after a node that was never torn down, and records `state` before anything changes.
    pub fn acquire(owner: Owner, state: &NodeState<'_>, wait: Duration) -> Result<Claim> {
        let registry = Path::new(REGISTRY);
        std::fs::create_dir_all(registry).map_err(io_err("creating", registry))?;
        let teardown = registry.join("teardown.sh");
        std::fs::write(&teardown, TEARDOWN).map_err(io_err("writing", &teardown))?;
        let state_file = registry.join("node.env");
        let keeper = spawn_keeper(owner, registry, &teardown, &state_file, state, wait)?;
        let claim = Claim {
            keeper: Some(keeper),
            state_file,
            teardown,
        };
        if claim.state_file.exists() {
            eprintln!("[node] a previous local node was never torn down; tearing it down now");
            claim.teardown()?;
        }
        let mut env = format!(
            "NODE_DIR='{}'\nRUNC_ROOT='{}'\nCONTAINERD_SOCKET='{}'\nKUBE_PROXY='{}'\n\
             NODE_IP='{NODE_IP}'\nBRIDGE='{BRIDGE}'\nEGRESS_CHAIN='{EGRESS_CHAIN}'\n",
            state.node_dir.display(),
            state.runc_root.display(),
            state.containerd_socket.display(),
            state.kube_proxy.display(),
        );
        let sysctls = state.node_dir.join("sysctls.saved");
        env.push_str(&format!("SYSCTLS='{}'\n", sysctls.display()));
        let created: Vec<&str> = MACHINE_DIRS
            .into_iter()
            .filter(|d| !Path::new(d).exists())
            .collect();
        env.push_str(&format!("CREATED_DIRS='{}'\n", created.join(" ")));
        save_sysctls(&sysctls)?;
        std::fs::write(&claim.state_file, env).map_err(io_err("writing", &claim.state_file))?;
        Ok(claim)
    }

    /// Runs the teardown script on the recorded state and forgets the state.
    pub fn teardown(&self) -> Result<()> {
        let out = Command::new("sh")
            .arg(&self.teardown)
            .arg(&self.state_file)
            .output()
            .map_err(io_err("running", &self.teardown))?;
        if !out.status.success() {
            return Err(node_err(
                "tearing down the node",
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        let _ = std::fs::remove_file(&self.state_file);
        Ok(())
    }

    /// Leaves the keeper running on its own (a detached node, torn down by
    /// [`teardown_detached`]); returns its pid.
    pub fn detach(mut self) -> Option<u32> {
        self.keeper.take().map(|k| k.id())
    }
}

/// Dropping a claim tears the node down and gives up the machine (its processes must be gone
/// or going: the teardown kills what is left).
impl Drop for Claim {
    fn drop(&mut self) {
        let Some(mut keeper) = self.keeper.take() else {
            return;
        };
        if let Err(e) = self.teardown() {
            eprintln!("[node] {e}");
        }
        let _ = keeper.kill();
        let _ = keeper.wait();
    }
}

/// Tears down a detached node found through the registry, and stops its keeper (`keeper_pid`).
pub(crate) fn teardown_detached(keeper_pid: Option<u32>) -> Result<bool> {
    let registry = Path::new(REGISTRY);
    let state_file = registry.join("node.env");
    let teardown = registry.join("teardown.sh");
    let existed = state_file.exists();
    if existed {
        let claim = Claim {
            keeper: None,
            state_file,
            teardown,
        };
        claim.teardown()?;
    }
    if let Some(pid) = keeper_pid {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
    Ok(existed)
}

fn spawn_keeper(
    owner: Owner,
    registry: &Path,
    teardown: &Path,
    state_file: &Path,
    state: &NodeState<'_>,
    wait: Duration,
) -> Result<Child> {
    let owner = match owner {
        Owner::Process(pid) => pid,
        Owner::Detached => 0,
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(KEEPER)
        .arg("mcall-node-keeper")
        .arg(owner.to_string())
        .arg(registry.join("lock"))
        .arg(teardown)
        .arg(state_file)
        .arg(state.node_dir)
        .arg(wait.as_secs().max(1).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|source| crate::Error::Spawn {
            what: "the node's keeper",
            binary: "sh".into(),
            source,
        })?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(wait + Duration::from_secs(5)) {
        Ok(line) if line.trim() == "locked" => Ok(child),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let holder = std::fs::read_to_string(state_file).unwrap_or_default();
            Err(node_err(
                "claiming this machine for a local node",
                format!(
                    "another local node holds {}/lock ({}); stop it (`cargo xtask down`) or wait \
                     for its tests to end. Its state:\n{holder}",
                    registry.display(),
                    match other {
                        Ok(line) if line.trim() == "busy" => format!("waited {wait:?}"),
                        Ok(line) => format!("keeper said {line:?}"),
                        Err(_) => "the keeper did not answer".to_string(),
                    },
                ),
            ))
        }
    }
}

fn save_sysctls(path: &Path) -> Result<()> {
    let mut saved = String::new();
    for key in SYSCTLS {
        let file = Path::new("/proc/sys").join(key.replace('.', "/"));
        if let Ok(value) = std::fs::read_to_string(&file) {
            saved.push_str(&format!("{key} {}\n", value.trim()));
        }
    }
    std::fs::write(path, saved).map_err(io_err("writing", path))
}

/// Prepares the host network: the node address on `lo` (reachable from pods, never from
/// outside), IP forwarding (Service traffic between pods is routed), and the egress guard: pod
/// traffic may go to other pods and to this machine, and nowhere else.
pub(crate) fn prepare_network() -> Result<()> {
    run(
        "ip",
        &["addr", "replace", &format!("{NODE_IP}/32"), "dev", "lo"],
    )?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(io_err("enabling", "/proc/sys/net/ipv4/ip_forward"))?;
    let _ = run("iptables", &["-w", "-N", EGRESS_CHAIN]);
    run("iptables", &["-w", "-F", EGRESS_CHAIN])?;
    run(
        "iptables",
        &[
            "-w",
            "-A",
            EGRESS_CHAIN,
            "-s",
            POD_CIDR,
            "-o",
            BRIDGE,
            "-j",
            "RETURN",
        ],
    )?;
    run(
        "iptables",
        &["-w", "-A", EGRESS_CHAIN, "-s", POD_CIDR, "-j", "REJECT"],
    )?;
    run(
        "iptables",
        &["-w", "-I", "FORWARD", "1", "-j", EGRESS_CHAIN],
    )?;
    Ok(())
}

/// Runs a host command; fails with its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(io_err("running", program))?;
    if !out.status.success() {
        return Err(node_err(
            format!("{program} {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
