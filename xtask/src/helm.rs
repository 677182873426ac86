//! The Helm chart: `lint` proves it renders for every environment, `install` installs one
//! (for `cargo xtask deploy`, deploy.rs), `render` renders one.
//!
//! Both run the pinned `helm` from the tools cache (`xtask/tools/build-tools.sh` prints its
//! directory). Environments (namespace, release name, values file) come from
//! `spec/environments.yaml`, so a new environment there is linted and deployable without code
//! changes here.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use mcall_codegen::SpecFiles;
use mcall_codegen::emit::CHART_DIR;
use mcall_codegen::emit::values::helm_command;
use mcall_codegen::ir::Environment;

/// Namespaces used to render the namespaced (Role per namespace) variant of the chart.
const WATCH_NAMESPACES: [&str; 2] = ["team-a", "team-b"];

/// Several replicas need leader election, and get rolling updates and a PodDisruptionBudget;
/// Lease timings that could let two replicas lead are refused.
fn replica_checks() -> Vec<Check> {
    vec![
        Check::renders(
            "replicaCount=3: leader election, rolling updates, a PodDisruptionBudget",
            &["--set", "replicaCount=3"],
            &[
                "kind: PodDisruptionBudget",
                "type: RollingUpdate",
                "name: MCALL_LEADER_ELECTION\n              value: \"true\"",
            ],
            &[],
        ),
        Check::renders(
            "replicaCount=1: no PodDisruptionBudget",
            &[],
            &["type: RollingUpdate"],
            &["PodDisruptionBudget"],
        ),
        Check::renders(
            "leaderElection.enabled=false: Recreate",
            &["--set", "leaderElection.enabled=false"],
            &["type: Recreate"],
            &["RollingUpdate"],
        ),
        Check::refused(
            "replicaCount=2 without leader election",
            &[
                "--set",
                "replicaCount=2",
                "--set",
                "leaderElection.enabled=false",
            ],
            "leaderElection.enabled is false",
        ),
        Check::refused(
            "a renew deadline not shorter than the lease",
            &["--set", "leaderElection.renewDeadlineMilliseconds=2000"],
            "must be shorter than leaseDurationSeconds",
        ),
        Check::refused(
            "replicaCount=11 (values schema)",
            &["--set", "replicaCount=11"],
            "replicaCount",
        ),
    ]
}

/// The operator's env var for `allowCrossNamespaceTemplates`, as `helm template` renders it.
fn cross_namespace_env(value: &str) -> String {
    format!("name: MCALL_ALLOW_CROSS_NAMESPACE_TEMPLATES\n              value: \"{value}\"")
}

/// The operator's env var for `metrics.secure`, as `helm template` renders it.
fn secure_metrics_env(value: &str) -> String {
    format!("name: MCALL_METRICS_SECURE\n              value: \"{value}\"")
}

/// Secured metrics: off, the pods serve plain /metrics and nothing else is rendered; on, an HTTPS
/// port, its Service and the ClusterRole a scraper is bound to.
fn metrics_checks() -> Vec<Check> {
    const READER: &str = "name: mcall-operator-metrics-reader";
    vec![
        Check::renders(
            "metrics.secure off by default",
            &[],
            &[&secure_metrics_env("false")],
            &["kind: Service\n", READER, "https-metrics"],
        ),
        Check::renders(
            "metrics.secure=true: an HTTPS port, its Service, the metrics-reader ClusterRole",
            &["--set", "metrics.secure=true"],
            &[
                &secure_metrics_env("true"),
                "name: MCALL_METRICS_SECURE_PORT\n              value: \"8443\"",
                "containerPort: 8443",
                "kind: Service\n",
                "name: mcall-operator-metrics\n",
                "targetPort: https-metrics",
                READER,
                "nonResourceURLs: [\"/metrics\"]",
                "resources: [\"tokenreviews\"]",
                "resources: [\"subjectaccessreviews\"]",
            ],
            &[],
        ),
        Check::refused(
            "metrics.securePort=8080 (the probes' port)",
            &["--set", "metrics.secure=true,metrics.securePort=8080"],
            "metrics.securePort is 8080",
        ),
        Check::refused(
            "metrics.securePort=80 (values schema)",
            &["--set", "metrics.securePort=80"],
            "securePort",
        ),
    ]
}

