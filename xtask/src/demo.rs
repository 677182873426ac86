//! `cargo xtask demo`: the main job on the embedded local control plane — CRDs, the operator,
//! the examples (tasks, and workflows run to their end), and what `kubectl get` then shows.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::kubectl::Kubectl;

/// How long the examples' one-shot tasks and workflows get to end. Each takes seconds; the
/// deadline only keeps a hung run from hanging the demo.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The workflow whose steps the demo lists: a chain of four steps ending in an HTTP check.
const SHOWN_WORKFLOW: &str = "deployment-workflow";

/// Where the demo's operator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// As users run it: the chart's dev release in the local cluster, in its pod.
    InCluster,
    /// A process on this machine (quick iteration: no image, no rollout).
    OutOfCluster,
}

pub fn run(root: &Path, mode: Mode) -> Result<()> {
    let kubectl = Kubectl::new(root, &crate::cluster::kubeconfig(root))?;
    // Two operators would each run every task: only one of the two modes runs at a time.
    match mode {
        Mode::InCluster => {
            crate::demo_operator::stop(root)?;
            println!("==> deploying the operator into the local cluster (cargo xtask deploy dev)");
            let options = crate::deploy::Options {
                env: "dev",
                dry_run: false,
                kubeconfig: None,
                debug_image: false,
            };
            crate::deploy::run(root, &options)?;
        }
        Mode::OutOfCluster => {
            // The operator runs here, not in a pod: the control plane is enough (a running
            // cluster with a node is used as it is).
            crate::cluster::up(root, true)?;
            install_crds(&kubectl)?;
            let _ = kubectl.run(&[
                "delete",
                "deployment",
                "-n",
                "mcall-dev",
                "-l",
                "app.kubernetes.io/instance=mcall-operator-dev",
                "--ignore-not-found",
            ]);
            println!("==> starting the operator (logs: target/mcall/operator.log)");
            crate::demo_operator::start(root, kubectl.kubeconfig())?;
        }
    }

    println!("==> applying examples/");
    let applied = kubectl.run(&["apply", "--server-side", "-f", "examples/"])?;
    println!("{applied}");
    let tasks = applied_names(&applied, "mcalltask");
    let workflows = applied_names(&applied, "mcallworkflow");
    anyhow::ensure!(
        !workflows.is_empty(),
        "kubectl apply named no McallWorkflow of examples/"
    );

    println!(
        "==> waiting up to {}s for the one-shot tasks and workflows to end",
        SETTLE_TIMEOUT.as_secs()
    );
    wait_for(&kubectl, &TASKS, &tasks)?;
    let workflow_rows = wait_for(&kubectl, &WORKFLOWS, &workflows)?;

    // Workflow steps are McallTasks too; they are listed per workflow below.
    kubectl.show(&["get", "mcalltasks", "-l", "!mcall.tz.io/workflow"])?;
    kubectl.show(&["get", "mcallworkflows"])?;
    show_steps(&kubectl, SHOWN_WORKFLOW)?;
    println!();
    report_workflows(&kubectl, &workflows, &workflow_rows)?;
    println!(
        "A template (label mcall.tz.io/template: \"true\") shows Skipped: it runs only as a step."
    );
    println!("Scheduled tasks and workflows show their next run: kubectl get mct,mcwf -o wide");
    if mode == Mode::InCluster {
        show_refusal(&kubectl)?;
        println!(
            "The operator runs in its pod: kubectl -n mcall-dev logs deploy/mcall-operator-dev"
        );
    }
    println!(
        "The cluster and the operator keep running: export KUBECONFIG={}",
        kubectl.kubeconfig().display()
    );
    println!("Stop both with: cargo xtask down");
    Ok(())
}

/// The admission webhook (on in the dev chart) refuses at `kubectl apply` what the controllers
/// could never run.
fn show_refusal(kubectl: &Kubectl) -> Result<()> {
    println!("==> kubectl apply of a workflow whose two steps wait for each other");
    let cyclic = "apiVersion: mcall.tz.io/v1\nkind: McallWorkflow\nmetadata:\n  name: demo-cycle\nspec:\n  tasks:\n    - {name: a, type: get, input: 'http://127.0.0.1:8080/healthz', dependencies: [b]}\n    - {name: b, type: get, input: 'http://127.0.0.1:8080/healthz', dependencies: [a]}\n";
    match kubectl.apply(cyclic) {
        Err(refused) => println!("{refused}"),
        Ok(()) => {
            // failurePolicy Ignore (dev): a webhook that could not answer admits it.
            println!("admitted: the webhook did not answer; its status says InvalidSpec instead");
            kubectl.run(&["delete", "mcallworkflow", "demo-cycle", "--wait=false"])?;
        }
    }
    Ok(())
}

fn install_crds(kubectl: &Kubectl) -> Result<()> {
    println!("==> installing the generated CRDs");
    println!(
        "{}",
        kubectl.run(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "helm/mcall-operator/crds/"
        ])?
    );
    kubectl.run(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/mcalltasks.mcall.tz.io",
        "crd/mcallworkflows.mcall.tz.io",
    ])?;
    Ok(())
}

/// The names of the objects of `kind` (e.g. `mcallworkflow`) in `kubectl apply` output, whose
/// lines read `<kind>.mcall.tz.io/<name> serverside-applied`.
fn applied_names(applied: &str, kind: &str) -> Vec<String> {
    let prefix = format!("{kind}.mcall.tz.io/");
    applied
        .lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// What to wait for on one kind: the fields of each object's row (after its name), and when a
/// row has ended.
struct Settle {
    resource: &'static str,
    fields: &'static [&'static str],
    settled: fn(&Row) -> bool,
}

