//! `cargo xtask generate [--check]`: spec/ → generated files, written all-or-nothing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mcall_codegen::{GeneratedFiles, SpecFiles};

/// Generates every file from `root/spec`. With `check`, writes nothing and fails naming each file
/// that would change.
pub fn run(root: &Path, check: bool) -> Result<()> {
    let files = generate(root)?;
    let changed: Vec<&PathBuf> = files
        .iter()
        .filter(|(path, contents)| {
            std::fs::read_to_string(root.join(path)).ok().as_deref() != Some(contents.as_str())
        })
        .map(|(path, _)| path)
        .collect();
    if check {
        if changed.is_empty() {
            println!(
                "generate --check: {} generated files are up to date",
                files.len()
            );
            return Ok(());
        }
        for path in &changed {
            eprintln!("  would change: {}", path.display());
        }
        bail!(
            "{} generated file(s) are out of date: run `cargo xtask generate`",
            changed.len()
        );
    }
    write_all(root, &files, &changed)?;
    println!("generate: {} files, {} changed", files.len(), changed.len());
    Ok(())
}

pub fn generate(root: &Path) -> Result<GeneratedFiles> {
    let spec_dir = root.join("spec");
    let spec = SpecFiles::read_dir(&spec_dir)
        .with_context(|| format!("reading {}", spec_dir.display()))?;
    mcall_codegen::generate(&spec).map_err(|errors| anyhow::anyhow!("{errors}"))
}

/// All or nothing: every changed file is first written beside its target, then all are renamed
/// into place. A failure while staging removes the staged files and leaves the tree untouched.
fn write_all(root: &Path, files: &GeneratedFiles, changed: &[&PathBuf]) -> Result<()> {
    let mut staged = Vec::new();
    let result = (|| -> Result<()> {
        for path in changed {
            let target = root.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let tmp = target.with_extension("xtask-tmp");
            std::fs::write(&tmp, &files[*path])
                .with_context(|| format!("writing {}", tmp.display()))?;
            staged.push((tmp, target));
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _) in &staged {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (tmp, target) in staged {
        std::fs::rename(&tmp, &target)
            .with_context(|| format!("moving {} into place", target.display()))?;
    }
    Ok(())
}