/// Templates of another namespace reach the operator only when a release allows them; a value
/// that is not a boolean is refused rather than read as a (truthy) string.
fn template_checks() -> Vec<Check> {
    vec![
        Check::renders(
            "allowCrossNamespaceTemplates off by default",
            &[],
            &[&cross_namespace_env("false")],
            &[],
        ),
        Check::renders(
            "allowCrossNamespaceTemplates=true",
            &["--set", "allowCrossNamespaceTemplates=true"],
            &[&cross_namespace_env("true")],
            &[],
        ),
        Check::refused(
            "allowCrossNamespaceTemplates=yes (values schema)",
            &["--set-string", "allowCrossNamespaceTemplates=yes"],
            "allowCrossNamespaceTemplates",
        ),
    ]
    .into_iter()
    .chain(webhook_checks())
    .collect()
}

/// The admission webhook: absent unless enabled; never sent deletes; a certificate generated at
/// install (with its CA in the registration) or cert-manager's (with the CA injected).
fn webhook_checks() -> Vec<Check> {
    const REGISTRATION: &str = "kind: ValidatingWebhookConfiguration";
    const OPERATIONS: &str = "operations: [\"CREATE\", \"UPDATE\"]";
    vec![
        Check::renders(
            "no webhook by default",
            &[],
            &[],
            &[REGISTRATION, "MCALL_WEBHOOK_CERT_FILE"],
        ),
        Check::renders(
            "webhook.enabled with a generated certificate",
            &["--set", "webhook.enabled=true"],
            &[
                REGISTRATION,
                OPERATIONS,
                "failurePolicy: Ignore",
                "type: kubernetes.io/tls",
                "caBundle: ",
                "path: /validate-mcalltask",
                "path: /validate-mcallworkflow",
                "name: MCALL_WEBHOOK_CERT_FILE",
                "containerPort: 9443",
            ],
            &["DELETE", "cert-manager.io"],
        ),
        Check::renders(
            "webhook.certManager.enabled with failurePolicy Fail",
            &[
                "--set",
                "webhook.enabled=true,webhook.certManager.enabled=true,webhook.failurePolicy=Fail",
            ],
            &[
                REGISTRATION,
                OPERATIONS,
                "failurePolicy: Fail",
                "kind: Certificate",
                "kind: Issuer",
                "cert-manager.io/inject-ca-from: ",
                "values: [\"default\", \"kube-system\"]",
            ],
            &["caBundle: ", "DELETE"],
        ),
        Check::refused(
            "webhook.failurePolicy=Maybe (values schema)",
            &["--set", "webhook.failurePolicy=Maybe"],
            "failurePolicy",
        ),
    ]
}

/// `helm lint --strict` with the default values and each environment's values file, then
/// `helm template` of each environment watching all namespaces and watching
/// [`WATCH_NAMESPACES`], then the replica checks ([`replica_checks`]) and the template checks
/// ([`template_checks`]). Runs every check, prints one line per check, and fails with helm's
/// output of each failed one.
pub fn lint(root: &Path, bin_dir: &Path) -> Result<()> {
    let helm = helm_binary(bin_dir)?;
    let environments = environments(root)?;
    let mut checks: Vec<Check> = vec![Check::lint("default values", None)];
    for env in environments.values() {
        checks.push(Check::lint(&env.name, Some(values_file(env))));
    }
    for env in environments.values() {
        checks.push(Check::template(env, false));
        checks.push(Check::template(env, true));
    }
    checks.extend(replica_checks());
    checks.extend(template_checks());
    checks.extend(metrics_checks());

    let mut failed = Vec::new();
    for check in &checks {
        match check.run(&helm, root) {
            Ok(()) => println!("ok      {}", check.label),
            Err(e) => {
                println!("FAILED  {}", check.label);
                failed.push(format!("{}:\n{e:#}", check.label));
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} helm checks failed\n\n{}",
            failed.len(),
            checks.len(),
            failed.join("\n\n")
        );
    }
    println!(
        "helm lint: {} checks passed ({} environments)",
        checks.len(),
        environments.len()
    );
    Ok(())
}

