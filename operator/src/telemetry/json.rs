//! Trace ids in JSON log lines: a line logged in a traced span starts with the span's
//! `"trace_id"` and `"span_id"` (lowercase hex, as OTLP/JSON and the W3C `traceparent` spell
//! them), so a log search finds the trace and a trace finds its lines.

use std::fmt;

use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OtelData;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

/// Wraps a JSON event format; lines logged outside traced spans are left as they are.
pub struct WithTraceIds<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some((trace_id, span_id)) = current_ids(ctx) else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // The inner format writes one object: the ids go in first, before its own fields.
        match line.strip_prefix('{') {
            Some(rest) => {
                let comma = if rest.starts_with('}') { "" } else { "," };
                write!(
                    writer,
                    "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{comma}{rest}"
                )
            }
            None => writer.write_str(&line),
        }
    }
}

/// The ids of the innermost traced span the event is in. The trace layer keeps its data in
/// each span's extensions: a root span holds the trace id it was given, a child finds it in its
/// parent's context.
fn current_ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(TraceId, SpanId)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    let current = ctx.lookup_current()?;
    current.scope().find_map(|span| {
        let extensions = span.extensions();
        let data = extensions.get::<OtelData>()?;
        let span_id = data.builder.span_id?;
        let trace_id = data
            .builder
            .trace_id
            .unwrap_or_else(|| data.parent_cx.span().span_context().trace_id());
        (trace_id != TraceId::INVALID).then_some((trace_id, span_id))
    })
}
