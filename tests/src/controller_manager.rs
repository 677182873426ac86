//! kube-controller-manager for planes that opt in ([`crate::ControlPlaneOptions::controller_manager`]):
//! with it, garbage collection (ownerReferences, background and foreground propagation) and
//! namespace deletion actually happen, as in a real cluster.
//!
//! Without a node only the controllers those need run; in particular no ServiceAccount
//! controllers, so namespaces get neither a `default` ServiceAccount nor a `kube-root-ca.crt`
//! ConfigMap, and a plane with the controller manager holds the same objects as one without.
//! With a node ([`crate::ControlPlaneOptions::node`]) it runs [`NODE_CONTROLLERS`] as well.

use std::path::Path;

use crate::Result;
use crate::client::{self, Credentials};
use crate::pki::{CONTROLLER_MANAGER_USER, Pki};
use crate::process::{self, CONTROLLER_MANAGER, Layout, Processes};

/// The controllers started, by their canonical names, which are also the names of their
/// `/healthz` checks.
///
/// - `garbage-collector-controller` deletes dependents whose owners are gone and completes
///   foreground deletions (it removes the `foregroundDeletion` finalizer).
/// - `namespace-controller` empties a Terminating namespace and removes its `kubernetes`
///   finalizer, after which the apiserver deletes it.
///
/// Left out: `serviceaccount-token-controller` only mints legacy Secret-based tokens and is
/// disabled anyway without `--service-account-private-key-file` (the harness gets tokens from
/// the TokenRequest API); `serviceaccount-controller` and `root-ca-certificate-publisher-controller`
/// would put a ServiceAccount and a ConfigMap into every namespace, which tests listing a
/// namespace's objects would then see.
pub(crate) const CONTROLLERS: [&str; 2] = ["garbage-collector-controller", "namespace-controller"];

/// With a node, also what pods need, as in a real cluster: Deployments (through ReplicaSets),
/// Jobs, a `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap in every namespace
/// (the projected token volume reads it), EndpointSlices for Services, and PodDisruptionBudget
/// status; the node lifecycle controller removes the `node.kubernetes.io/not-ready` taint
/// kubelet registers the Node with (nothing is scheduled until it does). IP address management
/// is left out: the pod range comes from the CNI configuration.
pub(crate) const NODE_CONTROLLERS: [&str; 9] = [
    "node-lifecycle-controller",
    "deployment-controller",
    "replicaset-controller",
    "job-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "endpointslice-controller",
    "disruption-controller",
    "ttl-after-finished-controller",
];

/// A spawned controller manager: its pid, where it serves, and a kubeconfig to probe it with.
pub(crate) struct Spawned {
    pub pid: u32,
    /// `https://127.0.0.1:<port>` (its secure port: `/healthz`, `/metrics`).
    pub url: String,
    pub probe_kubeconfig: String,
}

/// Writes the controller manager's kubeconfig (its own client certificate) and spawns it into
/// `procs`, talking to the apiserver at `server`. `extra_args` come last so they win (for
/// `--controllers` they add to the list: the flag is a string slice).
pub(crate) fn spawn(
    bin_dir: &Path,
    layout: &Layout,
    pki: &Pki,
    server: &str,
    procs: &mut Processes,
    extra_args: &[String],
) -> Result<Spawned> {
    let kubeconfig = layout.controller_manager_kubeconfig();
    let yaml = client::render_kubeconfig(
        server,
        &pki.ca_pem,
        CONTROLLER_MANAGER_USER,
        Credentials::ClientCert {
            cert_pem: &pki.controller_manager_cert_pem,
            key_pem: &pki.controller_manager_key_pem,
        },
    )?;
    crate::write_private(&kubeconfig, &yaml)?;

    let port = process::pick_port()?;
    let mut controllers = CONTROLLERS.to_vec();
    if pki.node.is_some() {
        controllers.extend(NODE_CONTROLLERS);
    }
    let mut args = vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--controllers={}", controllers.join(",")),
        // What the root-ca publisher puts into every namespace's kube-root-ca.crt.
        format!("--root-ca-file={}", pki.ca_cert.display()),
        // One identity for all controllers (see pki.rs for why it is in system:masters); with
        // `true` it would mint a ServiceAccount token per controller, which needs the
        // serviceaccount-token controller and its signing key.
        "--use-service-account-credentials=false".to_string(),
        // One instance per plane: no Lease to take, so it starts its controllers at once.
        "--leader-elect=false".to_string(),
        // Several planes run side by side: loopback only, on a free port, with a certificate
        // from the plane's CA so the readiness probe can verify it.
        "--bind-address=127.0.0.1".to_string(),
        format!("--secure-port={port}"),
        format!(
            "--tls-cert-file={}",
            pki.controller_manager_serving_cert.display()
        ),
        format!(
            "--tls-private-key-file={}",
            pki.controller_manager_serving_key.display()
        ),
        "--profiling=false".to_string(),
    ];
    args.extend(extra_args.iter().cloned());
    let child = process::spawn_logged(
        CONTROLLER_MANAGER,
        &bin_dir.join(CONTROLLER_MANAGER),
        &args,
        &procs.controller_manager_log,
    )?;
    let pid = child.id();
    procs.controller_manager = Some(child);

    let url = format!("https://127.0.0.1:{port}");
    // /healthz is served to anyone (it is in --authorization-always-allow-paths); the admin
    // certificate is offered but not needed (no --client-ca-file: nothing else is served here).
    let probe_kubeconfig = client::admin_kubeconfig(&url, pki)?;
    Ok(Spawned {
        pid,
        url,
        probe_kubeconfig,
    })
}
