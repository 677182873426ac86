//! A real single-node cluster on the local plane: containerd + runc with a CNI bridge, a
//! kubelet registered as a Node, kube-proxy, kube-scheduler and CoreDNS.
//!
//! Opt in with [`crate::ControlPlaneOptions::node`]. The plane then also differs where a real
//! cluster does: kube-apiserver serves on the node address ([`NODE_IP`], on `lo`: reachable
//! from pods, never from outside the machine) with the Node authorizer, NodeRestriction and
//! ServiceAccount admission, and kube-controller-manager runs the controllers pods need
//! (Deployments, ReplicaSets, Jobs, ServiceAccounts, EndpointSlices, disruption budgets).
//!
//! Pods reach the API server exactly as in a real cluster: the `kubernetes` Service
//! (10.96.0.1:443, routed by kube-proxy to the node address) with their ServiceAccount token,
//! and resolve `<service>.<namespace>.svc.cluster.local` through CoreDNS behind the `kube-dns`
//! Service. Pod traffic stays on this machine: the bridge does not masquerade and an egress
//! guard rejects anything bound elsewhere.
//!
//! One node per machine ([`claim`]): a lock serializes them, and a teardown that runs even when
//! the owner dies restores what the node changed.

mod claim;
mod containerd;
mod kubelet;
mod network;
mod processes;
mod services;
mod start;

use std::path::{Path, PathBuf};

pub(crate) use claim::{Claim, Owner, registered_node_dir, teardown_detached};
pub(crate) use start::{NodeLaunch, PlaneAccess, prepare, start};

use crate::Error;
use crate::image::{self, ImageArchive};

/// The node's name.
pub const NODE_NAME: &str = "mcall-node";
/// The node's name and address, for its certificates.
pub(crate) const NODE_NAMES: crate::pki::NodeNames<'static> = crate::pki::NodeNames {
    name: NODE_NAME,
    address: NODE_IP,
};
/// The node's address: on `lo`, so it is this machine's own, reachable from the pods through
/// the bridge and from nowhere else.
pub const NODE_IP: &str = "10.201.0.1";
/// The pods' addresses (the bridge's range).
pub const POD_CIDR: &str = "10.244.0.0/24";
/// What kube-proxy treats as cluster-internal traffic.
pub(crate) const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The `kube-dns` Service's cluster IP, kubelet's `clusterDNS`.
pub const DNS_SERVICE_IP: &str = "10.96.0.10";
pub(crate) const CLUSTER_DOMAIN: &str = "cluster.local";
/// The CNI bridge.
pub(crate) const BRIDGE: &str = "mcall-br0";
/// The iptables chain (filter FORWARD) that keeps pod traffic on this machine.
pub(crate) const EGRESS_CHAIN: &str = "MCALL-NODE-EGRESS";
/// The iptables chain (raw PREROUTING) that keeps the node's addresses unreachable from
/// outside this machine.
pub(crate) const INGRESS_CHAIN: &str = "MCALL-NODE-INGRESS";

/// The node's files, under its own directory (not the plane's: the plane's watchdog removes
/// its directory at once, while the node's must outlive the unmounting).
#[derive(Debug, Clone)]
pub(crate) struct NodeLayout {
    pub dir: PathBuf,
    pub pki: NodePaths,
}

/// Certificate files the node's processes read.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodePaths {
    pub ca_cert: PathBuf,
    pub kubelet_serving_cert: PathBuf,
    pub kubelet_serving_key: PathBuf,
}

impl NodeLayout {
    /// The layout of `dir`, certificates not yet known (they are made after the claim).
    pub fn new(dir: PathBuf) -> NodeLayout {
        NodeLayout {
            dir,
            pki: NodePaths::default(),
        }
    }
    pub fn containerd_root(&self) -> PathBuf {
        self.dir.join("containerd")
    }
    pub fn containerd_state(&self) -> PathBuf {
        self.dir.join("containerd-state")
    }
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    pub fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }
    pub fn kubeconfig(&self, component: &str) -> PathBuf {
        self.dir.join(format!("{component}.kubeconfig"))
    }
    pub fn log(&self, component: &str) -> PathBuf {
        self.dir.join(format!("{component}.log"))
    }
    pub fn pid_file(&self, component: &str) -> PathBuf {
        self.dir.join("pids").join(component)
    }
}

/// Ports of the node's processes, picked free at start (one node per machine, but the
/// machine may run other things on the usual 10248-10259).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    pub kubelet: u16,
    pub kubelet_healthz: u16,
    pub proxy_healthz: u16,
    pub proxy_metrics: u16,
    pub scheduler: u16,
    pub dns: u16,
    pub dns_health: u16,
    pub dns_ready: u16,
}

impl Ports {
    /// Free ports, each on the address its process binds (kubelet and CoreDNS serve on the node
    /// address, the health endpoints on loopback; CoreDNS needs the port for UDP too). All are
    /// held until all are picked, so none is handed out twice.
    fn pick() -> crate::Result<Ports> {
        let node: std::net::Ipv4Addr = NODE_IP.parse().expect("a valid address");
        let loopback = std::net::Ipv4Addr::LOCALHOST;
        let mut held = Vec::new();
        let mut port = |ip: std::net::Ipv4Addr, udp: bool| -> crate::Result<u16> {
            loop {
                let tcp = std::net::TcpListener::bind((ip, 0)).map_err(Error::PickPort)?;
                let port = tcp.local_addr().map_err(Error::PickPort)?.port();
                held.push(tcp);
                if !udp || std::net::UdpSocket::bind((ip, port)).is_ok() {
                    return Ok(port);
                }
            }
        };
        Ok(Ports {
            kubelet: port(node, false)?,
            kubelet_healthz: port(loopback, false)?,
            proxy_healthz: port(loopback, false)?,
            proxy_metrics: port(loopback, false)?,
            scheduler: port(loopback, false)?,
            dns: port(node, true)?,
            dns_health: port(loopback, false)?,
            dns_ready: port(loopback, false)?,
        })
    }
}

pub(crate) fn node_err(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Node {
        what: what.into(),
        reason: reason.into(),
    }
}

/// The sandbox ("pause") image for the node's containerd: the tools' static `pause` binary,
/// written as an archive into `dir`.
pub(crate) fn sandbox_image(bin_dir: &Path, dir: &Path) -> crate::Result<ImageArchive> {
    let recipe = image::pause_recipe(&image::discover_pause(&bin_dir.join("pause"))?);
    let built = image::Image::build(&recipe, &image::Platform::host())?;
    image::write_archive_file(&built, &dir.join("pause.tar"))
}

/// Imports an image archive into the node's containerd (at `socket`), where kubelet finds it;
/// nothing to do when it is there with the same image ID.
pub fn import_image(socket: &Path, archive: &ImageArchive) -> crate::Result<()> {
    image::Containerd::new(socket).ensure(archive).map(drop)
}
