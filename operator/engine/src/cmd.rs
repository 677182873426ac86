//! Running one `cmd` input: `/bin/sh -c <input>` in its own process group, output captured,
//! and the whole group killed on timeout, cancellation, or when the future is dropped.
//!
//! Why a process group: `sh -c 'a & b'` forks children that killing `sh` alone would orphan
//! (they would keep running inside the operator's pod, holding the output pipes). The shell is
//! made a group leader (`process_group(0)`), so one `killpg` reaches every descendant that did
//! not deliberately leave the group.

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::capture::{Capture, Captured};

/// The operator's variables a command inherits; everything else comes from the spec, so the
/// operator's own configuration (service account paths, proxies, tokens) does not leak into
/// user commands.
const INHERITED_ENV: [&str; 4] = ["PATH", "HOME", "TMPDIR", "LANG"];
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a command run ended (the deadline or the token: the group got SIGTERM, then SIGKILL
/// after the grace period).
pub(crate) use crate::commands::CommandEnd as CmdEnd;
pub(crate) use crate::commands::CommandRun as CmdRun;
use crate::commands::{Command as RunnerCommand, CommandFuture, CommandRunner};

/// Commands as processes of this machine (the operator's own container, or `mcall run`'s
/// shell): `/bin/sh -c` in a process group of their own, killed as a whole.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalCommands;

impl CommandRunner for LocalCommands {
    fn run<'a>(
        &'a self,
        command: RunnerCommand<'a>,
        cancel: &'a CancellationToken,
    ) -> CommandFuture<'a> {
        Box::pin(async move {
            let settings = CmdSettings {
                environment: command.environment,
                keep: command.keep,
                deadline: command.deadline,
                kill_grace: command.kill_grace,
            };
            run_command(command.script, &settings, cancel).await
        })
    }
}

/// What [`run_command`] needs besides the script.
pub(crate) struct CmdSettings<'a> {
    pub environment: &'a BTreeMap<String, String>,
    /// Bytes of output to keep.
    pub keep: usize,
    pub deadline: Instant,
    pub kill_grace: Duration,
}

enum Phase {
    Running,
    /// The shell exited but something it started still holds the pipes: read what it writes
    /// until `until`, then kill the group.
    Draining {
        until: Instant,
    },
    /// SIGTERM sent; SIGKILL at `kill_at`.
    Terminating {
        kill_at: Instant,
    },
    /// SIGKILL sent; a process that left the group may still hold the pipes: stop at `give_up_at`.
    Killed {
        give_up_at: Instant,
    },
}

/// Kills the group when dropped: on every return path, and when the caller drops the future
/// mid-run. After a normal exit this also ends background processes the command left behind,
/// since a finished task must not leave anything running.
struct GroupGuard(Pid);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_group(self.0, Signal::SIGKILL);
    }
}

fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        // ESRCH: the group is already gone, which is the goal.
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid = pgid.as_raw(), %signal, error = %e, "could not signal process group")
        }
    }
}

/// `/bin/sh -c script` in a process group of its own, with only the inherited variables and
/// the task's environment, no stdin, and its output piped.
fn shell(script: &str, settings: &CmdSettings<'_>) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(script).env_clear();
    for key in INHERITED_ENV {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        command.env("PATH", DEFAULT_PATH);
    }
    command
        .envs(settings.environment)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    command
}

fn spawn_failed(reason: String) -> CmdRun {
    CmdRun {
        end: CmdEnd::SpawnFailed(reason),
        output: Captured::default(),
    }
}

pub(crate) async fn run_command(
    script: &str,
    settings: &CmdSettings<'_>,
    cancel: &CancellationToken,
) -> CmdRun {
    let mut child = match shell(script, settings).spawn() {
        Ok(child) => child,
        Err(e) => return spawn_failed(e.to_string()),
    };
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return spawn_failed("the shell exited before it could be tracked".to_owned());
    };
    let pgid = Pid::from_raw(pid);
    let _guard = GroupGuard(pgid);
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out_buf = vec![0u8; 8192];
    let mut err_buf = vec![0u8; 8192];
    let mut capture = Capture::new(settings.keep);
    let mut exited: Option<Option<ExitStatus>> = None;
    let mut interrupted: Option<CmdEnd> = None;
    let mut phase = Phase::Running;
    let grace = settings.kill_grace;

    loop {
        if stdout.is_none() && stderr.is_none() && exited.is_some() {
            break;
        }
        let timer = match phase {
            Phase::Running => settings.deadline,
            Phase::Draining { until } => until.min(settings.deadline),
            Phase::Terminating { kill_at } => kill_at,
            Phase::Killed { give_up_at } => give_up_at,
        };
        let watch_cancel = matches!(phase, Phase::Running | Phase::Draining { .. });
        tokio::select! {
            read = read_some(&mut stdout, &mut out_buf) => match read {
                Some(n) => capture.push(&out_buf[..n]),
                None => stdout = None,
            },
            read = read_some(&mut stderr, &mut err_buf) => match read {
                Some(n) => capture.push(&err_buf[..n]),
                None => stderr = None,
            },
            status = child.wait(), if exited.is_none() => {
                exited = Some(status.ok());
                if matches!(phase, Phase::Running) {
                    phase = Phase::Draining { until: Instant::now() + grace };
                }
            }
            () = sleep_until(timer) => match phase {
                Phase::Running => {
                    interrupted = Some(CmdEnd::TimedOut);
                    signal_group(pgid, Signal::SIGTERM);
                    phase = Phase::Terminating { kill_at: Instant::now() + grace };
                }
                Phase::Terminating { .. } => {
                    signal_group(pgid, Signal::SIGKILL);
                    phase = Phase::Killed { give_up_at: Instant::now() + grace };
                }
                // The shell is done; leftovers holding the pipes are killed by the guard.
                Phase::Draining { .. } | Phase::Killed { .. } => break,
            },
            () = cancel.cancelled(), if watch_cancel => {
                interrupted = Some(CmdEnd::Cancelled);
                signal_group(pgid, Signal::SIGTERM);
                phase = Phase::Terminating { kill_at: Instant::now() + grace };
            }
        }
    }
    let end = match (interrupted, exited) {
        (Some(end), _) => end,
        (None, Some(Some(status))) => CmdEnd::Exited(status),
        (None, _) => CmdEnd::SpawnFailed("could not wait for the shell".to_owned()),
    };
    CmdRun {
        end,
        output: capture.finish(),
    }
}

