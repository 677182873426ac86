//! Locating the pinned binaries (etcd, kube-apiserver, kube-controller-manager, kubectl, helm;
//! for the node kube-scheduler, kubelet, kube-proxy, CoreDNS and pause).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::{Error, Result};

/// Environment variable that points at an existing bin directory and skips the build script.
pub const TOOLS_BIN_ENV: &str = "MCALL_TOOLS_BIN";

/// The binaries the harness needs; all must be present in the bin directory.
const REQUIRED: [&str; 10] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "helm",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "coredns",
    "pause",
];

/// Returns the directory holding etcd, kube-apiserver, kube-controller-manager, kubectl, helm
/// and the node's kube-scheduler, kubelet, kube-proxy, CoreDNS and pause.
///
/// Honours `MCALL_TOOLS_BIN` when set. Otherwise runs `xtask/tools/build-tools.sh`, which builds
/// the tools on first use (minutes; its progress is shown on stderr) and afterwards just prints
/// the cached directory as the last line of stdout. A success is remembered for the rest of
/// the process, so several control planes in one test binary run the script once.
pub fn tools_bin_dir() -> Result<PathBuf> {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = FOUND.get() {
        return Ok(dir.clone());
    }
    let dir = locate()?;
    Ok(FOUND.get_or_init(|| dir).clone())
}

fn locate() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(TOOLS_BIN_ENV) {
        let dir = PathBuf::from(dir);
        check_bin_dir(&dir).map_err(|missing| {
            Error::LocateTools(format!(
                "{TOOLS_BIN_ENV}={} does not contain {missing}",
                dir.display()
            ))
        })?;
        return Ok(dir);
    }
    run_build_script(&build_script())
}

/// The build script, found relative to this crate so it works from any working directory.
pub(crate) fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("xtask")
        .join("tools")
        .join("build-tools.sh")
}

fn run_build_script(script: &Path) -> Result<PathBuf> {
    let fail = |reason: String| Error::BuildTools {
        script: script.to_path_buf(),
        reason,
    };
    if !script.is_file() {
        return Err(fail("the script does not exist".into()));
    }
    // No `go` check here: with a warm cache the script needs no Go toolchain, and without one
    // it checks `command -v go` itself and exits 1 with a clear message on stderr.
    let output = Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Inherited so a first (multi-minute) build shows its progress.
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(format!("could not run bash: {e}")))?;
    if !output.status.success() {
        return Err(fail(format!(
            "exited with {} (see its stderr above; a first build needs the Go toolchain, \
             Go >= 1.24, on PATH)",
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .ok_or_else(|| fail("printed no bin directory on stdout".into()))?;
    let dir = PathBuf::from(last);
    check_bin_dir(&dir).map_err(|missing| {
        fail(format!(
            "its bin directory {} does not contain {missing}",
            dir.display()
        ))
    })?;
    Ok(dir)
}

/// Returns the name of the first required binary missing from `dir`.
fn check_bin_dir(dir: &Path) -> std::result::Result<(), &'static str> {
    match REQUIRED.iter().find(|b| !dir.join(b).is_file()) {
        Some(missing) => Err(missing),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_script_is_found_relative_to_the_crate() {
        assert!(build_script().is_file(), "{}", build_script().display());
    }

    #[test]
    fn check_bin_dir_names_the_missing_binary() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_bin_dir(dir.path()), Err("etcd"));
    }
}
