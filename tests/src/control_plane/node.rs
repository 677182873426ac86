//! The parts of a control plane that concern its node ([`crate::node`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::{ControlPlane, ControlPlaneOptions, chart_crds, shared_plane};
use crate::node::{self, NodeLaunch};
use crate::{Error, Result, pki};

impl ControlPlane {
    /// The plane with a node ([`ControlPlaneOptions::node`]) shared by all tests of this test
    /// binary, started on first use, with the chart's CRDs. Needs root.
    pub fn shared_with_node() -> &'static ControlPlane {
        static SHARED: OnceLock<std::result::Result<ControlPlane, String>> = OnceLock::new();
        let opts = ControlPlaneOptions {
            controller_manager: true,
            node: true,
            crds: vec![chart_crds()],
            ..Default::default()
        };
        shared_plane(&SHARED, opts)
    }

    /// The node's containerd socket, if the plane has a node.
    pub fn node_containerd_socket(&self) -> Option<PathBuf> {
        self.node.as_ref().map(|n| n.layout.containerd_socket())
    }

    /// The node's directory (its logs: `kubelet.log`, `containerd.log`, ...), if it has one.
    pub fn node_dir(&self) -> Option<&Path> {
        self.node.as_ref().map(|n| n.layout.dir.as_path())
    }

    /// `(name, pid)` of the node's processes (containerd, kubelet, kube-proxy, kube-scheduler,
    /// CoreDNS), empty without a node.
    pub fn node_pids(&self) -> Vec<(&'static str, u32)> {
        self.node
            .as_ref()
            .map(|n| n.procs.pids())
            .unwrap_or_default()
    }

    /// Wall time from the node's first process to a Ready node with its services answering.
    pub fn node_startup_time(&self) -> Option<Duration> {
        self.node.as_ref().map(|n| n.startup)
    }

    /// Imports an image archive into the node's containerd, where kubelet finds it.
    pub fn import_image(&self, archive: &crate::image::ImageArchive) -> Result<()> {
        let socket = self.node_containerd_socket().ok_or_else(|| Error::Node {
            what: "importing an image".into(),
            reason: "this control plane has no node (ControlPlaneOptions::node)".into(),
        })?;
        node::import_image(&socket, archive)
    }
}

/// Starts the node's processes on the ready plane.
#[allow(clippy::too_many_arguments)]
pub(super) fn start_node(
    bin_dir: &Path,
    server: &str,
    kubeconfig: &Path,
    pki: &pki::Pki,
    node_pki: &pki::NodePki,
    claim: node::Claim,
    dir: &Path,
    opts: &ControlPlaneOptions,
) -> Result<NodeLaunch> {
    let layout = node::NodeLayout {
        dir: dir.to_path_buf(),
        pki: node::NodePaths {
            ca_cert: pki.ca_cert.clone(),
            kubelet_serving_cert: node_pki.kubelet_serving_cert.clone(),
            kubelet_serving_key: node_pki.kubelet_serving_key.clone(),
        },
    };
    let plane = node::PlaneAccess {
        server,
        ca_pem: &pki.ca_pem,
        admin_kubeconfig: kubeconfig,
        bin_dir,
    };
    let sandbox = node::sandbox_image(bin_dir, dir)?;
    node::start(
        claim,
        layout,
        &plane,
        node_pki,
        &sandbox,
        opts.ready_timeout,
    )
}
