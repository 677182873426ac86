//! The machine, claimed for one node, and how what the node changed is undone.
//!
//! One node per machine: kubelet, kube-proxy and the CNI bridge own machine-wide state
//! (sysctls, iptables chains, cgroups under `kubepods`, the bridge, an address on `lo`). A
//! claim is a lock held by a small `sh` keeper outside our process group. The keeper also
//! guarantees the teardown: once its owner (the test process) is gone, it runs the teardown
//! script and removes the node's directory, as the control plane's watchdog does for etcd and
//! kube-apiserver. Every change is recorded in a state file *before* it is made, in a registry
//! under `/run` (cleared at boot), so a node that was never torn down (its keeper killed too)
//! is cleaned up by the next claim.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{BRIDGE, EGRESS_CHAIN, INGRESS_CHAIN, NODE_IP, node_err};
use crate::{Result, io_err};

/// The machine-wide registry: the lock, the keeper's pid, the current node's state file and
/// the teardown scripts.
const REGISTRY: &str = "/run/mcall-node";
const TEARDOWN: &str = include_str!("teardown.sh");
const STATE_FILE: &str = "node.env";
const KEEPER_PID: &str = "keeper.pid";

/// Kernel settings kubelet, kube-proxy or the node itself change, in the order the teardown
/// restores them: `accept_redirects` after `ip_forward`, whose change resets it.
const SYSCTLS: [&str; 12] = [
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.accept_redirects",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
];

/// Directories outside the node's own that its programs hard-code (kubelet: device plugins and
/// container log links; libcni: its result cache; containerd's shim: its sockets); removed by
/// the teardown only if they did not exist before.
const MACHINE_DIRS: [&str; 5] = [
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/run/containerd",
];

/// The keeper: `$1` owner pid (0: none, keep the claim until killed), `$2` registry, `$3` node
/// directory, `$4` seconds to wait for the lock. It records its pid once it holds the lock, so
/// `cargo xtask down` finds it whatever happened to the process that started it. INT/HUP/TERM
/// are ignored so a terminal Ctrl-C cannot stop it before the teardown; children run with the
/// lock's descriptor closed so the lock ends with the keeper.
const KEEPER: &str = r#"
owner=$1; registry=$2; dir=$3; wait=$4
trap '' INT HUP TERM
exec 9>"$registry/lock"
flock -w "$wait" 9 || { echo busy; exit 3; }
echo $$ >"$registry/keeper.pid"
echo locked
if [ "$owner" = 0 ]; then
  while :; do sleep 3600 9>&-; done
fi
while kill -0 "$owner" 2>/dev/null; do sleep 0.5 9>&-; done
state="$registry/node.env"
if [ -f "$state" ]; then
  sh -c '. "$1" && exec sh "$TEARDOWN" "$1"' teardown "$state" >"$registry/teardown.log" 2>&1 9>&-
fi
rm -f "$state" "$registry/keeper.pid"
rm -rf --one-file-system "$dir"
"#;

/// Who a claim is for: the teardown runs when this process is gone, or (`Detached`) only when
/// `cargo xtask down` calls [`teardown_detached`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Owner {
    Process(u32),
    Detached,
}

/// This machine, claimed for one node.
#[derive(Debug)]
pub(crate) struct Claim {
    keeper: Option<Child>,
}

/// What the teardown needs to know about a node; written as the state file.
pub(crate) struct NodeState<'a> {
    pub node_dir: &'a Path,
    pub runc_root: &'a Path,
    pub containerd_socket: &'a Path,
    pub kube_proxy: &'a Path,
}

fn registry() -> &'static Path {
    Path::new(REGISTRY)
}

impl Claim {
    /// Takes the machine's node lock (waiting up to `wait` for another node to go), cleans up
    /// after a node that was never torn down, and records `state` before anything changes.
    pub fn acquire(owner: Owner, state: &NodeState<'_>, wait: Duration) -> Result<Claim> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(registry())
            .map_err(io_err("creating", registry()))?;
        let keeper = spawn_keeper(owner, state.node_dir, wait)?;
        let claim = Claim {
            keeper: Some(keeper),
        };
        if registry().join(STATE_FILE).exists() {
            eprintln!("[node] a previous local node was never torn down; tearing it down now");
            run_teardown()?;
        }
        let teardown = write_teardown_script()?;
        let sysctls = state.node_dir.join("sysctls.saved");
        save_sysctls(&sysctls)?;
        write_state(state, &teardown, &sysctls)?;
        Ok(claim)
    }

    /// Runs the teardown on the recorded state and forgets the state.
    pub fn teardown(&self) -> Result<()> {
        run_teardown()
    }

    /// Leaves the keeper running on its own (a detached node, torn down by
    /// [`teardown_detached`]).
    pub fn detach(mut self) {
        self.keeper.take();
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
        let _ = std::fs::remove_file(registry().join(KEEPER_PID));
        let _ = keeper.kill();
        let _ = keeper.wait();
    }
}

/// The node directory of the node registered on this machine, if any.
pub(crate) fn registered_node_dir() -> Option<PathBuf> {
    let state = std::fs::read_to_string(registry().join(STATE_FILE)).ok()?;
    state
        .lines()
        .find_map(|line| line.strip_prefix("NODE_DIR="))
        .map(|value| PathBuf::from(unquote(value)))
}

