//! An owned control plane: started by a test (or once per test binary via
//! [`ControlPlane::shared`]), cleaned up on drop and, failing that, by its watchdog.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::Client;
use kube::config::Kubeconfig;

use crate::client::{self, Credentials};
mod node;

use crate::node::{self as local_node, NodeLaunch};
use crate::pki;
use crate::process::{self, Layout, Ports, Processes};
use crate::readiness::{self, Readiness};
use crate::watchdog::Watchdog;
use crate::{Error, Result, io_err, tools};
use crate::{controller_manager, crds};
use node::start_node;

/// How to start a control plane. `Default` is what tests want.
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// Directory with etcd, kube-apiserver, kube-controller-manager, kubectl and helm; `None`
    /// means [`tools::tools_bin_dir`].
    pub bin_dir: Option<PathBuf>,
    /// Where to write the admin kubeconfig; `None` means `<temp dir>/kubeconfig`.
    pub kubeconfig_path: Option<PathBuf>,
    /// How long to wait for the apiserver, and then the controller manager, to be ready.
    pub ready_timeout: Duration,
    /// Extra kube-apiserver flags (e.g. `--feature-gates=...`), appended last so they win.
    pub extra_apiserver_args: Vec<String>,
    /// Also run kube-controller-manager (garbage collector and namespace controller), started
    /// once the apiserver is ready: ownerReferences are honoured and deleted namespaces go
    /// away. Off by default: it adds 0.2-0.3 s to the start (spawn until healthy, measured on
    /// two loaded cores) and a process per plane.
    pub controller_manager: bool,
    /// Extra kube-controller-manager flags, appended last (`--controllers=x` adds to the list).
    pub extra_controller_manager_args: Vec<String>,
    /// CustomResourceDefinition manifests (files or directories) installed, and awaited
    /// Established, once the apiserver is ready and before the controller manager starts: its
    /// garbage collector discovers kinds at start and then only every 30 s, so objects of a
    /// CRD installed later are collected only after that resync (measured: 40 s for the
    /// first one).
    pub crds: Vec<PathBuf>,
    /// Also run a node ([`crate::node`]): containerd, kubelet, kube-proxy, kube-scheduler and
    /// CoreDNS; implies the controller manager. Needs root; one node per machine, so a start
    /// waits up to `node_claim_wait` for another node to go.
    pub node: bool,
    /// How long to wait for the machine's node lock.
    pub node_claim_wait: Duration,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        ControlPlaneOptions {
            bin_dir: None,
            kubeconfig_path: None,
            ready_timeout: Duration::from_secs(60),
            extra_apiserver_args: Vec::new(),
            controller_manager: false,
            extra_controller_manager_args: Vec::new(),
            crds: Vec::new(),
            node: false,
            node_claim_wait: Duration::from_secs(600),
        }
    }
}

/// A running etcd + kube-apiserver pair (plus kube-controller-manager if asked for) with a
/// throwaway CA and an admin kubeconfig.
///
/// Clients are never cached here: a `kube::Client` is bound to the tokio runtime that created
/// it, and every `#[tokio::test]` has its own runtime; ask for a fresh one per test.
#[derive(Debug)]
pub struct ControlPlane {
    bin_dir: PathBuf,
    server: String,
    ca_pem: String,
    kubeconfig: PathBuf,
    controller_manager_url: Option<String>,
    startup: Duration,
    procs: Processes,
    watchdogs: Vec<Watchdog>,
    node: Option<NodeLaunch>,
    // Declared last: fields drop in order, so processes are dead before their files go. Held
    // for its removal on drop (the node's teardown has unmounted everything in it by then).
    _node_dir: Option<tempfile::TempDir>,
    dir: tempfile::TempDir,
}

/// Everything `launch` produces; owned and detached modes keep different parts of it.
pub(crate) struct Launched {
    pub procs: Processes,
    pub server: String,
    pub ca_pem: String,
    pub kubeconfig: PathBuf,
    pub controller_manager_url: Option<String>,
    pub startup: Duration,
    pub node: Option<NodeLaunch>,
}

/// Where a plane's node lives and who owns it (see [`local_node::Owner`]).
pub(crate) struct NodeSetup<'a> {
    pub dir: &'a Path,
    pub owner: local_node::Owner,
}

