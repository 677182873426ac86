//! `cargo xtask image`: the operator, shell and pause images as docker-archive tars (no container
//! engine, no registry), optionally imported into a containerd for the local node.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::helm::LocalImage;
use mcall_tests::image::{
    Containerd, ImageArchive, Imported, OPERATOR_IMAGE, SHELL_IMAGE, write_project_images,
};

#[derive(Default)]
pub struct Options {
    /// The dev profile instead of the (LTO, minutes-long) release profile.
    pub debug: bool,
    /// A containerd socket to import the images into.
    pub import: Option<PathBuf>,
    /// Where the archives go (default target/mcall/images).
    pub out: Option<PathBuf>,
    /// The static pause binary (default: the one `cargo xtask tools` builds).
    pub pause: Option<PathBuf>,
}

pub fn run(root: &Path, options: Options) -> Result<()> {
    let mcall = build_mcall(root, options.debug)?;
    let pause = match options.pause {
        Some(pause) => pause,
        None => crate::tools_bin_dir()?.join("pause"),
    };
    let out = options
        .out
        .unwrap_or_else(|| root.join("target").join("mcall").join("images"));
    eprintln!("writing images to {} ...", out.display());
    let archives = write_project_images(&mcall, &pause, &out)
        .with_context(|| format!("building the images from {}", mcall.display()))?;
    for archive in &archives {
        println!("{}\t{}", archive.reference, archive.path.display());
    }
    if let Some(socket) = options.import {
        import(&Containerd::new(socket), &archives)?;
    }
    if let Some(operator) = archives
        .iter()
        .find(|a| a.reference.repository == OPERATOR_IMAGE)
    {
        eprintln!(
            "deploy it with: --set image.repository={} --set image.tag={}",
            operator.reference.repository, operator.reference.tag
        );
    }
    Ok(())
}

/// Builds the images and imports them into the local node's containerd; returns the operator
/// image, for helm.
pub fn build_and_import(root: &Path, debug: bool, socket: &Path) -> Result<LocalImage> {
    let mcall = build_mcall(root, debug)?;
    let pause = crate::tools_bin_dir()?.join("pause");
    let out = root.join("target").join("mcall").join("images");
    let archives = write_project_images(&mcall, &pause, &out)
        .with_context(|| format!("building the images from {}", mcall.display()))?;
    import(&Containerd::new(socket), &archives)?;
    let operator = archives
        .iter()
        .find(|a| a.reference.repository == OPERATOR_IMAGE)
        .context("no operator image was built")?;
    let shell = archives
        .iter()
        .find(|a| a.reference.repository == SHELL_IMAGE)
        .context("no shell image was built")?;
    Ok(LocalImage {
        repository: operator.reference.repository.clone(),
        tag: operator.reference.tag.clone(),
        shell: shell.reference.to_string(),
    })
}

fn import(containerd: &Containerd, archives: &[ImageArchive]) -> Result<()> {
    for archive in archives {
        let done = containerd.ensure(archive).with_context(|| {
            format!(
                "importing {} into {}",
                archive.path.display(),
                containerd.address.display()
            )
        })?;
        let what = match done {
            Imported::AlreadyPresent => "already present, same image ID",
            Imported::Imported => "imported",
        };
        eprintln!("{}: {what}", archive.reference);
    }
    Ok(())
}

/// Builds the `mcall` binary and returns its path, which cargo reports (so a CARGO_TARGET_DIR or
/// build.target-dir setting is followed).
fn build_mcall(root: &Path, debug: bool) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "-p", "mcall", "--bin", "mcall"]);
    for name in package_variables() {
        command.env_remove(name);
    }
    if !debug {
        command.arg("--release");
    }
    let output = command
        .arg("--message-format=json-render-diagnostics")
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("starting `cargo build -p mcall`")?;
    if !output.status.success() {
        bail!(
            "`cargo build -p mcall --bin mcall` failed ({})",
            output.status
        );
    }
    executable(&String::from_utf8_lossy(&output.stdout), "mcall")
        .context("cargo built mcall but reported no executable for it")
}

/// The variables `cargo run` sets for xtask itself (`CARGO_PKG_NAME=xtask`, …). ring's build
/// script watches `CARGO_PKG_*`, so handing them on to the inner `cargo build` would rebuild ring
/// and everything above it on each call, and once more on the next plain `cargo build`.
fn package_variables() -> Vec<std::ffi::OsString> {
    std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| {
            let name = name.to_string_lossy();
            name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                ]
                .contains(&name.as_ref())
        })
        .collect()
}

/// The executable cargo's JSON messages report for the binary target `name`.
fn executable(messages: &str, name: &str) -> Option<PathBuf> {
    messages
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_is_taken_from_the_binary_artifact() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"mcall","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"mcall","kind":["bin"]},"executable":"/t/debug/mcall"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable(messages, "mcall"),
            Some(PathBuf::from("/t/debug/mcall"))
        );
        assert_eq!(executable(messages, "other"), None);
    }
}