/// One object's name and fields, as `kubectl get -o jsonpath` printed them (absent ones empty).
struct Row {
    name: String,
    fields: Vec<String>,
}

impl Row {
    fn field(&self, i: usize) -> &str {
        self.fields.get(i).map_or("", String::as_str)
    }
}

/// Tasks: a one-shot task has ended when it has a final phase (a template is Skipped); a
/// scheduled one waits for its next tick, which the demo does not wait for.
const TASKS: Settle = Settle {
    resource: "mcalltasks",
    fields: &[".spec.schedule", ".status.phase"],
    settled: |row| {
        !row.field(0).is_empty() || matches!(row.field(1), "Succeeded" | "Failed" | "Skipped")
    },
};

/// Column indexes of [`WORKFLOWS`]' fields.
const WF_SCHEDULE: usize = 0;
const WF_PHASE: usize = 1;
const WF_GENERATION: usize = 2;
const WF_RUN_GENERATION: usize = 3;
const WF_NEXT_RETRY: usize = 4;
const WF_NEXT_SCHEDULE: usize = 5;
const WF_TIME_ZONE: usize = 6;

/// Workflows: a one-shot workflow has ended when the run of its current generation has a final
/// phase and no re-run is due (a `retryPolicy` re-run shows Failed until it starts); a scheduled
/// one has settled once the operator has computed its next run.
const WORKFLOWS: Settle = Settle {
    resource: "mcallworkflows",
    fields: &[
        ".spec.schedule",
        ".status.phase",
        ".metadata.generation",
        ".status.runGeneration",
        ".status.nextRetryTime",
        ".status.nextScheduleTime",
        ".spec.timeZone",
    ],
    settled: |row| {
        if !row.field(WF_SCHEDULE).is_empty() {
            return !row.field(WF_NEXT_SCHEDULE).is_empty();
        }
        matches!(row.field(WF_PHASE), "Succeeded" | "Failed")
            && row.field(WF_GENERATION) == row.field(WF_RUN_GENERATION)
            && row.field(WF_NEXT_RETRY).is_empty()
    },
};

/// Polls `kubectl get` until the row of every object in `names` has settled, or
/// [`SETTLE_TIMEOUT`] passes; returns the last rows of `names` found (the caller judges them).
fn wait_for(kubectl: &Kubectl, settle: &Settle, names: &[String]) -> Result<Vec<Row>> {
    let mut jsonpath = String::from("jsonpath={range .items[*]}{.metadata.name}");
    for field in settle.fields {
        jsonpath.push_str(&format!("|{{{field}}}"));
    }
    jsonpath.push_str("{\"\\n\"}{end}");
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let listing = kubectl.run(&["get", settle.resource, "-o", &jsonpath])?;
        let rows: Vec<Row> = listing
            .lines()
            .filter_map(|line| {
                let mut parts = line.split('|').map(str::to_owned);
                let name = parts.next()?;
                names.contains(&name).then(|| Row {
                    name,
                    fields: parts.collect(),
                })
            })
            .collect();
        let unsettled: Vec<&str> = rows
            .iter()
            .filter(|row| !(settle.settled)(row))
            .map(|row| row.name.as_str())
            .collect();
        if unsettled.is_empty() && rows.len() == names.len() {
            return Ok(rows);
        }
        if Instant::now() > deadline {
            println!(
                "{} not ended after {}s: {}",
                settle.resource,
                SETTLE_TIMEOUT.as_secs(),
                unsettled.join(", ")
            );
            return Ok(rows);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Lists the steps of a workflow: its child McallTasks, with their run and step labels.
fn show_steps(kubectl: &Kubectl, workflow: &str) -> Result<()> {
    let selector = format!("mcall.tz.io/workflow={workflow}");
    kubectl.show(&[
        "get",
        "mcalltasks",
        "-l",
        &selector,
        "-L",
        "mcall.tz.io/run,mcall.tz.io/step",
    ])
}

/// Prints how each example workflow ended; fails, listing its steps, when a one-shot one did not
/// succeed (or is missing), so a broken workflow controller or example breaks the demo.
fn report_workflows(kubectl: &Kubectl, names: &[String], rows: &[Row]) -> Result<()> {
    let mut failed: Vec<String> = names
        .iter()
        .filter(|name| !rows.iter().any(|row| &row.name == *name))
        .cloned()
        .collect();
    for row in rows {
        let schedule = row.field(WF_SCHEDULE);
        if !schedule.is_empty() {
            let zone = Some(row.field(WF_TIME_ZONE)).filter(|z| !z.is_empty());
            let next = Some(row.field(WF_NEXT_SCHEDULE)).filter(|n| !n.is_empty());
            println!(
                "{}: runs on its schedule ({schedule}, {}); next run at {}",
                row.name,
                zone.unwrap_or("UTC"),
                next.unwrap_or("(not computed yet)")
            );
            continue;
        }
        let phase = Some(row.field(WF_PHASE)).filter(|p| !p.is_empty());
        println!("{}: {}", row.name, phase.unwrap_or("no status yet"));
        if phase != Some("Succeeded") || !(WORKFLOWS.settled)(row) {
            failed.push(row.name.clone());
        }
    }
    for name in &failed {
        let why = kubectl
            .run(&[
                "get",
                "mcallworkflow",
                name,
                "-o",
                "jsonpath={.status.reason}: {.status.message}",
            ])
            .unwrap_or_else(|e| format!("{e:#}"));
        println!("==> {name} did not succeed: {why}");
        if name != SHOWN_WORKFLOW {
            show_steps(kubectl, name)?;
        }
    }
    if !failed.is_empty() {
        bail!(
            "example workflow(s) did not succeed: {} (operator log: target/mcall/operator.log)",
            failed.join(", ")
        );
    }
    Ok(())
}
