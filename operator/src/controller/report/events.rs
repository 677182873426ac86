//! Kubernetes Events (`events.k8s.io/v1`) about the operator's objects, published off the hot path.
//!
//! An Event is queued where it happens and created by one publisher with at most
//! [`CREATES_IN_FLIGHT`] requests at a time, so under a burst the status writes (which carry the
//! truth, and free execution slots) get the API server first and Events trail them; like
//! client-go's broadcaster, the queue is bounded and an Event that finds it full is dropped
//! (counted, and logged). Nothing is kept once created: kube-runtime's `Recorder` caches every
//! Event for six minutes to count repeats as a series, which under a burst of thousands of tasks
//! is megabytes; the controller already avoids repeats (a scheduled task reports changes, not
//! every run).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Event creates in flight at once: few, so status writes keep most of the operator's API requests.
pub const CREATES_IN_FLIGHT: usize = 2;
/// Events waiting to be created, at most (a few hundred bytes each).
pub const QUEUE_CAPACITY: usize = 4096;
/// How long queued Events may still be created once the operator stops.
pub const FLUSH_GRACE: Duration = Duration::from_secs(5);

/// Who reports (the controller's name and this instance), and the queue of Events to create.
#[derive(Clone)]
pub struct EventSink {
    client: Client,
    controller: Arc<str>,
    instance: Arc<str>,
    queue: Arc<EventQueue>,
}

impl EventSink {
    pub fn new(client: Client, controller: &str, instance: Option<&str>) -> EventSink {
        EventSink {
            client,
            controller: controller.into(),
            instance: instance.unwrap_or(controller).into(),
            queue: Arc::new(EventQueue::new(QUEUE_CAPACITY)),
        }
    }

    /// Queues one Event regarding `object`, stamped now; never waits.
    pub fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let queued = self.queue.push(Pending {
            regarding: object.object_ref(&()),
            type_,
            reason: reason.to_owned(),
            note: note.to_owned(),
            at: Timestamp::now(),
        });
        // The first drop and every thousandth: a flood of drops must not become a flood of logs.
        if let Err(dropped) = queued
            && dropped % 1000 == 1
        {
            tracing::warn!(
                name = object.name_any(),
                reason,
                dropped,
                "the Event queue is full; Events are dropped"
            );
        }
    }

    /// Creates queued Events until `stop`, then for at most `flush_grace` more while any are left.
    pub async fn publish_queued(self, stop: CancellationToken, flush_grace: Duration) {
        let mut in_flight = FuturesUnordered::new();
        let flush_deadline = async {
            stop.cancelled().await;
            tokio::time::sleep(flush_grace).await;
        };
        tokio::pin!(flush_deadline);
        loop {
            while in_flight.len() < CREATES_IN_FLIGHT {
                let Some(pending) = self.queue.pop() else {
                    break;
                };
                in_flight.push(self.create(pending));
            }
            if in_flight.is_empty() && stop.is_cancelled() {
                return;
            }
            tokio::select! {
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                () = self.queue.pushed.notified(), if in_flight.len() < CREATES_IN_FLIGHT => {}
                () = stop.cancelled(), if in_flight.is_empty() && self.queue.is_empty() => return,
                () = &mut flush_deadline => {
                    let left = self.queue.len() + in_flight.len();
                    if left > 0 {
                        tracing::warn!(left, "stopping with Events not yet created");
                    }
                    return;
                }
            }
        }
    }

    async fn create(&self, pending: Pending) {
        let name = pending.regarding.name.clone().unwrap_or_default();
        let namespace = pending
            .regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let event = event(
            pending.regarding,
            &self.controller,
            &self.instance,
            pending.type_,
            &pending.reason,
            &pending.note,
            pending.at,
        );
        let created = Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await;
        if let Err(e) = created {
            tracing::debug!(namespace, name, error = %e, "recording an Event failed");
        }
    }
}

/// An Event not created yet.
struct Pending {
    regarding: ObjectReference,
    type_: EventType,
    reason: String,
    note: String,
    at: Timestamp,
}

/// First in, first out, bounded; `pushed` wakes the publisher.
struct EventQueue {
    capacity: usize,
    items: Mutex<VecDeque<Pending>>,
    dropped: std::sync::atomic::AtomicU64,
    pushed: Notify,
}

