//! The span processor: finished spans wait in a bounded queue for one thread that exports them,
//! [`BATCH`] at a time, when that many are waiting or every `OTEL_BSP_SCHEDULE_DELAY` ms (5 s).
//! A span that finds the queue full is dropped and counted in the log, as the SDK's processor
//! does: the operator never waits for its traces. A failed export is logged and its spans dropped.
//!
//! Why not the SDK's `BatchSpanProcessor`: in the SDK version the workspace can have (see the root
//! Cargo.toml) it exports a single batch on shutdown, losing what is queued past it, and it runs
//! exports with a bare executor, where reqwest (a tokio client) cannot run. This thread owns a
//! small tokio runtime, and a flush sends everything queued, within [`FLUSH_BUDGET`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use super::otlp::Exporter;

/// Spans waiting at most; the queue holds them boxed (a pointer each while empty).
const QUEUE: usize = 2048;
/// Spans in one export request at most.
const BATCH: usize = 512;
const DEFAULT_DELAY: Duration = Duration::from_secs(5);
/// How long a flush (and so a stopping operator) waits for the export of what is queued.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(5);

enum Message {
    Span(Box<SpanData>),
    /// Export everything queued, then answer; `stop`: then end the thread.
    Flush {
        done: SyncSender<()>,
        stop: bool,
    },
}

#[derive(Debug)]
pub struct Batcher {
    queue: SyncSender<Message>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dropped: Arc<AtomicU64>,
}

impl Batcher {
    /// Starts the export thread.
    pub fn start(exporter: Exporter, delay: Option<Duration>) -> std::io::Result<Batcher> {
        let (queue, received) = std::sync::mpsc::sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let export = Export {
            exporter,
            delay: delay.unwrap_or(DEFAULT_DELAY),
            dropped: dropped.clone(),
            failing: false,
        };
        let thread = std::thread::Builder::new()
            .name("mcall-traces".into())
            .spawn(move || export.run(&received))?;
        Ok(Batcher {
            queue,
            thread: Mutex::new(Some(thread)),
            dropped,
        })
    }

    fn flush(&self, stop: bool) -> OTelSdkResult {
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        // Blocks only while the queue is full, which the thread is emptying.
        self.queue
            .send(Message::Flush { done, stop })
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        let wait = FLUSH_BUDGET + Duration::from_secs(1);
        finished
            .recv_timeout(wait)
            .map_err(|_| OTelSdkError::Timeout(wait))
    }
}

impl SpanProcessor for Batcher {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        // Never blocks, and never logs here: this runs inside the subscriber's span closing.
        if let Err(TrySendError::Full(_)) = self.queue.try_send(Message::Span(Box::new(span))) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush(false)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.flush(true)?;
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
        Ok(())
    }
}

/// The export thread's state.
struct Export {
    exporter: Exporter,
    delay: Duration,
    dropped: Arc<AtomicU64>,
    /// Whether the last export failed: failures are logged as WARN once, then at DEBUG.
    failing: bool,
}

impl Export {
    fn run(mut self, queue: &Receiver<Message>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::warn!(error = %e, "traces are not exported: no runtime for the export");
                return;
            }
        };
        let mut batch = Vec::with_capacity(BATCH);
        let mut due = Instant::now() + self.delay;
        loop {
            match queue.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(Message::Span(span)) => {
                    batch.push(*span);
                    if batch.len() < BATCH {
                        continue;
                    }
                }
                Ok(Message::Flush { done, stop }) => {
                    let mut flushes = vec![done];
                    let stop = take_waiting(queue, &mut batch, &mut flushes) || stop;
                    self.export_all(&runtime, &mut batch, Instant::now() + FLUSH_BUDGET);
                    for done in flushes {
                        let _ = done.send(());
                    }
                    if stop {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.export_all(
                &runtime,
                &mut batch,
                Instant::now() + self.exporter.timeout(),
            );
            due = Instant::now() + self.delay;
        }
    }

    /// Exports `batch` ([`BATCH`] spans a request) until `deadline`; what is left is dropped.
    fn export_all(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        batch: &mut Vec<SpanData>,
        deadline: Instant,
    ) {
        while !batch.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
                break;
            }
            let rest = batch.split_off(batch.len().min(BATCH));
            let spans = std::mem::replace(batch, rest);
            let count = spans.len();
            let timeout = left.min(self.exporter.timeout());
            let result = runtime.block_on(self.exporter.export(spans, timeout));
            self.report(result, count);
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "spans dropped: the trace export could not keep up");
        }
    }

    fn report(&mut self, result: Result<(), String>, spans: usize) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(spans, "exporting traces again");
            }
            Ok(()) => {}
            Err(error) if self.failing => tracing::debug!(spans, error, "trace export failed"),
            Err(error) => {
                self.failing = true;
                tracing::warn!(spans, error, "trace export failed; its spans are dropped");
            }
        }
    }
}

/// Moves what is queued into `batch` (a flush exports everything that ended before it), with
/// the flushes queued meanwhile, which this one answers; true when one of them stops the thread.
/// At most a queue's worth: spans that keep ending do not hold a flush up.
fn take_waiting(
    queue: &Receiver<Message>,
    batch: &mut Vec<SpanData>,
    flushes: &mut Vec<SyncSender<()>>,
) -> bool {
    let mut stop = false;
    for _ in 0..QUEUE {
        match queue.try_recv() {
            Ok(Message::Span(span)) => batch.push(*span),
            Ok(Message::Flush { done, stop: last }) => {
                flushes.push(done);
                stop |= last;
            }
            Err(_) => break,
        }
    }
    stop
}

/// `OTEL_BSP_SCHEDULE_DELAY` in milliseconds; unset or not a number: the default.
pub fn delay_from(value: Option<String>) -> Option<Duration> {
    value?.trim().parse().ok().map(Duration::from_millis)
}
