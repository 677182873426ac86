//! `cargo xtask ci [stage]`: the whole pipeline, the same locally and in `.ci/run`.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::run_command;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Generated files match spec/.
    GenerateCheck,
    /// rustfmt.
    Fmt,
    /// clippy with warnings denied.
    Clippy,
    /// Tests that need no control plane (codegen, generated types, engine, operator unit tests).
    Unit,
    /// helm lint and template for every environment.
    HelmLint,
    /// Tests against a real etcd + kube-apiserver (harness, CRDs, RBAC, the operator), and on
    /// the local node (pods, the chart, the operator in its pod).
    Integration,
    /// The release images (operator, shell, pause) as archives in target/mcall/images.
    Image,
    /// `cargo xtask deploy dev` onto a fresh local cluster (rollout available, smoke check),
    /// then `cargo xtask down`.
    Deploy,
}

const ALL: [Stage; 8] = [
    Stage::GenerateCheck,
    Stage::Fmt,
    Stage::Clippy,
    Stage::Unit,
    Stage::HelmLint,
    Stage::Integration,
    Stage::Image,
    Stage::Deploy,
];

pub fn run(root: &Path, only: Option<Stage>) -> Result<()> {
    let stages: Vec<Stage> = only.map_or(ALL.to_vec(), |s| vec![s]);
    let started = Instant::now();
    for stage in stages {
        let t = Instant::now();
        println!("==> ci stage {stage:?}");
        run_stage(root, stage)?;
        println!(
            "==> ci stage {stage:?} passed in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
    println!("==> ci passed in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn run_stage(root: &Path, stage: Stage) -> Result<()> {
    match stage {
        Stage::GenerateCheck => crate::generate::run(root, true),
        Stage::Fmt => run_command(root, "cargo", &["fmt", "--all", "--", "--check"]),
        Stage::Clippy => run_command(
            root,
            "cargo",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Stage::Unit => {
            run_command(
                root,
                "cargo",
                &[
                    "test",
                    "--workspace",
                    "--exclude",
                    "mcall-tests",
                    "--exclude",
                    "mcall",
                ],
            )?;
            run_command(root, "cargo", &["test", "-p", "mcall", "--lib", "--bins"])
        }
        Stage::HelmLint => crate::helm::lint(root, &crate::tools_bin_dir()?),
        Stage::Integration => {
            // Build the tools first so their (long, first-time) build shows its own progress.
            crate::tools_bin_dir()?;
            run_command(
                root,
                "cargo",
                &["test", "-p", "mcall-tests", "--", "--test-threads=4"],
            )?;
            // The operator's integration tests: its controllers and its binary on the real plane.
            run_command(
                root,
                "cargo",
                &[
                    "test",
                    "-p",
                    "mcall",
                    "--test",
                    "*",
                    "--",
                    "--test-threads=4",
                ],
            )
        }
        Stage::Image => crate::image::run(root, crate::image::Options::default()),
        Stage::Deploy => {
            // A fresh cluster: one this checkout left running is stopped first.
            crate::cluster::down(root)?;
            let options = crate::deploy::Options {
                env: "dev",
                dry_run: false,
                kubeconfig: None,
                debug_image: false,
            };
            let deployed = crate::deploy::run(root, &options);
            // Always: the node holds machine-wide state and a lock the next run needs.
            let stopped = crate::cluster::down(root);
            deployed.and(stopped)
        }
    }
}
