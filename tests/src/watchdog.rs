//! Cleanup for control planes whose owner never runs `Drop`.
//!
//! The shared plane lives in a `static` (never dropped), and a test process can also die from
//! a signal or `abort`. So each owned plane gets a watchdog: a tiny `sh` loop, outside our
//! process group, that polls the test process with `kill -0` and, once it is gone, SIGKILLs
//! etcd and kube-apiserver and removes the plane's directory. Plain `sh` keeps it free of
//! dependencies and `unsafe` (no fork/prctl tricks).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::{Error, Result};

/// `$1` = pid to watch, `$2` = directory to remove, remaining args = pids to kill.
/// INT/HUP/TERM are ignored so a terminal Ctrl-C or hang-up cannot take the watchdog down
/// before it has cleaned up (it is in its own process group anyway).
const SCRIPT: &str = r#"
owner=$1; dir=$2; shift 2
trap '' INT HUP TERM
while kill -0 "$owner" 2>/dev/null; do sleep 0.5; done
kill -9 "$@" 2>/dev/null
rm -rf "$dir"
"#;

/// A running watchdog; [`Watchdog::disarm`] stops it when the owner cleans up itself.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Starts a watchdog for the current process that will kill `pids` and remove `dir`.
    pub fn spawn(pids: &[u32], dir: &Path) -> Result<Watchdog> {
        let child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("mcall-watchdog") // $0, shows up in `ps`
            .arg(std::process::id().to_string())
            .arg(dir)
            .args(pids.iter().map(u32::to_string))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                what: "the cleanup watchdog",
                binary: "sh".into(),
                source,
            })?;
        Ok(Watchdog { child })
    }

    /// Stops the watchdog without it doing anything (SIGKILL cannot be trapped).
    pub fn disarm(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The watchdog cleans up once its owner is gone. The "owner" here is a short-lived
    /// `sleep`, standing in for the test process (the script only needs a pid to poll).
    #[test]
    fn cleans_up_after_the_owner_exits() {
        let dir = tempfile::tempdir().unwrap().keep();
        let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
        let mut owner = Command::new("sleep").arg("0.2").spawn().unwrap();
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("mcall-watchdog")
            .arg(owner.id().to_string())
            .arg(&dir)
            .arg(victim.id().to_string())
            .spawn()
            .unwrap();
        owner.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while watchdog.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "watchdog did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = victim.wait().unwrap();
        assert!(!status.success(), "victim should have been killed");
        assert!(!dir.exists(), "directory should have been removed");
    }
}
