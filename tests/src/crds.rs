//! Installing CustomResourceDefinitions while a plane starts, before its controller manager
//! ([`crate::ControlPlaneOptions::crds`]).
//!
//! Why before: kube-controller-manager's garbage collector learns which kinds exist from
//! discovery when it starts and then only every 30 s. A CRD installed after it started is
//! watched only after that resync: measured here, the first dependent of a new kind's object
//! was collected 40 s after the owner's deletion, the next ones in under 0.1 s.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Error, Result};

/// `kubectl apply --server-side` of each path (a file or a directory of manifests), then waits
/// until every CRD they define is Established, so the apiserver serves (and discovery lists)
/// their kinds.
pub(crate) fn install(
    bin_dir: &Path,
    kubeconfig: &Path,
    paths: &[PathBuf],
    timeout: Duration,
) -> Result<()> {
    for path in paths {
        let timeout = format!("--timeout={}s", timeout.as_secs().max(1));
        kubectl(bin_dir, kubeconfig, &["apply", "--server-side"], path)?;
        let wait = ["wait", "--for=condition=Established", timeout.as_str()];
        kubectl(bin_dir, kubeconfig, &wait, path)?;
    }
    Ok(())
}

/// Runs `kubectl <args> -f <path>`; fails with its stderr.
fn kubectl(bin_dir: &Path, kubeconfig: &Path, args: &[&str], path: &Path) -> Result<()> {
    let what = format!("kubectl {} -f {}", args.join(" "), path.display());
    let out = Command::new(bin_dir.join("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .arg("-f")
        .arg(path)
        .output()
        .map_err(|e| Error::InstallCrds {
            what: what.clone(),
            reason: format!("could not start it: {e}"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::InstallCrds {
        what,
        reason: format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}
