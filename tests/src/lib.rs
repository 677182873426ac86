//! Test harness for mcall: a real, throwaway Kubernetes control plane (etcd + kube-apiserver,
//! optionally kube-controller-manager) built from pinned sources by `xtask/tools/build-tools.sh`.
//!
//! There is no cluster and no container engine on the machines this project runs on, so
//! integration tests start their own control plane: [`ControlPlane::shared`] gives every test in
//! a test binary the same plane (started once, ~seconds), [`create_test_namespace`] isolates
//! tests from each other, and [`ControlPlane::admin_client`] /
//! [`ControlPlane::service_account_client`] hand out clients. Processes are killed on drop and,
//! for the never-dropped shared plane, by a watchdog once the test process is gone.
//!
//! # Garbage collection and namespace deletion
//!
//! Without a controller manager nothing acts on `ownerReferences` and a deleted namespace stays
//! Terminating forever. Tests that need either use a plane with kube-controller-manager (its
//! garbage collector and namespace controller only; 0.2-0.3 s more to start):
//!
//! ```no_run
//! # use mcall_tests::{ControlPlane, ControlPlaneOptions};
//! // One per test binary, with the chart's CRDs installed before the controller manager starts:
//! let plane = ControlPlane::shared_with_controller_manager();
//! // Or an owned one:
//! let plane = ControlPlane::start(ControlPlaneOptions {
//!     controller_manager: true,
//!     ..Default::default()
//! })?;
//! # Ok::<(), mcall_tests::Error>(())
//! ```
//!
//! Wait for the effects by polling with a deadline: dependents go within about a second, a
//! namespace a little over 5 s after its deletion (the namespace controller waits 5 s before it
//! starts). The garbage collector only knows the kinds it discovered at start, and rediscovers
//! every 30 s: install CRDs through [`ControlPlaneOptions::crds`], not after the start, or the
//! first collection involving their objects can take 30 s or more.
//!
//! # A node
//!
//! Tests that run pods (the chart, the operator in its pod) ask for a plane with a node:
//! containerd + runc with a CNI bridge, kubelet, kube-proxy, kube-scheduler and CoreDNS
//! ([`node`]; root only, one per machine):
//!
//! ```no_run
//! # use mcall_tests::ControlPlane;
//! let plane = ControlPlane::shared_with_node();
//! // Images come from `image` as archives and are imported; there is no registry.
//! ```
//!
//! Humans get the same plane, with the controller manager and (unless `--no-node`) a node, as
//! long-running processes via [`ControlPlane::start_detached`] (used by `cargo xtask
//! up|down|status`).
//!
//! # Images
//!
//! [`image`] builds the operator, shell and pause images as docker-archive tars without a
//! container engine, imports them into a containerd with `ctr`, and starts private containerds
//! for tests ([`image::TestContainerd`]); `cargo xtask image` drives it.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod client;
mod control_plane;
mod controller_manager;
mod crds;
mod detached;
pub mod image;
pub mod node;
mod pki;
mod process;
mod readiness;
mod tools;
mod watchdog;

use std::path::PathBuf;
use std::time::Duration;

pub use client::create_test_namespace;
pub use control_plane::{ControlPlane, ControlPlaneOptions};
pub use detached::{DetachedInfo, DetachedStatus};
pub use pki::loopback_serving_pair;
pub use tools::tools_bin_dir;

/// Re-exported so tests use exactly the versions the harness was built against.
pub use k8s_openapi;
pub use kube;

/// Everything the harness can fail at; each variant names the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("locating the control-plane tools failed: {0}")]
    LocateTools(String),

    #[error("building the control-plane tools with {script} failed: {reason}")]
    BuildTools { script: PathBuf, reason: String },

    #[error("generating the throwaway PKI ({what}) failed: {source}")]
    GeneratePki {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },

    #[error("{op} {path} failed: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("picking a free loopback port failed: {0}")]
    PickPort(#[source] std::io::Error),

    #[error("spawning {what} ({binary}) failed: {source}")]
    Spawn {
        what: &'static str,
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{what} exited during startup ({status}); last lines of {log}:\n{tail}")]
    ProcessExited {
        what: &'static str,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error(
        "{what} did not become ready within {timeout:?} (last check: {last_error}); \
         last lines of {log}:\n{tail}"
    )]
    NotReady {
        what: &'static str,
        timeout: Duration,
        last_error: String,
        log: PathBuf,
        tail: String,
    },

    #[error("rendering the {what} kubeconfig failed: {reason}")]
    RenderKubeconfig { what: &'static str, reason: String },

    #[error("loading the kubeconfig for {what} failed: {source}")]
    LoadKubeconfig {
        what: String,
        #[source]
        source: kube::config::KubeconfigError,
    },

    #[error("building a kube client for {what} failed: {source}")]
    BuildClient {
        what: String,
        #[source]
        source: kube::Error,
    },

    #[error("{op} failed: {source}")]
    Kube {
        op: String,
        #[source]
        source: kube::Error,
    },

    #[error("installing CRDs at startup ({what}) failed: {reason}")]
    InstallCrds { what: String, reason: String },

    #[error("the readiness probe thread failed: {0}")]
    ProbeThread(String),

    #[error("{what} failed: {reason}")]
    Node { what: String, reason: String },

    #[error("managing the detached control plane in {state_dir} failed: {reason}")]
    Detached { state_dir: PathBuf, reason: String },

    #[error("building the {image} image failed: {reason}")]
    ImageRecipe { image: String, reason: String },

    #[error("adding {path} to an image layer failed: {reason}")]
    ImageLayer { path: String, reason: String },

    #[error("inspecting {binary} for an image failed: {reason}")]
    InspectBinary { binary: PathBuf, reason: String },

    #[error("`ctr {op}` against containerd at {address} failed: {reason}")]
    Containerd {
        op: String,
        address: PathBuf,
        reason: String,
    },
}

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `command` with `input` on its stdin (e.g. `kubectl apply -f -`); its output, captured.
pub fn run_with_stdin(
    mut command: std::process::Command,
    input: &[u8],
) -> std::io::Result<std::process::Output> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Dropped after the write, so the child sees the end of its input.
    child.stdin.take().expect("piped").write_all(input)?;
    child.wait_with_output()
}

/// Writes a file only its owner may read: keys, and kubeconfigs embedding them (with a node,
/// `system:masters` is root on the machine).
pub(crate) fn write_private(path: &std::path::Path, content: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(content.as_bytes()))
        .map_err(io_err("writing", path))
}

/// Shorthand for wrapping an `io::Error` with the operation and path that failed.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
