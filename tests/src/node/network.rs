//! The host side of the node's network: the node address, forwarding, and the guards that keep
//! pod traffic on this machine and the node's addresses unreachable from outside it.

use std::process::Command;

use super::{BRIDGE, CLUSTER_CIDR, EGRESS_CHAIN, INGRESS_CHAIN, NODE_IP, POD_CIDR, node_err};
use crate::pki::KUBERNETES_SERVICE_IP;
use crate::{Result, io_err};

/// The Service range (`--service-cluster-ip-range`), which kube-proxy routes.
const SERVICE_CIDR: &str = "10.96.0.0/24";

/// Prepares the host network: the node address on `lo`, IP forwarding (Service traffic between
/// pods is routed), bridged traffic through iptables (kube-proxy's DNAT of pod-to-pod Service
/// traffic), and the guards.
pub(crate) fn prepare() -> Result<()> {
    debug_assert!(KUBERNETES_SERVICE_IP.starts_with("10.96.0."));
    run(
        "ip",
        &["addr", "replace", &format!("{NODE_IP}/32"), "dev", "lo"],
    )?;
    write_sysctl("net/ipv4/ip_forward", "1")?;
    if !std::path::Path::new("/proc/sys/net/bridge").exists() {
        // Best effort: where the module cannot be loaded the write below names the problem.
        let _ = run("modprobe", &["br_netfilter"]);
    }
    write_sysctl("net/bridge/bridge-nf-call-iptables", "1")?;
    egress_guard()?;
    ingress_guard()
}

/// Pod traffic may go to other pods (out through the bridge) and to this machine (which is
/// not forwarding), nowhere else.
fn egress_guard() -> Result<()> {
    let _ = run("iptables", &["-w", "-N", EGRESS_CHAIN]);
    run("iptables", &["-w", "-F", EGRESS_CHAIN])?;
    let rules: [&[&str]; 2] = [
        &["-s", POD_CIDR, "-o", BRIDGE, "-j", "RETURN"],
        &["-s", POD_CIDR, "-j", "REJECT"],
    ];
    for rule in rules {
        let mut args = vec!["-w", "-A", EGRESS_CHAIN];
        args.extend_from_slice(rule);
        run("iptables", &args)?;
    }
    keep_egress_guard_first()
}

/// Puts the egress guard first in FORWARD again. kube-proxy inserts its jumps at the top when
/// it starts (and accepts established and masquerade-marked traffic there); called once it
/// has, the guard stays first: kube-proxy only re-inserts rules that are missing.
pub(crate) fn keep_egress_guard_first() -> Result<()> {
    while run("iptables", &["-w", "-D", "FORWARD", "-j", EGRESS_CHAIN]).is_ok() {}
    run(
        "iptables",
        &["-w", "-I", "FORWARD", "1", "-j", EGRESS_CHAIN],
    )?;
    Ok(())
}

/// The node address, the Service range and the pod range are reachable from this machine and
/// its pods only: packets for them arriving on any other interface are dropped before routing
/// (Linux accepts packets for a local address on any interface, and would forward to pods).
fn ingress_guard() -> Result<()> {
    let _ = run("iptables", &["-w", "-t", "raw", "-N", INGRESS_CHAIN]);
    run("iptables", &["-w", "-t", "raw", "-F", INGRESS_CHAIN])?;
    for interface in ["lo", BRIDGE, "veth+"] {
        run(
            "iptables",
            &[
                "-w",
                "-t",
                "raw",
                "-A",
                INGRESS_CHAIN,
                "-i",
                interface,
                "-j",
                "RETURN",
            ],
        )?;
    }
    for destination in [&format!("{NODE_IP}/32") as &str, SERVICE_CIDR, CLUSTER_CIDR] {
        run(
            "iptables",
            &[
                "-w",
                "-t",
                "raw",
                "-A",
                INGRESS_CHAIN,
                "-d",
                destination,
                "-j",
                "DROP",
            ],
        )?;
    }
    while run(
        "iptables",
        &["-w", "-t", "raw", "-D", "PREROUTING", "-j", INGRESS_CHAIN],
    )
    .is_ok()
    {}
    run(
        "iptables",
        &[
            "-w",
            "-t",
            "raw",
            "-I",
            "PREROUTING",
            "1",
            "-j",
            INGRESS_CHAIN,
        ],
    )?;
    Ok(())
}

fn write_sysctl(key: &str, value: &str) -> Result<()> {
    let path = std::path::Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).map_err(io_err("setting", &path))
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
