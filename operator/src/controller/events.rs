//! Kubernetes Events (`events.k8s.io/v1`) about tasks. One create per Event and nothing kept in
//! memory: kube-runtime's `Recorder` caches every Event it sends for six minutes (to count repeats
//! as a series), which under a burst of thousands of tasks is megabytes and a scan of the whole
//! cache per Event. The controller already avoids repeats (a scheduled task reports changes, not
//! every run), so there is nothing for such a cache to fold.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};
use mcall_generated::McallTask;

/// Who reports: the controller's name and this instance.
#[derive(Clone)]
pub struct EventSink {
    client: Client,
    controller: String,
    instance: String,
}

impl EventSink {
    pub fn new(client: Client, controller: &str, instance: Option<&str>) -> EventSink {
        EventSink {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or(controller).to_owned(),
        }
    }

    /// Creates one Event regarding `task`.
    pub async fn publish(
        &self,
        task: &McallTask,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let namespace = task.namespace().unwrap_or_else(|| "default".to_owned());
        let event = event(
            task.object_ref(&()),
            &self.controller,
            &self.instance,
            type_,
            reason,
            note,
            Timestamp::now(),
        );
        Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await
            .map(drop)
    }
}

/// The Event, named like client-go names them (`<object>.<time in hex nanoseconds>`), so two
/// Events about one task never collide.
fn event(
    regarding: ObjectReference,
    controller: &str,
    instance: &str,
    type_: EventType,
    reason: &str,
    note: &str,
    now: Timestamp,
) -> Event {
    let name = format!(
        "{}.{:x}",
        regarding.name.as_deref().unwrap_or("task"),
        now.as_nanosecond()
    );
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: regarding.namespace.clone(),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some("Execute".to_owned()),
        reason: Some(reason.to_owned()),
        note: Some(note.to_owned()),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_owned(),
        ),
        reporting_controller: Some(controller.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        regarding: Some(regarding),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_task_reporter_and_reason() {
        let regarding = ObjectReference {
            api_version: Some("mcall.tz.io/v1".into()),
            kind: Some("McallTask".into()),
            name: Some("hello".into()),
            namespace: Some("checks".into()),
            uid: Some("u-1".into()),
            ..ObjectReference::default()
        };
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let e = event(
            regarding.clone(),
            "mcall-operator",
            "pod-a",
            EventType::Warning,
            "Failed",
            "exit 3",
            now,
        );
        assert_eq!(
            e.metadata.name.as_deref(),
            Some(format!("hello.{:x}", now.as_nanosecond()).as_str())
        );
        assert_eq!(e.metadata.namespace.as_deref(), Some("checks"));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("Failed"));
        assert_eq!(e.note.as_deref(), Some("exit 3"));
        assert_eq!(e.reporting_controller.as_deref(), Some("mcall-operator"));
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-a"));
        assert_eq!(e.regarding, Some(regarding));
        assert_eq!(e.event_time, Some(MicroTime(now)));
    }
}
