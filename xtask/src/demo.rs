//! `cargo xtask demo`: the main job on the embedded local control plane.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

pub fn run(root: &Path) -> Result<()> {
    let bin = crate::tools_bin_dir()?;
    crate::cluster::up(root)?;
    let kubeconfig = root.join("target/mcall/kubeconfig");
    let kubectl = |args: &[&str]| -> Result<String> {
        let out = Command::new(bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .current_dir(root)
            .output()
            .context("running kubectl")?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };

    println!("==> installing the generated CRDs");
    print!(
        "{}",
        kubectl(&["apply", "--server-side", "-f", "helm/mcall-operator/crds/"])?
    );
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/mcalltasks.mcall.tz.io",
        "crd/mcallworkflows.mcall.tz.io",
    ])?;

    println!("==> the operator");
    println!(
        "    not started: the operator (issue #4) has not landed yet, so the examples get no status."
    );

    println!("==> applying examples/");
    print!(
        "{}",
        kubectl(&["apply", "--server-side", "-f", "examples/"])?
    );

    println!("==> kubectl get mcalltasks,mcallworkflows");
    print!("{}", kubectl(&["get", "mcalltasks,mcallworkflows"])?);
    println!();
    println!(
        "The control plane keeps running: export KUBECONFIG={}",
        kubeconfig.display()
    );
    println!("Stop it with: cargo xtask down");
    Ok(())
}
