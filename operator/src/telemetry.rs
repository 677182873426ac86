//! Logging: `LOG_LEVEL` (DEBUG, INFO, WARN, ERROR; default INFO) and `LOG_FORMAT` (json, text).
//! Traces: OpenTelemetry over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`traces.rs`);
//! then JSON log lines carry the `trace_id` and `span_id` of the span they were logged in.
//! Without it, nothing of OpenTelemetry is set up: no exporter, no thread, the same logs.

mod batch;
mod json;
mod otlp;
mod traces;

use tracing::Metadata;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{Format, Json};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use traces::Traces;

/// Target of spans that exist for traces alone (the `reconcile` span): the logs show them only
/// while traces are on, so the logs of an operator without traces stay as they were.
pub const TRACES: &str = "mcall::traces";

/// What stays set up until the process ends; dropping it flushes the spans still queued.
#[must_use = "dropping it stops the traces"]
pub struct Telemetry {
    traces: Option<Traces>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(traces) = self.traces.take() {
            traces.shutdown();
        }
    }
}

/// Sets up the logs and, when `with_traces` and the environment asks for them, the traces.
pub fn init(level: &str, format: &str, with_traces: bool) -> anyhow::Result<Telemetry> {
    let logs = Logs::new(level, format)?;
    let traces = if with_traces {
        Traces::from_env()?
    } else {
        None
    };
    let tracer = traces.as_ref().map(Traces::tracer);
    tracing_subscriber::registry()
        .with(layers(&logs, std::io::stderr, tracer))
        .init();
    Ok(Telemetry { traces })
}

/// The log settings, checked.
struct Logs {
    directives: String,
    json: bool,
}

impl Logs {
    fn new(level: &str, format: &str) -> anyhow::Result<Logs> {
        let level = match level.to_ascii_uppercase().as_str() {
            "DEBUG" => "debug",
            "INFO" | "" => "info",
            "WARN" | "WARNING" => "warn",
            "ERROR" => "error",
            other => anyhow::bail!("LOG_LEVEL {other:?} is not one of DEBUG, INFO, WARN, ERROR"),
        };
        let json = match format {
            "json" => true,
            "text" | "" => false,
            other => anyhow::bail!("LOG_FORMAT {other:?} is not json or text"),
        };
        // Our crates at the chosen level; libraries one step quieter unless debugging.
        let directives = format!(
            "warn,mcall={level},mcall_engine={level},kube_runtime={},{TRACES}=off",
            if level == "debug" { "debug" } else { "warn" }
        );
        Ok(Logs { directives, json })
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The log layer and, given a tracer, the trace layer, each with its own filter: the traces do
/// not depend on `LOG_LEVEL`. While traces are on, the logs also know every traced span (not
/// only those `LOG_LEVEL` shows), so that a line logged in one names its trace.
fn layers<W>(logs: &Logs, writer: W, tracer: Option<traces::Tracer>) -> Vec<BoxedLayer>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::new(&logs.directives);
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let log_layer: BoxedLayer = match (logs.json, tracer.is_some()) {
        (false, false) => fmt.with_filter(filter).boxed(),
        (false, true) => fmt.with_filter(filter.or(traced_spans())).boxed(),
        (true, false) => fmt
            .json()
            .event_format(json_format())
            .with_filter(filter)
            .boxed(),
        (true, true) => fmt
            .json()
            .event_format(json::WithTraceIds(json_format()))
            .with_filter(filter.or(traced_spans()))
            .boxed(),
    };
    let mut layers = vec![log_layer];
    if let Some(tracer) = tracer {
        layers.push(traces::layer(tracer).with_filter(traced()).boxed());
    }
    layers
}

/// One JSON object a line, the event's fields at the top level, with the span it was logged in.
fn json_format() -> Format<Json> {
    tracing_subscriber::fmt::format()
        .json()
        .flatten_event(true)
        .with_current_span(true)
}

/// What the traces record: our spans and, as span events, the lines logged in them, from INFO up.
fn traced() -> Targets {
    Targets::new().with_target("mcall", tracing::Level::INFO)
}

/// The spans of [`traced`], as a log filter.
fn traced_spans() -> tracing_subscriber::filter::FilterFn<impl Fn(&Metadata<'_>) -> bool> {
    let traced = traced();
    filter_fn(move |meta| meta.is_span() && traced.would_enable(meta.target(), meta.level()))
}

#[cfg(test)]
mod tests;
