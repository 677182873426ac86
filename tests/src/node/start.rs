//! Bringing the node up: [`prepare`] claims the machine and its network before kube-apiserver
//! starts (it serves on the node address), [`start`] runs the node's processes once the plane
//! is ready and waits until the Node is Ready and its services answer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::claim::{Claim, NodeState, Owner};
use super::network;
use super::processes::{NodeProcesses, http_ok};
use super::{
    NODE_IP, NODE_NAME, NodeLayout, Ports, containerd, import_image, kubelet, node_err, services,
};
use crate::client::{self, Credentials};
use crate::image::ImageArchive;
use crate::pki::{Identity, NodePki};
use crate::{Result, io_err};

/// A node that is up.
#[derive(Debug)]
pub(crate) struct NodeLaunch {
    pub layout: NodeLayout,
    // Declared before the claim: fields drop in order, so the processes die before the
    // teardown runs.
    pub procs: NodeProcesses,
    pub claim: Claim,
    /// Wall time from the first node process to a Ready node with its services answering.
    pub startup: Duration,
}

impl NodeLaunch {
    /// Leaves the node running after this value is gone (a detached plane): the processes
    /// and the keeper's claim stay.
    pub fn detach(self) {
        let NodeLaunch { procs, claim, .. } = self;
        procs.detach();
        claim.detach();
    }
}

/// What the node needs of the plane.
pub(crate) struct PlaneAccess<'a> {
    pub server: &'a str,
    pub ca_pem: &'a str,
    pub admin_kubeconfig: &'a Path,
    pub bin_dir: &'a Path,
}

/// Claims the machine (waiting up to `wait` for another node) and prepares the host network.
pub(crate) fn prepare(owner: Owner, dir: &Path, bin_dir: &Path, wait: Duration) -> Result<Claim> {
    std::fs::create_dir_all(dir).map_err(io_err("creating the node directory", dir))?;
    let layout = NodeLayout::new(dir.to_path_buf());
    let state = NodeState {
        node_dir: &layout.dir,
        runc_root: &layout.runc_root(),
        containerd_socket: &layout.containerd_socket(),
        kube_proxy: &bin_dir.join("kube-proxy"),
    };
    let claim = Claim::acquire(owner, &state, wait)?;
    // On failure the claim's drop undoes what was done.
    network::prepare()?;
    Ok(claim)
}

/// Starts containerd, kubelet, kube-proxy, kube-scheduler and CoreDNS. On failure the
/// processes are killed and the claim's drop tears the node down.
pub(crate) fn start(
    claim: Claim,
    layout: NodeLayout,
    plane: &PlaneAccess<'_>,
    pki: &NodePki,
    sandbox: &ImageArchive,
    timeout: Duration,
) -> Result<NodeLaunch> {
    let started = Instant::now();
    let mut procs = NodeProcesses::default();
    start_processes(&mut procs, &layout, plane, pki, sandbox, timeout)?;
    Ok(NodeLaunch {
        layout,
        procs,
        claim,
        startup: started.elapsed(),
    })
}

fn start_processes(
    procs: &mut NodeProcesses,
    layout: &NodeLayout,
    plane: &PlaneAccess<'_>,
    pki: &NodePki,
    sandbox: &ImageArchive,
    timeout: Duration,
) -> Result<()> {
    let ports = Ports::pick()?;
    for (component, identity) in [
        ("kubelet", &pki.kubelet),
        ("kube-proxy", &pki.proxy),
        ("kube-scheduler", &pki.scheduler),
        ("coredns", &pki.dns),
    ] {
        write_kubeconfig(layout, plane, component, identity)?;
    }
    start_containerd(procs, layout, sandbox, timeout)?;
    start_kubelet(procs, layout, plane.bin_dir, &ports)?;
    let bin = |name: &str| plane.bin_dir.join(name);

    let proxy_config = write(
        layout,
        "kube-proxy.yaml",
        &services::proxy_config(layout, &ports),
    )?;
    procs.spawn(
        layout,
        "kube-proxy",
        &bin("kube-proxy"),
        &[format!("--config={}", proxy_config.display())],
    )?;
    procs.spawn(
        layout,
        "kube-scheduler",
        &bin("kube-scheduler"),
        &[
            format!(
                "--kubeconfig={}",
                layout.kubeconfig("kube-scheduler").display()
            ),
            "--leader-elect=false".to_string(),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={}", ports.scheduler),
            "--profiling=false".to_string(),
        ],
    )?;
    kubectl_apply(plane, &services::dns_objects(&ports))?;
    let corefile = write(layout, "Corefile", &services::corefile(layout, &ports))?;
    procs.spawn(
        layout,
        "coredns",
        &bin("coredns"),
        &["-conf".to_string(), corefile.display().to_string()],
    )?;

    procs.wait_for(
        "the node (kubelet)",
        &layout.log("kubelet"),
        timeout,
        || node_ready(plane),
    )?;
    let proxy = format!("http://127.0.0.1:{}/healthz", ports.proxy_healthz);
    procs.wait_for("kube-proxy", &layout.log("kube-proxy"), timeout, || {
        http_ok(&proxy)
    })?;
    network::keep_egress_guard_first()?;
    let scheduler = format!("https://127.0.0.1:{}/healthz", ports.scheduler);
    procs.wait_for(
        "kube-scheduler",
        &layout.log("kube-scheduler"),
        timeout,
        || http_ok(&scheduler),
    )?;
    let dns = format!("http://127.0.0.1:{}/ready", ports.dns_ready);
    procs.wait_for("CoreDNS", &layout.log("coredns"), timeout, || http_ok(&dns))
}