/// Generates the PKI, spawns etcd and kube-apiserver in `layout.dir`, writes the kubeconfig and
/// waits until ready; installs `opts.crds`; then, if asked for, starts kube-controller-manager
/// and waits until it is healthy. `on_spawned`
/// gets the `(binary, pid)` of each batch of processes right after they exist, before the
/// (slowest) wait, so the owned mode's watchdog covers a panic or Ctrl-C during startup too.
pub(crate) fn launch(
    bin_dir: &Path,
    layout: &Layout,
    kubeconfig: &Path,
    opts: &ControlPlaneOptions,
    node_setup: Option<NodeSetup<'_>>,
    mut on_spawned: impl FnMut(&[(&'static str, u32)]) -> Result<()>,
) -> Result<Launched> {
    let started = Instant::now();
    // The node claims the machine and puts its address on `lo` first: the apiserver serves there.
    let claim = match &node_setup {
        Some(setup) => Some(local_node::prepare(
            setup.owner,
            setup.dir,
            bin_dir,
            opts.node_claim_wait,
        )?),
        None => None,
    };
    let names = local_node::NODE_NAMES;
    let pki = pki::generate(&layout.pki_dir(), claim.as_ref().map(|_| names))?;
    let host = match claim {
        Some(_) => local_node::NODE_IP.parse().expect("a valid address"),
        None => std::net::Ipv4Addr::LOCALHOST,
    };
    let ports = Ports::pick(host)?;
    let server = ports.server_url();
    let yaml = client::admin_kubeconfig(&server, &pki)?;
    if let Some(parent) = kubeconfig.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io_err("creating the kubeconfig directory", parent))?;
    }
    crate::write_private(kubeconfig, &yaml)?;

    let mut procs = process::spawn(bin_dir, layout, &pki, ports, &opts.extra_apiserver_args)?;
    on_spawned(&procs.pids())?;
    readiness::wait_ready(&mut procs, Readiness::ApiServer, yaml, opts.ready_timeout)?;

    crds::install(bin_dir, kubeconfig, &opts.crds, opts.ready_timeout)?;
    let controller_manager_url = if opts.controller_manager || claim.is_some() {
        let url = start_controller_manager(
            bin_dir,
            layout,
            &pki,
            &server,
            &mut procs,
            opts,
            &mut on_spawned,
        )?;
        Some(url)
    } else {
        None
    };
    let node = match (claim, node_setup, &pki.node) {
        (Some(claim), Some(setup), Some(node_pki)) => {
            let launched = start_node(
                bin_dir, &server, kubeconfig, &pki, node_pki, claim, setup.dir, opts,
            )?;
            let pids = launched.procs.pids();
            on_spawned(&pids)?;
            Some(launched)
        }
        _ => None,
    };
    Ok(Launched {
        procs,
        server,
        ca_pem: pki.ca_pem,
        kubeconfig: kubeconfig.to_path_buf(),
        controller_manager_url,
        startup: started.elapsed(),
        node,
    })
}

/// Spawns kube-controller-manager once the apiserver is ready (started earlier it would only
/// retry its connection, and its garbage collector's first discovery could miss kinds), reports
/// its pid and waits until it is healthy. Returns its URL.
fn start_controller_manager(
    bin_dir: &Path,
    layout: &Layout,
    pki: &pki::Pki,
    server: &str,
    procs: &mut Processes,
    opts: &ControlPlaneOptions,
    on_spawned: &mut impl FnMut(&[(&'static str, u32)]) -> Result<()>,
) -> Result<String> {
    let spawned = controller_manager::spawn(
        bin_dir,
        layout,
        pki,
        server,
        procs,
        &opts.extra_controller_manager_args,
    )?;
    on_spawned(&[(process::CONTROLLER_MANAGER, spawned.pid)])?;
    readiness::wait_ready(
        procs,
        Readiness::ControllerManager,
        spawned.probe_kubeconfig,
        opts.ready_timeout,
    )?;
    Ok(spawned.url)
}

impl ControlPlane {
    /// Starts a control plane owned by the caller; blocks until it is ready. Everything lives
    /// in a fresh temp dir that is removed, with the processes, on drop.
    pub fn start(opts: ControlPlaneOptions) -> Result<ControlPlane> {
        let bin_dir = match &opts.bin_dir {
            Some(dir) => dir.clone(),
            None => tools::tools_bin_dir()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("mcall-control-plane-")
            .tempdir()
            .map_err(io_err("creating a temp dir in", std::env::temp_dir()))?;
        let layout = Layout {
            dir: dir.path().to_path_buf(),
        };
        let kubeconfig = opts
            .kubeconfig_path
            .clone()
            .unwrap_or_else(|| dir.path().join("kubeconfig"));
        // One watchdog per batch of processes (the controller manager comes later than etcd
        // and the apiserver); each kills its own and removes the directory.
        let mut watchdogs = Vec::new();
        let node_dir = match opts.node {
            true => Some(
                tempfile::Builder::new()
                    .prefix("mcall-node-")
                    .tempdir()
                    .map_err(io_err("creating a temp dir in", std::env::temp_dir()))?,
            ),
            false => None,
        };
        let node_setup = node_dir.as_ref().map(|d| NodeSetup {
            dir: d.path(),
            owner: local_node::Owner::Process(std::process::id()),
        });
        let launched = launch(&bin_dir, &layout, &kubeconfig, &opts, node_setup, |pids| {
            let pids: Vec<u32> = pids.iter().map(|(_, pid)| *pid).collect();
            watchdogs.push(Watchdog::spawn(&pids, dir.path())?);
            Ok(())
        });
        let launched = match launched {
            Ok(l) => l,
            Err(e) => {
                // `launch` already killed the processes (Processes' Drop); the temp dir goes
                // when `dir` drops. Disarm so the watchdogs do not linger until we exit.
                watchdogs.into_iter().for_each(Watchdog::disarm);
                return Err(e);
            }
        };
        Ok(ControlPlane {
            bin_dir,
            server: launched.server,
            ca_pem: launched.ca_pem,
            kubeconfig: launched.kubeconfig,
            controller_manager_url: launched.controller_manager_url,
            startup: launched.startup,
            procs: launched.procs,
            watchdogs,
            node: launched.node,
            _node_dir: node_dir,
            dir,
        })
    }

    /// The control plane shared by all tests of this test binary, started on first use.
    ///
    /// Panics if it cannot start (there is nothing a test could do instead); the error is
    /// remembered so later tests fail fast with the same message instead of retrying.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<std::result::Result<ControlPlane, String>> = OnceLock::new();
        shared_plane(&SHARED, ControlPlaneOptions::default())
    }

    /// Like [`Self::shared`], with kube-controller-manager: garbage collection and namespace
    /// deletion happen. A separate plane from [`Self::shared`] (a test binary using both
    /// starts two).
    ///
    /// The chart's CRDs (`helm/mcall-operator/crds/`) are installed before the controller
    /// manager starts, so McallTasks and McallWorkflows are collected (and collect their
    /// dependents) from the first second; see [`ControlPlaneOptions::crds`] for why.
    pub fn shared_with_controller_manager() -> &'static ControlPlane {
        static SHARED: OnceLock<std::result::Result<ControlPlane, String>> = OnceLock::new();
        let opts = ControlPlaneOptions {
            controller_manager: true,
            crds: vec![chart_crds()],
            ..Default::default()
        };
        shared_plane(&SHARED, opts)
    }

    /// A fresh admin (`system:masters`) client. Build one per test: clients are tied to the
    /// tokio runtime that created them.
    pub async fn admin_client(&self) -> Result<Client> {
        let what = format!("the admin of {}", self.server);
        let kubeconfig =
            Kubeconfig::read_from(&self.kubeconfig).map_err(|source| Error::LoadKubeconfig {
                what: what.clone(),
                source,
            })?;
        client::client_from_kubeconfig(kubeconfig, &what).await
    }

    /// A client authenticating as ServiceAccount `namespace/name` with a bearer token from the
    /// TokenRequest API (no client certificate). Creates the ServiceAccount if absent; grants
    /// nothing, so RBAC applies exactly as to an in-cluster workload.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Result<Client> {
        let (user, yaml) = self.service_account_yaml(namespace, name).await?;
        client::client_from_yaml(&yaml, &user).await
    }

    /// The same identity as a kubeconfig file, for a process such as the `mcall` binary.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let (_, yaml) = self.service_account_yaml(namespace, name).await?;
        let path = self
            .dir
            .path()
            .join(format!("kubeconfig-{namespace}-{name}"));
        crate::write_private(&path, &yaml)?;
        Ok(path)
    }

    /// The user name and kubeconfig YAML of ServiceAccount `namespace/name` (created if absent).
    async fn service_account_yaml(&self, namespace: &str, name: &str) -> Result<(String, String)> {
        let admin = self.admin_client().await?;
        let token = client::service_account_token(&admin, namespace, name).await?;
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let yaml = client::render_kubeconfig(
            &self.server,
            &self.ca_pem,
            &user,
            Credentials::Token(&token),
        )?;
        Ok((user, yaml))
    }

    /// Renders the chart's generated RBAC (`templates/rbac.yaml`) for `release` in `namespace`,
    /// bound to `service_account`, with `extra` helm arguments, and applies it. Panics with helm's
    /// or kubectl's output when either fails (a test helper).
    pub fn apply_chart_rbac(
        &self,
        release: &str,
        namespace: &str,
        service_account: &str,
        extra: &[&str],
    ) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let rendered = self
            .helm()
            .current_dir(root)
            .args([
                "template",
                release,
                "helm/mcall-operator",
                "--namespace",
                namespace,
            ])
            .args(["--show-only", "templates/rbac.yaml", "--set"])
            .arg(format!("serviceAccount.name={service_account}"))
            .args(extra)
            .output()
            .expect("helm starts");
        assert!(
            rendered.status.success(),
            "helm template: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let mut apply = self.kubectl();
        apply.args(["apply", "-f", "-"]);
        let out = crate::run_with_stdin(apply, &rendered.stdout).expect("kubectl starts");
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// kube-controller-manager's secure endpoint, `https://127.0.0.1:<port>`, if it runs.
    pub fn controller_manager_url(&self) -> Option<&str> {
        self.controller_manager_url.as_deref()
    }

    /// kube-controller-manager's log file, if it runs.
    pub fn controller_manager_log(&self) -> Option<&Path> {
        self.controller_manager_url
            .is_some()
            .then_some(self.procs.controller_manager_log.as_path())
    }

    /// `(binary name, pid)` of the plane's processes: etcd, kube-apiserver and, if it runs,
    /// kube-controller-manager.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.procs.pids()
    }

    /// The admin kubeconfig (certificates embedded).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The apiserver URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// The CA that signed the serving and client certificates, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Directory with the pinned etcd, kube-apiserver, kube-controller-manager, kubectl and helm.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// This plane's working directory (PKI, etcd data, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// kube-apiserver's log file, for debugging a failing test.
    pub fn apiserver_log(&self) -> &Path {
        &self.procs.apiserver_log
    }

    /// Wall time from `start` until the plane was ready (PKI, spawn, readiness).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// `kubectl --kubeconfig <admin kubeconfig>`; add the subcommand and run it.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// `helm` with `KUBECONFIG` set, and helm's cache/config/data dirs inside this plane's
    /// directory so tests neither read nor pollute the user's `~/.config/helm`.
    pub fn helm(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("helm"));
        let home = self.dir.path().join("helm");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        cmd
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Disarm first so the watchdogs cannot race us; then kill and reap the processes; the
        // temp dir is removed when `dir` drops after this.
        self.watchdogs.drain(..).for_each(Watchdog::disarm);
        // The node first (its processes, then the teardown), while the apiserver still answers.
        drop(self.node.take());
        self.procs.kill();
    }
}

/// The chart's CRDs (`helm/mcall-operator/crds/`).
pub(crate) fn chart_crds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("helm")
        .join("mcall-operator")
        .join("crds")
}

/// The plane in `cell`, started with `opts` on first use; panics (there is nothing a test could
/// do instead) with the start error, remembered so later tests fail fast with the same message.
pub(crate) fn shared_plane(
    cell: &'static OnceLock<std::result::Result<ControlPlane, String>>,
    opts: ControlPlaneOptions,
) -> &'static ControlPlane {
    match cell.get_or_init(|| ControlPlane::start(opts).map_err(|e| e.to_string())) {
        Ok(plane) => plane,
        Err(e) => panic!("starting the shared test control plane failed: {e}"),
    }
}