impl EventQueue {
    fn new(capacity: usize) -> Self {
        EventQueue {
            capacity,
            items: Mutex::default(),
            dropped: Default::default(),
            pushed: Notify::new(),
        }
    }

    /// Queues the Event, or drops it when the queue is full: `Err` then counts the drops so far.
    fn push(&self, pending: Pending) -> Result<(), u64> {
        let mut items = self.items.lock().expect("not poisoned");
        if items.len() >= self.capacity {
            let before = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(before + 1);
        }
        items.push_back(pending);
        drop(items);
        self.pushed.notify_one();
        Ok(())
    }

    fn pop(&self) -> Option<Pending> {
        let mut items = self.items.lock().expect("not poisoned");
        let next = items.pop_front();
        if items.capacity() > 64 && items.len() < items.capacity() / 4 {
            // A burst's queue is not kept at its peak size.
            let keep = items.len() * 2;
            items.shrink_to(keep);
        }
        next
    }

    fn len(&self) -> usize {
        self.items.lock().expect("not poisoned").len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
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
        regarding.name.as_deref().unwrap_or("object"),
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    use mcall_generated::McallTask;

    use super::*;

    /// A client whose API server takes `answer_after` for every request (forever when `None`),
    /// and the number of Event creates it received.
    fn client(answer_after: Option<Duration>) -> (Client, Arc<AtomicUsize>) {
        let creates = Arc::new(AtomicUsize::new(0));
        let seen = creates.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let seen = seen.clone();
            async move {
                if request.method() == http::Method::POST
                    && request.uri().path().ends_with("/events")
                {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                match answer_after {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => std::future::pending::<()>().await,
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(kube::client::Body::from(
                    b"{}".to_vec(),
                )))
            }
        });
        (Client::new(service, "default"), creates)
    }

    fn task() -> McallTask {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mcall.tz.io/v1", "kind": "McallTask",
            "metadata": {"name": "t", "namespace": "checks", "uid": "u-1"},
            "spec": {"type": "cmd", "input": "true"}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn events_queued_when_the_operator_stops_are_still_created() {
        let (client, creates) = client(Some(Duration::from_millis(20)));
        let sink = EventSink::new(client, "mcall-operator", None);
        for _ in 0..10 {
            sink.publish(&task(), EventType::Normal, "Succeeded", "done");
        }
        let stop = CancellationToken::new();
        stop.cancel();
        tokio::time::timeout(
            Duration::from_secs(10),
            sink.clone().publish_queued(stop, Duration::from_secs(5)),
        )
        .await
        .expect("returns once the queue is empty");
        assert_eq!(creates.load(Ordering::SeqCst), 10);
        assert!(sink.queue.is_empty());
    }

    #[tokio::test]
    async fn a_stop_waits_for_an_unanswering_api_server_only_the_flush_grace() {
        let (client, creates) = client(None);
        let sink = EventSink::new(client, "mcall-operator", None);
        for _ in 0..5 {
            sink.publish(&task(), EventType::Warning, "Failed", "exit 1");
        }
        let stop = CancellationToken::new();
        stop.cancel();
        tokio::time::timeout(
            Duration::from_secs(10),
            sink.publish_queued(stop, Duration::from_millis(200)),
        )
        .await
        .expect("gives up after the flush grace");
        assert_eq!(
            creates.load(Ordering::SeqCst),
            CREATES_IN_FLIGHT,
            "no more than two creates at a time"
        );
    }

    fn pending(reason: &str) -> Pending {
        Pending {
            regarding: ObjectReference::default(),
            type_: EventType::Normal,
            reason: reason.into(),
            note: String::new(),
            at: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_queue_is_first_in_first_out_and_drops_what_does_not_fit() {
        let queue = EventQueue::new(2);
        assert_eq!(queue.push(pending("first")), Ok(()));
        assert_eq!(queue.push(pending("second")), Ok(()));
        assert_eq!(queue.push(pending("third")), Err(1), "the first drop");
        assert_eq!(queue.push(pending("fourth")), Err(2));
        assert_eq!(queue.pop().map(|p| p.reason).as_deref(), Some("first"));
        assert_eq!(queue.push(pending("fifth")), Ok(()));
        let rest: Vec<String> = std::iter::from_fn(|| queue.pop().map(|p| p.reason)).collect();
        assert_eq!(rest, ["second", "fifth"]);
        assert!(queue.is_empty());
    }

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
