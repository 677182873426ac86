//! Reporting, for any kind the operator writes the status of: status writes with preconditions
//! ([`writes`]), conditions ([`conditions`]) and Events ([`events`]). The code is generic; a kind
//! takes part by implementing [`Reported`] (below, for McallTask and McallWorkflow).

pub mod conditions;
pub mod events;
pub mod writes;

use std::fmt::Debug;

use kube::Resource;
use kube::runtime::events::EventType;
use mcall_generated::{McallTask, McallTaskStatus, McallWorkflow, McallWorkflowStatus, Reason};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use events::EventSink;

/// A kind whose status the operator writes.
pub trait Reported:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    type Status: Serialize + Clone + Debug + PartialEq + Send + Sync + 'static;

    fn status(&self) -> Option<&Self::Status>;
    fn status_mut(&mut self) -> &mut Option<Self::Status>;
}

impl Reported for McallTask {
    type Status = McallTaskStatus;

    fn status(&self) -> Option<&McallTaskStatus> {
        self.status.as_ref()
    }

    fn status_mut(&mut self) -> &mut Option<McallTaskStatus> {
        &mut self.status
    }
}

impl Reported for McallWorkflow {
    type Status = McallWorkflowStatus;

    fn status(&self) -> Option<&McallWorkflowStatus> {
        self.status.as_ref()
    }

    fn status_mut(&mut self) -> &mut Option<McallWorkflowStatus> {
        &mut self.status
    }
}

/// An Event to publish: its reason (whose type, Normal or Warning, `spec/reasons.yaml` declares)
/// and its note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub reason: Reason,
    pub message: String,
}

impl Note {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        debug_assert!(
            reason.is_event(),
            "{reason} is not declared as an Event reason"
        );
        Note {
            reason,
            message: message.into(),
        }
    }

    pub fn event_type(&self) -> EventType {
        if self.reason.is_warning() {
            EventType::Warning
        } else {
            EventType::Normal
        }
    }
}

/// Bytes of an Event's note at most.
const NOTE_MAX: usize = 1000;

/// Events are best effort: queued, never awaited, never failing the caller.
pub fn publish<K: Resource<DynamicType = ()>>(events: &EventSink, object: &K, note: &Note) {
    events.publish(
        object,
        note.event_type(),
        note.reason.as_str(),
        &truncate(&note.message, NOTE_MAX),
    );
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(16);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated]", &text[..end])
}