/// The environment `name` of `spec/environments.yaml`, with its values file checked.
pub fn environment(root: &Path, name: &str) -> Result<Environment> {
    let mut environments = environments(root)?;
    let known: Vec<String> = environments.keys().cloned().collect();
    let Some(environment) = environments.remove(name) else {
        bail!(
            "unknown environment `{name}`; spec/environments.yaml declares: {}",
            known.join(", ")
        );
    };
    let values = root.join(values_file(&environment));
    ensure!(
        values.is_file(),
        "{} is missing: run `cargo xtask generate`",
        values.display()
    );
    Ok(environment)
}

/// The images a deploy runs instead of the values' (the local cluster's imported ones): the
/// operator's, and the shell image its command pods default to.
pub struct LocalImage {
    pub repository: String,
    pub tag: String,
    pub shell: String,
}

/// How to install: onto which cluster, with which image, waiting how long.
pub struct Install<'a> {
    pub kubeconfig: &'a Path,
    pub image: Option<&'a LocalImage>,
    /// helm's `--timeout` for `--wait` (the rollout available).
    pub wait: &'a str,
    /// `--atomic`: a failed rollout is rolled back.
    pub atomic: bool,
}

/// The install command's words after `helm` (the command in the values file's header).
fn install_args(environment: &Environment) -> Result<Vec<OsString>> {
    let command = helm_command(environment);
    let mut words = command.split_whitespace();
    ensure!(
        words.next() == Some("helm"),
        "unexpected install command `{command}`"
    );
    Ok(words.map(OsString::from).collect())
}

/// Renders the environment's manifests (`helm template`, no cluster needed) to stdout.
pub fn render(root: &Path, bin_dir: &Path, environment: &Environment) -> Result<()> {
    let helm = helm_binary(bin_dir)?;
    let args = [
        "template",
        &environment.release_name,
        CHART_DIR,
        "--namespace",
        &environment.namespace,
        "--values",
        &values_file(environment),
    ];
    println!(
        "deploy {} (dry run): helm {}",
        environment.name,
        args.join(" ")
    );
    let status = Command::new(&helm)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("running {}", helm.display()))?;
    ensure!(
        status.success(),
        "helm template of {} failed ({status})",
        environment.name
    );
    Ok(())
}

