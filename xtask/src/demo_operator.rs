//! The operator `cargo xtask demo` runs as a process on the host (a debug build, its pid in
//! target/mcall/operator.pid): started by the demo, stopped by `down` and by `deploy`, whose
//! in-cluster operator would otherwise share the work with it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The examples check the operator's own health endpoint on this port.
const OPERATOR_PORT: &str = "8080";

fn pid_file(root: &Path) -> PathBuf {
    root.join("target/mcall/operator.pid")
}

/// Builds and starts `mcall operator` in the background, replacing one a previous demo started.
pub fn start(root: &Path, kubeconfig: &Path) -> Result<()> {
    stop(root)?;
    // Whatever else answers there would pass the readiness wait below and the examples' health
    // checks, while this operator could not bind.
    if std::net::TcpStream::connect(format!("127.0.0.1:{OPERATOR_PORT}")).is_ok() {
        bail!(
            "127.0.0.1:{OPERATOR_PORT} is taken by another process (another demo's operator?); \
             the demo's operator serves /healthz there for the examples: stop that process first"
        );
    }
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
pub fn stop(root: &Path) -> Result<()> {
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
