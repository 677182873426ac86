//! The chart installed on the local node, as the in-cluster tests use it: the operator image
//! built from the test's `mcall` binary and imported (there is no registry), a release per
//! environment of spec/environments.yaml, and the shell image for commands run in pods.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use mcall_tests::ControlPlane;
use mcall_tests::image::{
    Image, OperatorFiles, Platform, ShellFiles, operator_recipe, shell_recipe, write_archive_file,
};

use super::cluster::{eventually, kubectl, run, text};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// One test at a time: each installs operators that watch every namespace, and two of them
/// would run each other's tasks.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// The plane with a node, and the operator image (repository, tag) imported into it.
pub fn cluster() -> (&'static ControlPlane, &'static (String, String)) {
    static IMAGE: OnceLock<(String, String)> = OnceLock::new();
    let plane = ControlPlane::shared_with_node();
    let image = IMAGE.get_or_init(|| {
        let files = OperatorFiles::discover(Path::new(env!("CARGO_BIN_EXE_mcall")))
            .expect("the operator image's files");
        let image = Image::build(&operator_recipe(&files), &Platform::host()).expect("image");
        let path = plane.dir().join("mcall-operator.tar");
        let archive = write_archive_file(&image, &path).expect("image archive");
        plane.import_image(&archive).expect("import");
        (
            archive.reference.repository.clone(),
            archive.reference.tag.clone(),
        )
    });
    (plane, image)
}

/// An environment of spec/environments.yaml: (values file, release, namespace).
pub struct Env {
    pub name: &'static str,
    pub release: &'static str,
    pub namespace: &'static str,
}

pub const DEV: Env = Env {
    name: "dev",
    release: "mcall-operator-dev",
    namespace: "mcall-dev",
};
pub const STAGING: Env = Env {
    name: "staging",
    release: "mcall-operator-staging",
    namespace: "mcall-staging",
};
pub const PROD: Env = Env {
    name: "prod",
    release: "mcall-operator-prod",
    namespace: "mcall-system",
};

/// An installed release, uninstalled when dropped: a test that fails must not leave an operator
/// watching every namespace behind for the next one.
pub struct Installed<'a> {
    plane: &'a ControlPlane,
    release: &'static str,
    namespace: &'static str,
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        // Already gone after a test's own `uninstall`: helm then fails, which is fine.
        let _ = run({
            let mut cmd = self.plane.helm();
            cmd.args([
                "uninstall",
                self.release,
                "--namespace",
                self.namespace,
                "--wait",
            ]);
            cmd
        });
    }
}

/// `helm upgrade --install` with the environment's values and the imported image, waiting for
/// the rollout (pods Ready through their readiness probe).
pub fn install<'a>(
    plane: &'a ControlPlane,
    env: &Env,
    image: &(String, String),
    extra: &[&str],
) -> Installed<'a> {
    // An earlier test may have deleted the namespace without waiting: helm cannot install into
    // one that is terminating.
    eventually(
        &format!("namespace {} to be gone or active", env.namespace),
        std::time::Duration::from_secs(180),
        || {
            let out = run({
                let mut cmd = plane.kubectl();
                cmd.args([
                    "get",
                    "namespace",
                    env.namespace,
                    "-o",
                    "jsonpath={.status.phase}",
                ]);
                cmd
            });
            let phase = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (!out.status.success() || phase == "Active").then_some(())
        },
    );
    let out = run({
        let mut cmd = plane.helm();
        cmd.current_dir(root())
            .args(["upgrade", "--install", env.release, "helm/mcall-operator"])
            .args(["--namespace", env.namespace, "--create-namespace"])
            .arg("--values")
            .arg(format!("helm/mcall-operator/values-{}.yaml", env.name))
            .arg("--set")
            .arg(format!("image.repository={}", image.0))
            .arg("--set")
            .arg(format!("image.tag={}", image.1))
            .args(["--set", "image.pullPolicy=IfNotPresent"])
            // The local cluster has no cert-manager: the chart generates the webhook's
            // certificate instead (prod keeps failurePolicy Fail).
            .args(["--set", "webhook.certManager.enabled=false"])
            .arg("--set")
            .arg(format!("executor.image={}", shell_image(plane)))
            .args(["--wait", "--timeout=180s"])
            .args(extra);
        cmd
    });
    if !out.status.success() {
        let pods = run({
            let mut cmd = plane.kubectl();
            cmd.args(["-n", env.namespace, "describe", "pods"]);
            cmd
        });
        panic!("helm install {}: {}\n{}", env.name, text(&out), text(&pods));
    }
    Installed {
        plane,
        release: env.release,
        namespace: env.namespace,
    }
}

pub fn uninstall(plane: &ControlPlane, env: &Env) {
    let out = run({
        let mut cmd = plane.helm();
        cmd.args([
            "uninstall",
            env.release,
            "--namespace",
            env.namespace,
            "--wait",
        ]);
        cmd
    });
    assert!(out.status.success(), "helm uninstall: {}", text(&out));
}

pub fn release_pods(plane: &ControlPlane, env: &Env) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={}", env.release);
    kubectl(
        plane,
        &[
            "-n",
            env.namespace,
            "get",
            "pods",
            "-l",
            &selector,
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

/// The shell image (busybox), imported into the node once, for commands run in pods.
pub fn shell_image(plane: &ControlPlane) -> &'static String {
    static SHELL: OnceLock<String> = OnceLock::new();
    SHELL.get_or_init(|| {
        let recipe = shell_recipe(&ShellFiles::discover().expect("busybox-static"));
        let image = Image::build(&recipe, &Platform::host()).expect("shell image");
        let archive = write_archive_file(&image, &plane.dir().join("shell.tar")).expect("archive");
        plane.import_image(&archive).expect("import");
        archive.reference.to_string()
    })
}

pub fn pod_task(name: &str, image: &str, input: &str, timeout: u32) -> String {
    format!(
        "apiVersion: mcall.tz.io/v1\nkind: McallTask\nmetadata:\n  name: {name}\nspec:\n  type: cmd\n  input: {input:?}\n  timeout: {timeout}\n  executor:\n    type: Pod\n    image: {image}\n"
    )
}
