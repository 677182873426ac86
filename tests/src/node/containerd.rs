//! containerd (Debian's 1.6, with runc) as the node's container runtime, and the CNI bridge
//! network its CRI plugin sets pods up with.

use std::path::{Path, PathBuf};

use super::{BRIDGE, NodeLayout, POD_CIDR};
use crate::{Result, io_err};

/// Where Debian's `containernetworking-plugins` puts the CNI plugins.
pub(crate) const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// containerd's configuration (version 2 format, as 1.6 reads it). Everything lives under the
/// node's directory: root, state, socket, runc's container records, network namespaces (so
/// the teardown finds every mount under one path) and CNI's IP allocations.
///
/// - `restrict_oom_score_adj`: kubelet asks for negative OOM scores, which this VM refuses
///   (no CAP_SYS_RESOURCE); without it every sandbox fails with `runc create failed ... can't
///   get final child's PID from pipe`.
/// - `SystemdCgroup = false`: no systemd here; kubelet uses the `cgroupfs` driver too.
/// - `sandbox_image`: the pause image imported at start (there is no registry to pull from).
/// - Streaming (logs, exec) on loopback, on a port the kernel picks.
pub(crate) fn config(layout: &NodeLayout, sandbox_image: &str) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc_root}"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"#,
        root = layout.containerd_root().display(),
        state = layout.containerd_state().display(),
        socket = layout.containerd_socket().display(),
        opt = layout.dir.join("containerd-opt").display(),
        runc_root = layout.runc_root().display(),
        cni_bin = CNI_BIN_DIR,
        cni_conf = layout.cni_conf_dir().display(),
    )
}

/// The pod network: one bridge, addresses from `POD_CIDR` (allocations kept in the node's
/// directory), the bridge as the pods' gateway, and no masquerading: pod traffic never leaves
/// this machine (the egress guard in `host.rs` rejects what would).
pub(crate) fn cni_config(layout: &NodeLayout) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "mcall",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": layout.dir.join("cni-ipam").display().to_string(),
                    "ranges": [[{ "subnet": POD_CIDR }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            },
            { "type": "loopback" }
        ]
    })
    .to_string()
}

/// Writes containerd's and CNI's configuration; returns containerd's config file.
pub(crate) fn write_configs(layout: &NodeLayout, sandbox_image: &str) -> Result<PathBuf> {
    let conf_dir = layout.cni_conf_dir();
    std::fs::create_dir_all(&conf_dir).map_err(io_err("creating", &conf_dir))?;
    let cni = conf_dir.join("10-mcall.conflist");
    std::fs::write(&cni, cni_config(layout)).map_err(io_err("writing", &cni))?;
    let path = layout.dir.join("containerd.toml");
    std::fs::write(&path, config(layout, sandbox_image)).map_err(io_err("writing", &path))?;
    Ok(path)
}

/// `ctr` against this node's containerd, in the namespace the CRI plugin (and so kubelet) uses.
pub(crate) fn ctr(socket: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("ctr");
    cmd.arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io"]);
    cmd
}
