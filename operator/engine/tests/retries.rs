//! Retries: counted, with exponential backoff, reported to the observer; never for cancelled
//! attempts; cancellation during backoff is prompt.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{TestServer, assert_no_process_with, limits, request, wait_for_process_with};
use mcall_engine::{EngineEvent, Limits, TaskKind, TaskPlan, TaskRequest, Verdict, execute};
use tokio_util::sync::CancellationToken;

async fn run_collecting(
    req: TaskRequest,
    limits: &Limits,
) -> (mcall_engine::TaskOutcome, Vec<EngineEvent>) {
    let plan = TaskPlan::compile(req).unwrap();
    let events = Mutex::new(Vec::new());
    let outcome = execute(&plan, limits, CancellationToken::new(), &|e| {
        events.lock().unwrap().push(e)
    })
    .await;
    (outcome, events.into_inner().unwrap())
}

#[tokio::test]
async fn failed_attempts_are_retried_with_exponential_backoff() {
    let limits = Limits {
        retry_base: Duration::from_millis(100),
        retry_cap: Duration::from_millis(250),
        ..limits()
    };
    let mut req = request(TaskKind::Cmd, "echo nope; exit 1");
    req.retry_count = 3;
    let started = Instant::now();
    let (outcome, events) = run_collecting(req, &limits).await;
    let elapsed = started.elapsed();
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert_eq!(outcome.retries, 3);
    assert_eq!(outcome.error_code.as_deref(), Some("1"));
    // Backoff 100 + 200 + 250 (capped) ms.
    assert!(elapsed >= Duration::from_millis(550), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    assert!(outcome.duration >= Duration::from_millis(550));
    let attempts: Vec<u32> = events
        .iter()
        .map(|EngineEvent::Retrying { attempt, .. }| *attempt)
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    let EngineEvent::Retrying { at, reason, .. } = events.last().unwrap();
    assert_eq!(outcome.last_retry_at, Some(*at));
    assert!(reason.contains("exited with code 1"), "{reason}");
    assert!(*at >= outcome.started_at);
}

#[tokio::test]
async fn success_after_a_retry_stops_retrying() {
    let flag = std::env::temp_dir().join(format!("mcall-retry-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    let path = flag.display();
    // Fails the first time, creates the flag, succeeds the second time.
    let mut req = request(
        TaskKind::Cmd,
        format!("test -e {path} && echo second || {{ touch {path}; exit 9; }}"),
    );
    req.retry_count = 5;
    let (outcome, events) = run_collecting(req, &limits()).await;
    let _ = std::fs::remove_file(&flag);
    assert_eq!(outcome.verdict, Verdict::Succeeded, "{outcome:?}");
    assert_eq!(outcome.retries, 1);
    assert_eq!(events.len(), 1);
    assert_eq!(outcome.output, "second\n");
    assert_eq!(outcome.error_code, None);
}

#[tokio::test]
async fn http_retries_reach_the_server() {
    let server = TestServer::start().await;
    let mut req = request(TaskKind::Get, server.url("/status/503"));
    req.retry_count = 2;
    let (outcome, _) = run_collecting(req, &limits()).await;
    assert_eq!(outcome.retries, 2);
    assert_eq!(server.count("/status/503"), 3);
    assert_eq!(outcome.error_code.as_deref(), Some("503"));
}

#[tokio::test]
async fn no_retries_without_retry_count_or_on_success() {
    let (outcome, events) = run_collecting(request(TaskKind::Cmd, "exit 1"), &limits()).await;
    assert_eq!((outcome.retries, outcome.last_retry_at), (0, None));
    assert!(events.is_empty());
    let mut req = request(TaskKind::Cmd, "true");
    req.retry_count = 3;
    let (outcome, events) = run_collecting(req, &limits()).await;
    assert_eq!(outcome.retries, 0);
    assert!(events.is_empty());
}

#[tokio::test]
async fn timeouts_are_retried() {
    let mut req = request(TaskKind::Cmd, "sleep 5");
    req.timeout = Duration::from_millis(200);
    req.retry_count = 1;
    let (outcome, _) = run_collecting(req, &limits()).await;
    assert_eq!(outcome.error_code.as_deref(), Some("Timeout"));
    assert_eq!(outcome.retries, 1);
}

#[tokio::test]
async fn a_cancelled_attempt_is_not_retried() {
    // A command line of this test alone (the pid), so the probe below finds only its process.
    let marker = format!("sleep 7{}.5", std::process::id());
    let mut req = request(TaskKind::Cmd, marker.clone());
    req.retry_count = 3;
    let plan = TaskPlan::compile(req).unwrap();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    // Cancelled once the attempt's process runs, however long spawning takes on a busy machine.
    let probe = marker.clone();
    tokio::spawn(async move {
        wait_for_process_with(&probe, Duration::from_secs(30)).await;
        trigger.cancel();
    });
    let outcome = execute(&plan, &limits(), cancel, &|_| panic!("no retry expected")).await;
    assert_eq!(outcome.verdict, Verdict::Cancelled);
    assert_eq!(outcome.retries, 0);
    assert_no_process_with(&marker, Duration::from_secs(5)).await;
}

/// The engine's log line as it starts waiting before a retry: the only sign, outside the engine,
/// that an attempt has failed and the backoff has begun (`EngineEvent::Retrying` comes after it).
const BACKOFF_STARTS: &str = "attempt failed, retrying";

/// A subscriber that cancels `cancel` when the engine logs [`BACKOFF_STARTS`], and notes when.
struct CancelWhenBackoffStarts {
    cancel: CancellationToken,
    at: Mutex<Option<Instant>>,
}

impl tracing::Subscriber for CancelWhenBackoffStarts {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(Option<String>);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut message = Message(None);
        event.record(&mut message);
        if message.0.as_deref() == Some(BACKOFF_STARTS) {
            self.at.lock().unwrap().get_or_insert_with(Instant::now);
            self.cancel.cancel();
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn cancellation_during_backoff_is_prompt() {
    use tracing::instrument::WithSubscriber;

    let limits = Limits {
        retry_base: Duration::from_secs(30),
        retry_cap: Duration::from_secs(30),
        ..limits()
    };
    let mut req = request(TaskKind::Cmd, "echo failing; exit 2");
    req.retry_count = 2;
    let plan = TaskPlan::compile(req).unwrap();
    let cancel = CancellationToken::new();
    // Cancelled as the 30 s backoff begins (not after a guessed delay, which a slow first attempt
    // on a busy machine would outlast): what is timed is the cancel's effect alone.
    let subscriber = std::sync::Arc::new(CancelWhenBackoffStarts {
        cancel: cancel.clone(),
        at: Mutex::new(None),
    });
    let run = execute(&plan, &limits, cancel, &|_| panic!("no retry expected"))
        .with_subscriber(tracing::Dispatch::from(subscriber.clone()));
    // Bounded well below the backoff, so a missing log line fails here instead of after 90 s.
    let outcome = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| {
            panic!("no outcome within 20 s: did the engine stop logging {BACKOFF_STARTS:?}?")
        });
    let returned = Instant::now();
    let cancelled = subscriber.at.lock().unwrap().expect("the backoff began");
    let after_cancel = returned - cancelled;
    assert!(
        after_cancel < Duration::from_secs(2),
        "the outcome came {after_cancel:?} after the cancel, within a 30 s backoff"
    );
    assert_eq!(outcome.verdict, Verdict::Cancelled);
    assert_eq!(outcome.error_code.as_deref(), Some("Cancelled"));
    assert_eq!(outcome.retries, 0);
    assert_eq!(outcome.output, "failing\n");
    let message = outcome.error_message.unwrap();
    assert!(message.contains("waiting for retry 1 of 2"), "{message}");
    assert!(message.contains("exited with code 2"), "{message}");
}
