//! The logs and traces together: which spans the logs show, and the trace ids in JSON lines.

use std::io::Write;
use std::sync::{Arc, Mutex};

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use super::{Logs, TRACES, Traces, layers};

/// What the log layer writes.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(bytes)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// The spans that end, as an exporter would get them.
#[derive(Debug, Clone, Default)]
struct Ended(Arc<Mutex<Vec<SpanData>>>);

impl SpanProcessor for Ended {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}
    fn on_end(&self, span: SpanData) {
        self.0.lock().unwrap().push(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown(&self) -> OTelSdkResult {
        Ok(())
    }
}

/// Logs a line outside any span, one in a `reconcile` span and one in an `execution` span
/// within it, as the operator does: the JSON lines, and the spans that ended.
fn log_in_spans(level: &str, traced: bool) -> (Vec<Value>, Vec<SpanData>) {
    let logs = Logs::new(level, "json").unwrap();
    let ended = Ended::default();
    let traces = Traces::with_processor(Resource::builder_empty().build(), ended.clone());
    let buffer = Buffer::default();
    let tracer = traced.then(|| traces.tracer());
    let subscriber = tracing_subscriber::registry().with(layers(&logs, buffer.clone(), tracer));
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("outside");
        let reconcile = tracing::info_span!(target: TRACES, "reconcile", task = "t");
        reconcile.in_scope(|| {
            tracing::warn!("in reconcile");
            let execution = tracing::info_span!("execution", task = "t");
            execution.in_scope(|| tracing::info!("in execution"));
        });
    });
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let spans = ended.0.lock().unwrap().clone();
    (lines, spans)
}

fn line<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["message"] == message)
        .unwrap_or_else(|| panic!("no line {message:?} in {lines:#?}"))
}

fn span<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?}"))
}

/// (trace_id, span_id) of a JSON line, as the span ids print.
fn ids(line: &Value) -> (String, String) {
    let id = |key: &str| line[key].as_str().unwrap_or_default().to_owned();
    (id("trace_id"), id("span_id"))
}

fn ids_of(span: &SpanData) -> (String, String) {
    let context = &span.span_context;
    (
        context.trace_id().to_string(),
        context.span_id().to_string(),
    )
}

#[test]
fn json_lines_in_a_traced_span_carry_its_trace_and_span_ids() {
    let (lines, spans) = log_in_spans("INFO", true);
    let (reconcile, execution) = (span(&spans, "reconcile"), span(&spans, "execution"));
    assert_eq!(ids(line(&lines, "in reconcile")), ids_of(reconcile));
    assert_eq!(ids(line(&lines, "in execution")), ids_of(execution));
    assert_eq!(
        execution.span_context.trace_id(),
        reconcile.span_context.trace_id(),
        "a span within another is in its trace"
    );
    assert_eq!(line(&lines, "in execution")["span"]["task"], "t");
    let outside = line(&lines, "outside");
    assert!(outside.get("trace_id").is_none(), "{outside}");
    assert_eq!(ids(outside).0.len(), 0);
    assert_eq!(ids_of(reconcile).0.len(), 32, "hex, as OTLP/JSON spells it");
}

#[test]
fn the_trace_ids_do_not_depend_on_the_log_level() {
    let (lines, spans) = log_in_spans("WARN", true);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(ids(&lines[0]), ids_of(span(&spans, "reconcile")));
    assert_eq!(
        spans.len(),
        2,
        "the traces keep their spans under LOG_LEVEL=WARN"
    );
}

#[test]
fn without_traces_the_logs_are_as_before() {
    let (lines, spans) = log_in_spans("INFO", false);
    assert!(spans.is_empty());
    assert!(lines.iter().all(|l| l.get("trace_id").is_none()));
    // The reconcile span, for traces alone, is not in the logs; the execution span is.
    let in_reconcile = line(&lines, "in reconcile");
    assert!(in_reconcile.get("span").is_none(), "{in_reconcile}");
    let in_execution = line(&lines, "in execution");
    assert_eq!(in_execution["spans"].as_array().map(Vec::len), Some(1));
    assert_eq!(in_execution["span"]["name"], "execution");
}
