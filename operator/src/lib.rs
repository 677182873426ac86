//! mcall: the operator (controllers that run McallTasks) and the local CLI (`mcall run`).
//!
//! The execution engine lives in the `mcall-engine` crate and knows nothing of Kubernetes; this
//! crate maps the generated API types onto it ([`request`]) and runs the controller
//! ([`controller`]: observe → plan, pure → apply).
// Denied, not forbidden: `memory` makes the one FFI call (malloc_trim), allowed there alone.
#![deny(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod config;
pub mod controller;
pub mod executor;
pub mod fence;
pub mod https;
pub mod inputs;
pub mod local_run;
pub mod memory;
pub mod metrics;
pub mod metrics_auth;
pub mod request;
pub mod schedule;
pub mod server;
pub mod telemetry;
pub mod webhook;
pub mod workflow;

/// Everything the operator can fail at; each variant names the operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} failed: {source}")]
    Kube {
        op: &'static str,
        #[source]
        source: kube::Error,
    },

    #[error("the object has no {0}")]
    MissingObjectKey(&'static str),

    #[error("a McallTask named {0} exists and is not this workflow's step; rename one of them")]
    NameTaken(String),
}

impl Error {
    /// A bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { op, .. } => op,
            Error::MissingObjectKey(_) => "missing_object_key",
            Error::NameTaken(_) => "name_taken",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
