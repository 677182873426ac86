//! mcall's execution engine: run a task (`cmd`, `get`, `post`), validate the result, retry.
//!
//! No Kubernetes inside: the controller and the local CLI (`mcall run`) both convert a McallTask
//! spec into a [`TaskRequest`], [`TaskPlan::compile`] it (bad input becomes an [`InvalidSpec`]
//! naming the field), and [`execute`] the plan to a [`TaskOutcome`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), mcall_engine::InvalidSpec> {
//! use mcall_engine::{Limits, TaskKind, TaskPlan, TaskRequest, execute};
//! let mut request = TaskRequest::new(TaskKind::Get, "https://example.com/healthz");
//! request.expect = Some("200|204".to_owned());
//! let plan = TaskPlan::compile(request)?;
//! let outcome = execute(&plan, &Limits::default(), Default::default(), &|_event| {}).await;
//! println!("{:?} {:?}", outcome.verdict, outcome.error_message);
//! # Ok(())
//! # }
//! ```
//!
//! The rules, in the modules that implement them: [`expect`] (the `expect` grammar),
//! `judge` (the order in which checks decide), `cmd` (process groups, timeouts, the
//! environment), `fanout` (multiple inputs, failFast), `execute` (retries and backoff).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod backoff;
mod capture;
mod checks;
mod cmd;
pub mod commands;
mod execute;
pub mod expect;
mod fanout;
mod http;
mod invalid;
mod json_check;
mod judge;
mod multi_input;
mod outcome;
mod plan;
mod redact;
mod request;
mod runner;
mod text_match;
mod user_regex;

pub use backoff::Backoff;
pub use cmd::LocalCommands;
pub use commands::{Captured, Command, CommandEnd, CommandFuture, CommandRun, CommandRunner};
pub use execute::{execute, execute_with};
pub use expect::{Expectation, Subject, parse_expectation};
pub use fanout::PARALLEL_INPUTS;
pub use invalid::InvalidSpec;
pub use json_check::parse_json_path;
pub use judge::{Ended, judge_ended};
pub use outcome::{EngineEvent, InputOutcome, Limits, TaskOutcome, Verdict};
pub use plan::{InputPlan, TaskPlan};
pub use request::{
    BodyMatch, ExecutionMode, HttpOptions, OutputMatch, OutputOptions, TaskKind, TaskRequest,
    UnknownVariant,
};
