//! `cargo xtask demo`: the main job on the embedded local control plane — CRDs, the operator,
//! the examples, and what `kubectl get` then shows.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The examples check the operator's own health endpoint on this port.
const OPERATOR_PORT: &str = "8080";

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
        kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "helm/mcall-operator/crds/"
        ])?
    );
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/mcalltasks.mcall.tz.io",
        "crd/mcallworkflows.mcall.tz.io",
    ])?;

    println!("==> starting the operator (logs: target/mcall/operator.log)");
    start_operator(root, &kubeconfig)?;

    println!("==> applying examples/");
    print!(
        "{}",
        kubectl(&["apply", "--server-side", "-f", "examples/"])?
    );

    // One-shot tasks finish within seconds; scheduled ones wait for their next tick.
    let deadline = Instant::now() + Duration::from_secs(60);
    let one_shot_phases =
        "jsonpath={range .items[*]}{.spec.schedule}|{.status.phase}{\"\\n\"}{end}";
    loop {
        let rows = kubectl(&["get", "mcalltasks", "-o", one_shot_phases])?;
        let unsettled = rows
            .lines()
            .filter(|row| row.starts_with('|'))
            .filter(|row| !matches!(&row[1..], "Succeeded" | "Failed" | "Skipped"))
            .count();
        if unsettled == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    println!("==> kubectl get mcalltasks,mcallworkflows");
    print!("{}", kubectl(&["get", "mcalltasks,mcallworkflows"])?);
    println!();
    println!(
        "Scheduled tasks show their next run (kubectl get mct -o wide); McallWorkflows get no status yet:"
    );
    println!("the workflow controller is a later issue.");
    println!(
        "The control plane and the operator keep running: export KUBECONFIG={}",
        kubeconfig.display()
    );
    println!("Stop both with: cargo xtask down");
    Ok(())
}

fn pid_file(root: &Path) -> PathBuf {
    root.join("target/mcall/operator.pid")
}

/// Builds and starts `mcall operator` in the background, replacing one a previous demo started.
fn start_operator(root: &Path, kubeconfig: &Path) -> Result<()> {
    stop_operator(root)?;
    crate::run_command(
        root,
        "cargo",
        &["build", "--quiet", "-p", "mcall", "--bin", "mcall"],
    )?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let log = std::fs::File::create(root.join("target/mcall/operator.log"))
        .context("creating the operator log")?;
    let child = Command::new(target.join("debug/mcall"))
        .args(["operator", "--kubeconfig"])
        .arg(kubeconfig)
        .args([
            "--command-namespaces",
            "*",
            "--port",
            OPERATOR_PORT,
            "--bind-address",
            "127.0.0.1",
        ])
        .env("LOG_LEVEL", "INFO")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting mcall operator")?;
    std::fs::write(pid_file(root), child.id().to_string())
        .context("writing the operator pid file")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if Instant::now() > deadline {
            bail!("the operator did not become ready; see target/mcall/operator.log");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn ready() -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(format!("127.0.0.1:{OPERATOR_PORT}")) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut response = String::new();
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

/// Stops the operator a demo started (SIGTERM: running executions finish first).
pub fn stop_operator(root: &Path) -> Result<()> {
    let path = pid_file(root);
    let Ok(pid) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let pid = pid.trim().to_owned();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(25);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-KILL", &pid])
        .stderr(Stdio::null())
        .status();
    std::fs::remove_file(&path).context("removing the operator pid file")?;
    println!("operator stopped");
    Ok(())
}