/// `helm upgrade --install` of `environment` (the command its values file documents), after
/// the CRDs (helm installs crds/ only on first install and never upgrades them), waiting until
/// the rollout is available. helm's output goes to the terminal.
pub fn install(
    root: &Path,
    bin_dir: &Path,
    environment: &Environment,
    how: &Install<'_>,
) -> Result<()> {
    let helm = helm_binary(bin_dir)?;
    let mut args = install_args(environment)?;
    args.push("--kubeconfig".into());
    args.push(how.kubeconfig.into());
    args.push("--wait".into());
    args.push(format!("--timeout={}", how.wait).into());
    if how.atomic {
        args.push("--atomic".into());
    }
    if let Some(image) = how.image {
        // Imported into the node, never pulled (there is no registry).
        for set in [
            format!("image.repository={}", image.repository),
            format!("image.tag={}", image.tag),
            "image.pullPolicy=IfNotPresent".to_string(),
            format!("executor.image={}", image.shell),
            // The local cluster has no cert-manager: the chart generates the webhook's
            // certificate instead (prod keeps failurePolicy Fail).
            "webhook.certManager.enabled=false".to_string(),
        ] {
            args.push("--set".into());
            args.push(set.into());
        }
    }
    println!(
        "deploy {}: {}",
        environment.name,
        std::iter::once(helm.as_os_str())
            .chain(args.iter().map(OsString::as_os_str))
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let applied = Command::new(bin_dir.join("kubectl"))
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(format!("{CHART_DIR}/crds/"))
        .arg("--kubeconfig")
        .arg(how.kubeconfig)
        .current_dir(root)
        .status()
        .context("running kubectl apply for the CRDs")?;
    ensure!(applied.success(), "applying the CRDs failed ({applied})");
    let status = Command::new(&helm)
        .args(&args)
        .current_dir(root)
        .status()
        .with_context(|| format!("running {}", helm.display()))?;
    ensure!(
        status.success(),
        "helm upgrade --install of {} failed ({status}){}",
        environment.name,
        if how.atomic {
            "; rolled back (--atomic)"
        } else {
            ""
        }
    );
    Ok(())
}

/// The environments of `spec/environments.yaml`, by name.
fn environments(root: &Path) -> Result<BTreeMap<String, Environment>> {
    let spec_dir = root.join("spec");
    let files = SpecFiles::read_dir(&spec_dir)
        .with_context(|| format!("reading {}", spec_dir.display()))?;
    let ir = mcall_codegen::parse(&files)
        .map_err(|errors| anyhow::anyhow!("invalid spec:\n{errors}"))?;
    Ok(ir.settings.environments)
}

/// The environment's values file, relative to the workspace root.
fn values_file(env: &Environment) -> String {
    format!("{CHART_DIR}/values-{}.yaml", env.name)
}

fn helm_binary(bin_dir: &Path) -> Result<PathBuf> {
    let helm = bin_dir.join("helm");
    ensure!(
        helm.is_file(),
        "no helm in {}: build the pinned tools with `bash xtask/tools/build-tools.sh` (it prints the bin directory)",
        bin_dir.display()
    );
    Ok(helm)
}

/// One helm invocation and what its output must show.
struct Check {
    label: String,
    args: Vec<String>,
    /// Substrings the output must contain (the rendered objects that prove the templates ran).
    expect: Vec<String>,
    /// Substrings the output must not contain.
    reject: Vec<String>,
    /// When set, helm must fail and say this on stderr.
    refused_with: Option<String>,
}

impl Check {
    fn lint(what: &str, values: Option<String>) -> Self {
        let mut args = vec![
            "lint".to_string(),
            "--strict".to_string(),
            CHART_DIR.to_string(),
        ];
        let label = match values {
            Some(values) => {
                let label = format!("helm lint --strict ({what}: {values})");
                args.extend(["--values".to_string(), values]);
                label
            }
            None => format!("helm lint --strict ({what})"),
        };
        Self {
            label,
            args,
            expect: vec!["0 chart(s) failed".to_string()],
            reject: Vec::new(),
            refused_with: None,
        }
    }

    /// `helm template` of the chart with the default values and `extra` arguments, which helm
    /// must refuse with a message containing `message`.
    fn refused(what: &str, extra: &[&str], message: &str) -> Self {
        Self {
            label: format!("helm template refuses {what}"),
            refused_with: Some(message.to_string()),
            ..Self::default_values(extra)
        }
    }

    /// `helm template` of the chart with the default values and `extra` arguments, whose output
    /// must contain every `expect` and no `reject`.
    fn renders(what: &str, extra: &[&str], expect: &[&str], reject: &[&str]) -> Self {
        Self {
            label: format!("helm template renders {what}"),
            expect: expect.iter().map(|e| e.to_string()).collect(),
            reject: reject.iter().map(|r| r.to_string()).collect(),
            ..Self::default_values(extra)
        }
    }

    /// `helm template` with the default values and `extra` arguments, checking nothing yet.
    fn default_values(extra: &[&str]) -> Self {
        let mut args = vec![
            "template".to_string(),
            "mcall-operator".to_string(),
            CHART_DIR.to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Self {
            label: String::new(),
            args,
            expect: Vec::new(),
            reject: Vec::new(),
            refused_with: None,
        }
    }

    fn template(env: &Environment, watch_namespaces: bool) -> Self {
        let mut args = vec![
            "template".to_string(),
            env.release_name.clone(),
            CHART_DIR.to_string(),
            "--namespace".to_string(),
            env.namespace.clone(),
            "--values".to_string(),
            values_file(env),
        ];
        let mut expect = vec![
            "kind: Deployment".to_string(),
            "kind: ServiceAccount".to_string(),
            // No environment opens templates across namespaces: turning it on for one must be
            // a deliberate change here too.
            cross_namespace_env("false"),
        ];
        let mut reject = Vec::new();
        // Each environment's metrics.secure reaches the operator.
        let secure = env
            .values
            .get("metrics")
            .and_then(|m| m.get("secure"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        expect.push(secure_metrics_env(&secure.to_string()));
        let label;
        if watch_namespaces {
            args.extend([
                "--set".to_string(),
                format!("watchNamespaces={{{}}}", WATCH_NAMESPACES.join(",")),
            ]);
            label = format!(
                "helm template {} (watchNamespaces={})",
                env.name,
                WATCH_NAMESPACES.join(",")
            );
            for ns in WATCH_NAMESPACES {
                expect.push(format!("namespace: {ns}"));
            }
            expect.push(format!("value: \"{}\"", WATCH_NAMESPACES.join(",")));
            // The operator's rules stay in Roles; only the reviews of secured metrics (which a
            // Role cannot grant) are in a ClusterRole, `<fullname>-cluster`.
            let fullname = &env.release_name;
            reject.push(format!(
                "kind: ClusterRole\nmetadata:\n  name: {fullname}\n"
            ));
            reject.push(format!(
                "kind: ClusterRoleBinding\nmetadata:\n  name: {fullname}\n"
            ));
            expect.push(format!(
                "kind: ClusterRole\nmetadata:\n  name: {fullname}-cluster\n"
            ));
        } else {
            label = format!("helm template {} (all namespaces)", env.name);
            expect.push("kind: ClusterRoleBinding".to_string());
        }
        Self {
            label,
            args,
            expect,
            reject,
            refused_with: None,
        }
    }

    fn run(&self, helm: &Path, root: &Path) -> Result<()> {
        let output = Command::new(helm)
            .args(&self.args)
            .current_dir(root)
            .output()
            .with_context(|| format!("running {}", helm.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let shown = || {
            format!(
                "$ helm {}\n{}{}",
                self.args.join(" "),
                stdout.trim_end(),
                indent_stderr(&stderr)
            )
        };
        if let Some(message) = &self.refused_with {
            ensure!(
                !output.status.success(),
                "helm accepted what it must refuse\n{}",
                shown()
            );
            ensure!(
                stderr.contains(message.as_str()),
                "helm refused, but its message lacks `{message}`\n{}",
                shown()
            );
            return Ok(());
        }
        if !output.status.success() {
            bail!("helm exited with {}\n{}", output.status, shown());
        }
        if let Some(missing) = self.expect.iter().find(|s| !stdout.contains(s.as_str())) {
            bail!("the output lacks `{missing}`\n{}", shown());
        }
        if let Some(found) = self.reject.iter().find(|s| stdout.contains(s.as_str())) {
            bail!("the output contains `{found}`\n{}", shown());
        }
        Ok(())
    }
}

fn indent_stderr(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("\n{}", stderr.trim_end())
    }
}
