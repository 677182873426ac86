//! The developer and CI entry point: `cargo xtask <command>`.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod generate;

use std::path::PathBuf;

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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Command::Generate { check } => generate::run(&root, check),
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}
