//! `cargo xtask deploy dev|staging|prod`: the chart with an environment's values, onto the
//! local cluster (`cargo xtask up`, with its node) or a cluster named by `--kubeconfig`; waits
//! until the rollout is available (prod: atomically, rolled back on failure), then a smoke
//! check: a McallTask that only the operator in its pod can run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::helm::{self, Install};
use crate::kubectl::Kubectl;

/// How long helm waits for the rollout to be available.
const ROLLOUT_TIMEOUT: &str = "300s";
/// Environments installed atomically: a failed rollout is rolled back to the last release.
const ATOMIC_ENVIRONMENTS: [&str; 1] = ["prod"];
/// How long the smoke task gets to succeed.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(90);
const SMOKE_TASK: &str = "mcall-smoke";

pub struct Options<'a> {
    pub env: &'a str,
    pub dry_run: bool,
    /// A cluster of the user's; `None`: the local cluster, with the image built and imported.
    pub kubeconfig: Option<&'a Path>,
    /// Build the operator with the dev profile (faster; the release profile is LTO).
    pub debug_image: bool,
}

pub fn run(root: &Path, options: &Options<'_>) -> Result<()> {
    let bin_dir = crate::tools_bin_dir()?;
    let environment = helm::environment(root, options.env)?;
    if options.dry_run {
        helm::render(root, &bin_dir, &environment)?;
        println!(
            "deploy {} (dry run): rendered only, nothing installed",
            options.env
        );
        return Ok(());
    }
    let started = Instant::now();
    let (kubeconfig, image) = match options.kubeconfig {
        Some(kubeconfig) => (kubeconfig.to_path_buf(), None),
        None => {
            // Its operator would run the smoke task (and every other) as well.
            crate::demo_operator::stop(root)?;
            crate::cluster::up(root, false)?;
            let socket = crate::cluster::containerd_socket(root).context(
                "the local cluster has no node (was it started with `cargo xtask up --no-node`? \
                 run `cargo xtask down` first)",
            )?;
            let operator = crate::image::build_and_import(root, options.debug_image, &socket)?;
            (crate::cluster::kubeconfig(root), Some(operator))
        }
    };
    let install = Install {
        kubeconfig: &kubeconfig,
        image: image.as_ref(),
        wait: ROLLOUT_TIMEOUT,
        atomic: ATOMIC_ENVIRONMENTS.contains(&options.env),
    };
    helm::install(root, &bin_dir, &environment, &install)?;
    let kubectl = Kubectl::new(root, &kubeconfig)?.in_namespace(&environment.namespace);
    let ready = kubectl.run(&[
        "get",
        "deployment",
        "-l",
        &format!("app.kubernetes.io/instance={}", environment.release_name),
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.readyReplicas}/{.spec.replicas}{end}",
    ])?;
    println!("deploy {}: rollout available ({ready})", options.env);
    smoke(&kubectl, &environment.release_name)?;
    println!(
        "deploy {}: release {} in namespace {} installed, available and smoke-checked in {:.0?}",
        options.env,
        environment.release_name,
        environment.namespace,
        started.elapsed()
    );
    Ok(())
}

/// The smoke check: an HTTP McallTask against `127.0.0.1:8080/readyz` succeeds only when run
/// inside the operator's pod (its own readiness endpoint), and the operator's Lease must name
/// one of the release's pods as its holder.
fn smoke(kubectl: &Kubectl, release: &str) -> Result<()> {
    let _ = kubectl.run(&[
        "delete",
        "mcalltask",
        SMOKE_TASK,
        "--ignore-not-found",
        "--wait",
    ]);
    let task = format!(
        r#"apiVersion: mcall.tz.io/v1
kind: McallTask
metadata:
  name: {SMOKE_TASK}
  labels:
    app.kubernetes.io/part-of: mcall-smoke
spec:
  type: get
  input: http://127.0.0.1:8080/readyz
  timeout: 5
"#
    );
    kubectl.apply(&task)?;
    let deadline = Instant::now() + SMOKE_TIMEOUT;
    let phase = loop {
        let phase = kubectl.run(&[
            "get",
            "mcalltask",
            SMOKE_TASK,
            "-o",
            "jsonpath={.status.phase}",
        ])?;
        if matches!(phase.as_str(), "Succeeded" | "Failed") || Instant::now() > deadline {
            break phase;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let status = kubectl.run(&["get", "mcalltask", SMOKE_TASK, "-o", "jsonpath={.status}"])?;
    ensure!(
        phase == "Succeeded",
        "smoke check: McallTask {SMOKE_TASK} ended {phase:?} (status {status})"
    );
    let holder = kubectl.run(&[
        "get",
        "lease",
        "mcall-operator",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])?;
    let pods = kubectl.run(&[
        "get",
        "pods",
        "-l",
        &format!("app.kubernetes.io/instance={release}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    ensure!(
        pods.split_whitespace().any(|pod| holder.starts_with(pod)),
        "smoke check: the Lease holder {holder:?} is none of the release's pods ({pods})"
    );
    kubectl.run(&["delete", "mcalltask", SMOKE_TASK, "--wait=false"])?;
    println!("smoke check: McallTask {SMOKE_TASK} Succeeded, run by pod {holder}");
    Ok(())
}