/// Tears down the node registered on this machine if it is the one in `node_dir` (a detached
/// node: someone else's is left alone), stops its keeper and removes the directory. Returns
/// whether there was one.
pub(crate) fn teardown_detached(node_dir: &Path) -> Result<bool> {
    if registered_node_dir().as_deref() != Some(node_dir) {
        return Ok(false);
    }
    run_teardown()?;
    let keeper = registry().join(KEEPER_PID);
    if let Some(pid) = std::fs::read_to_string(&keeper)
        .ok()
        .map(|p| p.trim().to_owned())
    {
        // Only our keeper: the pid may have been reused since.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("mcall-node-keeper") {
            let _ = Command::new("sh")
                .args(["-c", "kill -9 \"$1\"", "mcall-kill", &pid])
                .status();
        }
        let _ = std::fs::remove_file(&keeper);
    }
    if node_dir.exists() {
        std::fs::remove_dir_all(node_dir).map_err(io_err("removing", node_dir))?;
    }
    Ok(true)
}

/// Runs the teardown script the state file names on the state file, then removes it.
fn run_teardown() -> Result<()> {
    let state = registry().join(STATE_FILE);
    if !state.exists() {
        return Ok(());
    }
    let out = Command::new("sh")
        .args(["-c", ". \"$1\" && exec sh \"$TEARDOWN\" \"$1\"", "teardown"])
        .arg(&state)
        .output()
        .map_err(io_err("running the teardown of", &state))?;
    let log = registry().join("teardown.log");
    let _ = std::fs::write(&log, [out.stdout.as_slice(), &out.stderr].concat());
    if !out.status.success() {
        return Err(node_err(
            "tearing down the node",
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    std::fs::remove_file(&state).map_err(io_err("removing", &state))
}

/// Writes this version's teardown script under a name of its own, atomically: a keeper of
/// another checkout may be running another version's right now.
fn write_teardown_script() -> Result<PathBuf> {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(TEARDOWN.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    let path = registry().join(format!("teardown-{hex}.sh"));
    let temp = registry().join(format!(".teardown-{hex}.{}", std::process::id()));
    std::fs::write(&temp, TEARDOWN).map_err(io_err("writing", &temp))?;
    std::fs::rename(&temp, &path).map_err(io_err("renaming", &temp))?;
    Ok(path)
}

fn write_state(state: &NodeState<'_>, teardown: &Path, sysctls: &Path) -> Result<()> {
    let created: Vec<&str> = MACHINE_DIRS
        .into_iter()
        .filter(|d| !Path::new(d).exists())
        .collect();
    let vars = [
        ("NODE_DIR", state.node_dir.display().to_string()),
        ("RUNC_ROOT", state.runc_root.display().to_string()),
        (
            "CONTAINERD_SOCKET",
            state.containerd_socket.display().to_string(),
        ),
        ("KUBE_PROXY", state.kube_proxy.display().to_string()),
        ("TEARDOWN", teardown.display().to_string()),
        ("SYSCTLS", sysctls.display().to_string()),
        ("NODE_IP", NODE_IP.to_string()),
        ("BRIDGE", BRIDGE.to_string()),
        ("EGRESS_CHAIN", EGRESS_CHAIN.to_string()),
        ("INGRESS_CHAIN", INGRESS_CHAIN.to_string()),
        ("CREATED_DIRS", created.join(" ")),
    ];
    let env: String = vars
        .iter()
        .map(|(key, value)| format!("{key}={}\n", quote(value)))
        .collect();
    let path = registry().join(STATE_FILE);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("writing", &path))?;
    file.write_all(env.as_bytes())
        .map_err(io_err("writing", &path))
}

/// `value` as one single-quoted shell word (root sources the state file).
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The inverse of [`quote`].
fn unquote(word: &str) -> String {
    let inner = word
        .strip_prefix('\'')
        .and_then(|w| w.strip_suffix('\''))
        .unwrap_or(word);
    inner.replace(r"'\''", "'")
}

fn spawn_keeper(owner: Owner, node_dir: &Path, wait: Duration) -> Result<Child> {
    let owner = match owner {
        Owner::Process(pid) => pid,
        Owner::Detached => 0,
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(KEEPER)
        .arg("mcall-node-keeper")
        .arg(owner.to_string())
        .arg(registry())
        .arg(node_dir)
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
    let answer = rx.recv_timeout(wait + Duration::from_secs(5));
    if matches!(&answer, Ok(line) if line.trim() == "locked") {
        return Ok(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    let why = match answer {
        Ok(line) if line.trim() == "busy" => format!("waited {wait:?}"),
        Ok(line) => format!("the keeper said {line:?}"),
        Err(_) => "the keeper did not answer".to_string(),
    };
    let holder =
        registered_node_dir().map_or_else(|| "unknown".to_string(), |d| d.display().to_string());
    Err(node_err(
        "claiming this machine for a local node",
        format!(
            "another local node (in {holder}) holds {REGISTRY}/lock ({why}); stop it with \
             `cargo xtask down` in its checkout, or wait for its tests to end"
        ),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_values_survive_quoting() {
        for value in ["/tmp/plain", "/tmp/it's here", "a'b'c", ""] {
            assert_eq!(unquote(&quote(value)), value);
        }
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