fn start_containerd(
    procs: &mut NodeProcesses,
    layout: &NodeLayout,
    sandbox: &ImageArchive,
    timeout: Duration,
) -> Result<()> {
    let config = containerd::write_configs(layout, &sandbox.reference.to_string())?;
    procs.spawn(
        layout,
        "containerd",
        Path::new("containerd"),
        &[format!("--config={}", config.display())],
    )?;
    let socket = layout.containerd_socket();
    procs.wait_for("containerd", &layout.log("containerd"), timeout, || {
        let out = containerd::ctr(&socket)
            .arg("version")
            .output()
            .map_err(|e| format!("running ctr: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    })?;
    import_image(&socket, sandbox)
}

fn start_kubelet(
    procs: &mut NodeProcesses,
    layout: &NodeLayout,
    bin_dir: &Path,
    ports: &Ports,
) -> Result<()> {
    write(layout, "resolv.conf", "")?;
    let config = write(layout, "kubelet.yaml", &kubelet::config(layout, ports))?;
    procs.spawn(
        layout,
        "kubelet",
        &bin_dir.join("kubelet"),
        &[
            format!("--config={}", config.display()),
            format!("--kubeconfig={}", layout.kubeconfig("kubelet").display()),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={NODE_IP}"),
            format!("--root-dir={}", layout.dir.join("kubelet").display()),
            format!("--cert-dir={}", layout.dir.join("kubelet-pki").display()),
            "--v=1".to_string(),
        ],
    )
}

fn write_kubeconfig(
    layout: &NodeLayout,
    plane: &PlaneAccess<'_>,
    component: &str,
    identity: &Identity,
) -> Result<()> {
    let yaml = client::render_kubeconfig(
        plane.server,
        plane.ca_pem,
        &identity.user,
        Credentials::ClientCert {
            cert_pem: &identity.cert_pem,
            key_pem: &identity.key_pem,
        },
    )?;
    let path = layout.kubeconfig(component);
    crate::write_private(&path, &yaml)
}

fn write(layout: &NodeLayout, name: &str, content: &str) -> Result<PathBuf> {
    let path = layout.dir.join(name);
    std::fs::write(&path, content).map_err(io_err("writing", &path))?;
    Ok(path)
}

fn kubectl(plane: &PlaneAccess<'_>) -> std::process::Command {
    let mut cmd = std::process::Command::new(plane.bin_dir.join("kubectl"));
    cmd.arg("--kubeconfig").arg(plane.admin_kubeconfig);
    cmd
}

fn kubectl_apply(plane: &PlaneAccess<'_>, manifests: &str) -> Result<()> {
    let mut apply = kubectl(plane);
    apply.args(["apply", "-f", "-"]);
    let out = crate::run_with_stdin(apply, manifests.as_bytes())
        .map_err(io_err("running", plane.bin_dir.join("kubectl")))?;
    if !out.status.success() {
        return Err(node_err(
            "applying the node's objects",
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// The Node exists and its Ready condition is True.
fn node_ready(plane: &PlaneAccess<'_>) -> std::result::Result<(), String> {
    let out = kubectl(plane)
        .args(["get", "node", NODE_NAME, "-o"])
        .arg(r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#)
        .output()
        .map_err(|e| format!("running kubectl: {e}"))?;
    let status = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && status.trim() == "True" {
        Ok(())
    } else {
        Err(format!(
            "node {NODE_NAME} Ready={:?} {}",
            status.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
