//! Where `cmd` inputs run: in this process's machine
//! ([`LocalCommands`](crate::LocalCommands), `/bin/sh -c` in a process group, see `cmd`), or
//! wherever a [`CommandRunner`] the caller brings puts them (the operator's pod executor). The
//! engine judges what comes back the same way for both.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::capture::Captured;

/// One command to run.
#[derive(Debug)]
pub struct Command<'a> {
    /// The input's name (`input-0`, or its name in a multi-input list).
    pub input_name: &'a str,
    /// Which attempt of the task this command belongs to: 0 for the first, n for retry n.
    pub attempt: u32,
    /// Run as `/bin/sh -c <script>`.
    pub script: &'a str,
    /// The variables the spec gives it (template and `environmentFrom` resolved).
    pub environment: &'a BTreeMap<String, String>,
    /// Bytes of output worth keeping; more is counted, not kept.
    pub keep: usize,
    /// When it must have ended; a runner stops it then and reports [`CommandEnd::TimedOut`].
    pub deadline: Instant,
    /// Between the polite stop and the forced one.
    pub kill_grace: Duration,
}

/// How a command ended.
#[derive(Debug)]
pub enum CommandEnd {
    Exited(ExitStatus),
    /// The deadline passed and it was stopped.
    TimedOut,
    /// The token fired and it was stopped.
    Cancelled,
    /// It never started; why.
    SpawnFailed(String),
    /// It could not run to an exit status, for a reason the runner names (a pod's image could
    /// not be pulled, it was OOM-killed, ...): the error code and message the task reports.
    Failed {
        error_code: String,
        message: String,
    },
}

/// How a command ended, and what it printed (see [`Captured::of`]).
#[derive(Debug)]
pub struct CommandRun {
    pub end: CommandEnd,
    pub output: Captured,
}

pub type CommandFuture<'a> = Pin<Box<dyn Future<Output = CommandRun> + Send + 'a>>;

/// Runs `cmd` inputs.
pub trait CommandRunner: Send + Sync {
    fn run<'a>(&'a self, command: Command<'a>, cancel: &'a CancellationToken) -> CommandFuture<'a>;

    /// Whether retry `attempt` was started already, by the process this run is taken over
    /// from: the engine then follows it at once, without waiting out its backoff or announcing
    /// it again.
    fn started_already(&self, _attempt: u32) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(std::future::ready(false))
    }
}
