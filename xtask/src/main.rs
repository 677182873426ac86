//! The developer and CI entry point: `cargo xtask <command>`.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod bench;
mod bench_admission;
mod bench_api;
mod bench_cluster;
mod bench_failover;
mod bench_pods;
mod bench_scale;
mod bench_schedule;
mod bench_tasks;
mod bench_workflow;
mod ci;
mod cluster;
mod demo;
mod demo_operator;
mod deploy;
mod fuzz;
mod generate;
mod helm;
mod image;
mod kubectl;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "mcall's developer and CI tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Regenerate the Rust types, CRDs, RBAC and Helm values from spec/.
    Generate {
        /// Write nothing; fail and name every file that would change.
        #[arg(long)]
        check: bool,
    },
    /// Build (or reuse from the cache) kube-apiserver, kube-controller-manager, etcd, kubectl and
    /// helm; print their directory.
    Tools,
    /// Start a local cluster (etcd, kube-apiserver, kube-controller-manager, and a node:
    /// containerd, kubelet, kube-proxy, kube-scheduler, CoreDNS) and write
    /// target/mcall/kubeconfig.
    Up {
        /// The control plane only (no root needed; pods are never run).
        #[arg(long)]
        no_node: bool,
    },
    /// Stop the local cluster (and tear its node down).
    Down,
    /// Tell whether the local control plane runs and is healthy.
    Status,
    /// The main job on the local cluster: the operator deployed in its pod (chart, dev
    /// values), the examples applied and run, then `kubectl get`.
    Demo {
        /// Run the operator as a process on this machine instead (no image, no rollout).
        #[arg(long)]
        out_of_cluster: bool,
    },
    /// Run the CI pipeline, or one stage of it.
    Ci {
        #[arg(value_enum)]
        stage: Option<ci::Stage>,
    },
    /// Install the chart for an environment (dev, staging, prod) with its generated values,
    /// wait until it is available, and smoke-check it. Without --kubeconfig: onto the local
    /// cluster (started if needed), with the operator image built and imported.
    Deploy {
        env: String,
        /// Render the manifests only (`helm template`); no cluster needed.
        #[arg(long)]
        dry_run: bool,
        /// A cluster of yours (the chart's image values are used as they are).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Build the local image with the dev profile (faster; the release profile is LTO).
        #[arg(long)]
        debug_image: bool,
    },
    /// Build the operator, shell and pause images as docker-archive tars (no engine, no
    /// registry); print each reference and archive.
    Image {
        /// Package a dev-profile `mcall` (the release profile's fat LTO takes minutes).
        #[arg(long)]
        debug: bool,
        /// Import the images into the containerd at this socket (k8s.io namespace), skipping
        /// those already there with the same image ID.
        #[arg(long, value_name = "SOCKET")]
        import: Option<PathBuf>,
        /// Write the archives here instead of target/mcall/images.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The static pause binary (default: `pause` in the `cargo xtask tools` directory).
        #[arg(long, value_name = "PATH")]
        pause: Option<PathBuf>,
    },
    /// Fuzz one target of fuzz/ under AFL++ (cargo-afl, installed into ~/.cache/mcall on first
    /// use) for --time seconds or until --execs executions, whichever comes first; report
    /// executions, exec/s, crashes and the slowest input, and record them in bench/results/ and
    /// BENCHMARKS.md. Fails if a crash or hang was found.
    Fuzz {
        /// The target (see --list).
        #[arg(required_unless_present = "list")]
        target: Option<String>,
        /// How long to fuzz, in seconds.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Stop after about this many executions (e.g. 10000000), if --time has not run out;
        /// with --resume, counting the earlier runs' executions.
        #[arg(long)]
        execs: Option<u64>,
        /// Go on from the last run of the target (its queue and counts in fuzz/out/) instead of
        /// starting again from the seeds.
        #[arg(long)]
        resume: bool,
        /// AFL++ instances on the target at once (one per core), sharing their finds; their
        /// executions are counted together.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
        /// Build and fuzz nothing: record what fuzz/out/<target> holds (a run interrupted, or
        /// made by hand with cargo afl fuzz) in bench/results/ and BENCHMARKS.md.
        #[arg(long, conflicts_with_all = ["resume", "execs", "jobs"])]
        record: bool,
        /// List the targets and what each covers.
        #[arg(long)]
        list: bool,
    },
    /// Measure and record a benchmark in bench/results/ and BENCHMARKS.md.
    Bench {
        #[arg(value_enum)]
        which: bench::Which,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Command::Generate { check } => generate::run(&root, check),
        Command::Tools => {
            println!("{}", tools_bin_dir()?.display());
            Ok(())
        }
        Command::Up { no_node } => cluster::up(&root, no_node),
        Command::Down => cluster::down(&root),
        Command::Status => cluster::status(&root),
        Command::Demo { out_of_cluster } => demo::run(
            &root,
            match out_of_cluster {
                true => demo::Mode::OutOfCluster,
                false => demo::Mode::InCluster,
            },
        ),
        Command::Ci { stage } => ci::run(&root, stage),
        Command::Deploy {
            env,
            dry_run,
            kubeconfig,
            debug_image,
        } => deploy::run(
            &root,
            &deploy::Options {
                env: &env,
                dry_run,
                kubeconfig: kubeconfig.as_deref(),
                debug_image,
            },
        ),
        Command::Image {
            debug,
            import,
            out,
            pause,
        } => image::run(
            &root,
            image::Options {
                debug,
                import,
                out,
                pause,
            },
        ),
        Command::Bench { which } => bench::run(&root, which),
        Command::Fuzz {
            target,
            time,
            execs,
            resume,
            jobs,
            record,
            list,
        } => fuzz::run(
            &root,
            &fuzz::Options {
                target: target.as_deref(),
                seconds: time,
                executions: execs,
                resume,
                jobs,
                record_only: record,
                list,
            },
        ),
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The pinned Go-built tools, built on first use.
fn tools_bin_dir() -> Result<PathBuf> {
    Ok(mcall_tests::tools_bin_dir()?)
}

/// Runs a command in `dir`, inheriting the terminal; fails naming the command.
fn run_command(dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    let status = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|e| anyhow::anyhow!("starting `{program}` failed: {e}"))?;
    anyhow::ensure!(
        status.success(),
        "`{program} {}` failed ({status})",
        args.join(" ")
    );
    Ok(())
}
