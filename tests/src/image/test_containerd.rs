//! A private, throwaway containerd for tests: its own root, state, sockets and config in a temp
//! directory, the CRI plugin off (so it binds no port and starts no CNI), killed and removed on
//! drop, or by a watchdog if the test process dies first.
//!
//! It needs root, `containerd` and `ctr` on PATH, and `runc` for running containers (start them
//! with [`TestContainerd::ctr_run`]). Shims put their sockets in /run/containerd/s/, named by a
//! hash of this containerd's address, so they never meet those of a containerd the machine runs.
//!
//! `ctr run` asks runc for no `oom_score_adj`, so containers start on machines without
//! CAP_SYS_RESOURCE (this project's VMs). The CRI plugin does set one per pod (lower than
//! containerd's own for the sandbox), which needs that capability unless its
//! `restrict_oom_score_adj = true` is set.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::containerd::{Containerd, K8S_NAMESPACE};
use crate::process::{log_tail, spawn_logged};
use crate::watchdog::Watchdog;
use crate::{Error, Result, io_err};

const WHAT: &str = "containerd";
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A running private containerd.
#[derive(Debug)]
pub struct TestContainerd {
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    address: PathBuf,
    log: PathBuf,
    // Last: removed after the process is gone.
    dir: TempDir,
}

impl TestContainerd {
    /// Starts containerd and waits until it answers `ctr version`.
    pub fn start() -> Result<TestContainerd> {
        let dir = tempfile::Builder::new()
            .prefix("mcall-containerd-")
            .tempdir()
            .map_err(io_err("creating a temp dir for", "containerd"))?;
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_toml(dir.path()))
            .map_err(io_err("writing the containerd config", &config))?;
        let log = dir.path().join("containerd.log");
        let args = vec![
            "--config".to_string(),
            config.to_string_lossy().into_owned(),
        ];
        let child = spawn_logged(WHAT, Path::new("containerd"), &args, &log)?;
        let watchdog = Watchdog::spawn(&[child.id()], dir.path())?;
        let mut containerd = TestContainerd {
            child: Some(child),
            watchdog: Some(watchdog),
            address: dir.path().join("containerd.sock"),
            log,
            dir,
        };
        containerd.wait_ready()?;
        Ok(containerd)
    }

    /// The gRPC socket.
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// A client for the `k8s.io` namespace.
    pub fn client(&self) -> Containerd {
        Containerd::new(&self.address)
    }

    /// `ctr` with this containerd's address and the `k8s.io` namespace; add the subcommand.
    pub fn ctr(&self) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.address)
            .args(["--namespace", K8S_NAMESPACE]);
        command
    }

    /// `ctr run --rm` with the IO fifos and runc's state under this containerd's directory
    /// (both default to /run/containerd); add the image, the container ID and the command.
    pub fn ctr_run(&self) -> Command {
        let mut command = self.ctr();
        command
            .args(["run", "--rm", "--fifo-dir"])
            .arg(self.dir.path().join("fifo"))
            .arg("--runc-root")
            .arg(self.dir.path().join("runc"));
        command
    }

    /// containerd's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("running until dropped");
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::ProcessExited {
                    what: WHAT,
                    status: status.to_string(),
                    log: self.log.clone(),
                    tail: self.log_tail(40),
                });
            }
            let answer = self.ctr().arg("version").stdin(Stdio::null()).output();
            let last_error = match answer {
                Ok(out) if out.status.success() => return Ok(()),
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                Err(e) => format!("running ctr failed: {e}"),
            };
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    what: WHAT,
                    timeout: READY_TIMEOUT,
                    last_error,
                    log: self.log.clone(),
                    tail: self.log_tail(40),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Removes what a failed test left running: each task (with its shim) and container.
    fn remove_containers(&self) {
        let Ok(listing) = self.ctr().args(["containers", "ls", "-q"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&listing.stdout).split_whitespace() {
            let _ = self.ctr().args(["tasks", "rm", "--force", id]).output();
            let _ = self.ctr().args(["containers", "rm", id]).output();
        }
    }
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        self.remove_containers();
        if let Some(mut child) = self.child.take() {
            // SIGKILL: its data is deleted right after.
            let _ = child.kill();
            let _ = child.wait();
        }
        unmount_under(self.dir.path());
        // The shims' socket directory, if nothing else uses it (remove_dir refuses a non-empty one).
        let _ = std::fs::remove_dir("/run/containerd/s");
        let _ = std::fs::remove_dir("/run/containerd");
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
    }
}

/// Root, state, sockets and the `opt` plugin's directory (by default /opt/containerd) all under
/// `dir`; no CRI plugin, no debug or metrics listener.
fn config_toml(dir: &Path) -> String {
    let path = |name: &str| dir.join(name).to_string_lossy().replace('\\', "\\\\");
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{grpc}"

[ttrpc]
  address = "{ttrpc}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
        root = path("root"),
        state = path("state"),
        grpc = path("containerd.sock"),
        ttrpc = path("containerd.sock.ttrpc"),
        opt = path("opt"),
    )
}

/// Unmounts whatever is still mounted under `dir` (a container's rootfs, if a test died with
/// one running), deepest first, so the directory can be removed.
fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut mounts: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    mounts.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in mounts {
        let _ = Command::new("umount").arg(point).output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_everything_under_its_directory() {
        let config = config_toml(Path::new("/tmp/x"));
        for line in config.lines().filter(|l| l.contains('/')) {
            assert!(line.contains("\"/tmp/x/"), "{line}");
        }
        assert!(config.contains(r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#));
        assert!(config.contains("path = \"/tmp/x/opt\""));
    }
}
