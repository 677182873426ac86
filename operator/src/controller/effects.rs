//! What a plan asks for: the vocabulary between the pure planners (`one_shot`, `scheduled`,
//! `deletion`) and the one interpreter that performs it (`apply`).

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use mcall_generated::{McallTaskStatus, Reason};

use super::report::Note;
use super::report::writes::Precondition;
use super::runs::RunKind;
use super::status;

/// One thing to do, in the order the plan lists them.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// The cache shows this generation's result: forget the marker of a result written here.
    Settle,
    /// Cancel this process's one-shot run of an older generation: the spec it runs is gone.
    CancelOlderRun,
    /// Cancel every run of the task: it is being deleted.
    CancelDeleted,
    /// Remove the finalizer earlier versions put on tasks.
    ReleaseFinalizer,
    /// Write the status; when it was written, publish `then`.
    WriteStatus {
        status: Box<McallTaskStatus>,
        precondition: Precondition,
        then: Option<Note>,
    },
    /// Publish an Event about the task.
    Announce(Note),
    /// Start a run (a scheduled run claims its tick first). `status`: what the run builds its
    /// status writes on, when the plan changed it from what was read (a claimed tick decided).
    StartRun {
        kind: Box<RunKind>,
        status: Option<Box<McallTaskStatus>>,
    },
}

/// The effects, then when to look at the task again.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub effects: Vec<Effect>,
    /// `None`: when the task (or a dependency) changes.
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// Nothing to do until the task changes.
    pub fn idle() -> Plan {
        Plan {
            effects: Vec::new(),
            requeue_after: None,
        }
    }

    pub fn then(mut self, effect: Effect) -> Plan {
        self.effects.push(effect);
        self
    }

    pub fn requeue_after(mut self, after: Option<Duration>) -> Plan {
        self.requeue_after = after;
        self
    }
}

impl Effect {
    /// Failed for `reason`, onto the version read: a result that landed meanwhile is not
    /// overwritten (the reconcile its write triggers decides again), and the Event follows only a
    /// landed write.
    pub fn reject(
        previous: Option<&McallTaskStatus>,
        generation: i64,
        reason: Reason,
        message: &str,
        now: Timestamp,
    ) -> Effect {
        Effect::write_onto_read(
            status::failed(previous, generation, reason, message, now),
            Some(Note::new(reason, message)),
        )
    }

    pub fn start(kind: RunKind, status: Option<McallTaskStatus>) -> Effect {
        Effect::StartRun {
            kind: Box::new(kind),
            status: status.map(Box::new),
        }
    }

    /// A status write onto the version the plan was made from.
    pub fn write_onto_read(status: McallTaskStatus, then: Option<Note>) -> Effect {
        Effect::WriteStatus {
            status: Box::new(status),
            precondition: Precondition::OnRead,
            then,
        }
    }
}
