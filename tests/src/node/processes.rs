//! The node's processes: spawned with a pid file each (the teardown kills them by those, even
//! when their owner is gone), watched while the node starts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::NodeLayout;
use crate::process::{log_tail, spawn_logged};
use crate::{Error, Result, io_err};

/// The running node processes, in start order.
#[derive(Debug, Default)]
pub(crate) struct NodeProcesses {
    running: Vec<Running>,
}

#[derive(Debug)]
struct Running {
    what: &'static str,
    child: Child,
    log: PathBuf,
}

impl NodeProcesses {
    /// Spawns `binary` with `args`, logging to the node's `<what>.log`, and records its pid.
    pub fn spawn(
        &mut self,
        layout: &NodeLayout,
        what: &'static str,
        binary: &Path,
        args: &[String],
    ) -> Result<()> {
        let log = layout.log(what);
        let pid_file = layout.pid_file(what);
        if let Some(dir) = pid_file.parent() {
            std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        let child = spawn_logged(what, binary, args, &log)?;
        let pid = child.id();
        // Tracked first, so a failed pid file write still kills it on drop.
        self.running.push(Running { what, child, log });
        std::fs::write(&pid_file, pid.to_string()).map_err(io_err("writing", &pid_file))
    }

    /// `(name, pid)` of each process.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.running
            .iter()
            .map(|r| (r.what, r.child.id()))
            .collect()
    }

    /// Gives up ownership (a detached node: the teardown kills them by their pid files).
    pub fn detach(mut self) {
        self.running.clear();
    }

    /// Fails with the log's tail if a process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for r in &mut self.running {
            if let Ok(Some(status)) = r.child.try_wait() {
                return Err(Error::ProcessExited {
                    what: r.what,
                    status: status.to_string(),
                    log: r.log.clone(),
                    tail: log_tail(&r.log, 40),
                });
            }
        }
        Ok(())
    }

    /// Polls `check` every 100 ms until it passes, `timeout` ends (an error naming `what`,
    /// the last reason and the tail of `log`) or a process exits.
    pub fn wait_for(
        &mut self,
        what: &'static str,
        log: &Path,
        timeout: Duration,
        mut check: impl FnMut() -> std::result::Result<(), String>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let last_error = match check() {
                Ok(()) => return Ok(()),
                Err(reason) => reason,
            };
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    what,
                    timeout,
                    last_error,
                    log: log.to_path_buf(),
                    tail: log_tail(log, 40),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NodeProcesses {
    fn drop(&mut self) {
        // Clients before containerd: reverse start order.
        for mut r in self.running.drain(..).rev() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

/// `GET url` answered 200 (curl: some endpoints are HTTPS with a self-signed certificate).
pub(crate) fn http_ok(url: &str) -> std::result::Result<(), String> {
    let out = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running curl: {e}"))?;
    let code = String::from_utf8_lossy(&out.stdout);
    if code == "200" {
        Ok(())
    } else {
        Err(format!("GET {url} answered {code:?}"))
    }
}