/// Reads one chunk; `None` at end of file or on a read error (the pipe is then done). A closed
/// pipe never resolves, so the select loop simply stops polling it.
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> Option<usize> {
    match pipe {
        Some(reader) => match reader.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn settings(env: &BTreeMap<String, String>, timeout: Duration) -> CmdSettings<'_> {
        CmdSettings {
            environment: env,
            keep: 4096,
            deadline: Instant::now() + timeout,
            kill_grace: Duration::from_millis(500),
        }
    }

    async fn run(script: &str, timeout: Duration) -> CmdRun {
        let env = BTreeMap::new();
        run_command(script, &settings(&env, timeout), &CancellationToken::new()).await
    }

    #[tokio::test]
    async fn captures_stdout_and_stderr_and_the_exit_code() {
        let run = run("echo out; echo err >&2; exit 3", Duration::from_secs(5)).await;
        let CmdEnd::Exited(status) = run.end else {
            panic!("{:?}", run.end)
        };
        assert_eq!(status.code(), Some(3));
        assert!(run.output.text.contains("out\n"));
        assert!(run.output.text.contains("err\n"));
        assert_eq!(run.output.lines, 2);
    }

    #[tokio::test]
    async fn environment_is_minimal_plus_the_spec() {
        let mut env = BTreeMap::new();
        env.insert("GREETING".to_owned(), "hello world".to_owned());
        let run = run_command(
            "echo \"$GREETING\"; env | cut -d= -f1 | sort | tr '\\n' ' '",
            &settings(&env, Duration::from_secs(5)),
            &CancellationToken::new(),
        )
        .await;
        assert!(
            run.output.text.starts_with("hello world\n"),
            "{}",
            run.output.text
        );
        // Nothing beyond the inherited basics, the spec and what sh itself sets.
        for name in run.output.text.lines().nth(1).unwrap().split_whitespace() {
            assert!(
                [
                    "PATH", "HOME", "TMPDIR", "LANG", "GREETING", "PWD", "SHLVL", "_", "OLDPWD"
                ]
                .contains(&name),
                "unexpected variable {name}"
            );
        }
    }

    #[tokio::test]
    async fn stdin_is_closed() {
        let run = run("cat; echo done", Duration::from_secs(5)).await;
        assert!(matches!(run.end, CmdEnd::Exited(s) if s.success()));
        assert_eq!(run.output.text, "done\n");
    }

    #[tokio::test]
    async fn timeout_terminates_the_group() {
        let started = std::time::Instant::now();
        let run = run("echo before; sleep 30", Duration::from_millis(300)).await;
        assert!(matches!(run.end, CmdEnd::TimedOut), "{:?}", run.end);
        assert_eq!(run.output.text, "before\n");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn sigterm_ignoring_processes_get_sigkill_after_the_grace() {
        let started = std::time::Instant::now();
        let run = run("trap '' TERM; sleep 30", Duration::from_millis(200)).await;
        assert!(matches!(run.end, CmdEnd::TimedOut), "{:?}", run.end);
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(650), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }

    #[tokio::test]
    async fn cancellation_terminates_the_group() {
        let env = BTreeMap::new();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let started = std::time::Instant::now();
        let run = run_command(
            "sleep 30",
            &settings(&env, Duration::from_secs(30)),
            &cancel,
        )
        .await;
        assert!(matches!(run.end, CmdEnd::Cancelled), "{:?}", run.end);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn background_children_do_not_hold_the_run_open() {
        let started = std::time::Instant::now();
        let run = run("sleep 30 & echo started", Duration::from_secs(20)).await;
        assert!(
            matches!(run.end, CmdEnd::Exited(s) if s.success()),
            "{:?}",
            run.end
        );
        assert_eq!(run.output.text, "started\n");
        // The drain window (kill_grace = 500 ms), not the sleep, bounds the run.
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_killed_shell_reports_its_signal() {
        let run = run("kill -9 $$", Duration::from_secs(5)).await;
        let CmdEnd::Exited(status) = run.end else {
            panic!("{:?}", run.end)
        };
        assert_eq!(status.signal(), Some(9));
    }
}
