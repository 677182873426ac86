//! `cargo xtask up|down|status`: a local cluster for humans (etcd, kube-apiserver,
//! kube-controller-manager and, unless `--no-node`, a node: containerd, kubelet, kube-proxy,
//! kube-scheduler, CoreDNS), kept in `<root>/target/mcall` and running until `down`. Tests do
//! not use this; they start their own through `mcall_tests::ControlPlane`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mcall_tests::{ControlPlane, DetachedStatus};

/// Where the detached control plane keeps its state (PKI, etcd data, logs, pid files,
/// kubeconfig). Under `target/` so `cargo clean` and .gitignore cover it.
fn state_dir(root: &Path) -> PathBuf {
    root.join("target").join("mcall")
}

/// The local cluster's admin kubeconfig.
pub fn kubeconfig(root: &Path) -> PathBuf {
    state_dir(root).join("kubeconfig")
}

/// The local node's containerd socket, if the local cluster has a node.
pub fn containerd_socket(root: &Path) -> Option<PathBuf> {
    let socket = state_dir(root).join("node").join("containerd.sock");
    socket.exists().then_some(socket)
}

/// Starts the control plane (with a local node unless `no_node`) unless it already runs and is
/// healthy; prints how to use it.
pub fn up(root: &Path, no_node: bool) -> Result<()> {
    let dir = state_dir(root);
    let status = ControlPlane::status_detached(&dir)
        .with_context(|| format!("checking the control plane in {}", dir.display()))?;
    if status.healthy {
        // Only the export line goes to stdout, so `eval "$(cargo xtask up)"` works.
        eprintln!(
            "control plane already running at {} ({})",
            status.server.as_deref().unwrap_or("?"),
            pids(&status),
        );
        println!("export KUBECONFIG={}", status.kubeconfig.display());
        return Ok(());
    }
    if status.is_running() {
        // Half up (one process died) or not answering: replace it rather than guess.
        eprintln!(
            "control plane in {} is running but unhealthy ({}); restarting it",
            dir.display(),
            status.detail
        );
        ControlPlane::stop_detached(&dir).context("stopping the unhealthy control plane")?;
    }
    let what = match no_node {
        true => "etcd, kube-apiserver and kube-controller-manager",
        false => {
            "etcd, kube-apiserver, kube-controller-manager and a node (containerd, kubelet, kube-proxy, kube-scheduler, CoreDNS)"
        }
    };
    eprintln!("starting {what} in {} ...", dir.display());
    let info =
        ControlPlane::start_detached(&dir, !no_node).context("starting the control plane")?;
    eprintln!(
        "control plane ready at {} in {:.1?} (etcd pid {}, kube-apiserver pid {}, \
         kube-controller-manager pid {}; logs {}, {})",
        info.server,
        info.startup_time,
        info.etcd_pid,
        info.apiserver_pid,
        info.controller_manager_pid,
        info.apiserver_log.display(),
        info.controller_manager_log.display(),
    );
    if let (Some(node_dir), Some(took)) = (&info.node_dir, info.node_startup_time) {
        eprintln!(
            "node {} Ready in {took:.1?} (logs in {})",
            mcall_tests::node::NODE_NAME,
            node_dir.display()
        );
    }
    eprintln!("stop it with `cargo xtask down`; use it with:");
    println!("export KUBECONFIG={}", info.kubeconfig.display());
    Ok(())
}

/// Stops the control plane; fine when nothing runs.
pub fn down(root: &Path) -> Result<()> {
    crate::demo_operator::stop(root)?;
    let dir = state_dir(root);
    let stopped = ControlPlane::stop_detached(&dir)
        .with_context(|| format!("stopping the control plane in {}", dir.display()))?;
    if stopped {
        println!("control plane stopped");
    } else {
        println!("no control plane running (state dir {})", dir.display());
    }
    Ok(())
}

/// Reports whether the control plane runs and answers; an error when it runs but is unhealthy.
pub fn status(root: &Path) -> Result<()> {
    let dir = state_dir(root);
    let status = ControlPlane::status_detached(&dir)
        .with_context(|| format!("checking the control plane in {}", dir.display()))?;
    if !status.is_running() {
        println!("no control plane running (start one with `cargo xtask up`)");
        return Ok(());
    }
    println!(
        "{}, server {}",
        pids(&status),
        status.server.as_deref().unwrap_or("?")
    );
    anyhow::ensure!(
        status.healthy,
        "control plane is unhealthy: {}",
        status.detail
    );
    println!("healthy; export KUBECONFIG={}", status.kubeconfig.display());
    Ok(())
}

fn pids(status: &DetachedStatus) -> String {
    let pid = |pid: Option<u32>| pid.map_or_else(|| "-".to_string(), |p| p.to_string());
    format!(
        "etcd pid {}, kube-apiserver pid {}, kube-controller-manager pid {}, kubelet pid {}",
        pid(status.etcd_pid),
        pid(status.apiserver_pid),
        pid(status.controller_manager_pid),
        pid(status.kubelet_pid)
    )
}
