//! Traces: OpenTelemetry spans of our `tracing` spans (a span per reconcile, `reconcile`, and
//! per execution, `execution`, each naming the task), exported over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! The resource is what the SDK detects (`OTEL_RESOURCE_ATTRIBUTES`, `telemetry.sdk.*`) with
//! `service.name` from `OTEL_SERVICE_NAME`, else from `OTEL_RESOURCE_ATTRIBUTES`, else `mcall`.
//! Sampling follows `OTEL_TRACES_SAMPLER` (default: every trace).

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use super::batch::{self, Batcher};
use super::otlp::{Endpoint, Exporter};

pub use opentelemetry_sdk::trace::SdkTracer as Tracer;

/// The default `service.name`: the SDK's own default, `unknown_service`, says nothing.
const SERVICE_NAME: &str = "mcall";
const SDK_DEFAULT_SERVICE_NAME: &str = "unknown_service";

/// The tracer provider and its export, running.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// `None` when no OTLP endpoint is set: then nothing of OpenTelemetry is set up. An error
    /// names the variable that cannot work.
    pub fn from_env() -> anyhow::Result<Option<Traces>> {
        let Some(endpoint) = Endpoint::from_env(|name| std::env::var(name).ok())? else {
            return Ok(None);
        };
        let resource = resource(std::env::var("OTEL_SERVICE_NAME").ok());
        let exporter = Exporter::new(endpoint, &resource)?;
        let delay = batch::delay_from(std::env::var("OTEL_BSP_SCHEDULE_DELAY").ok());
        let batcher = Batcher::start(exporter, delay).context("starting the trace export")?;
        Ok(Some(Traces::with_processor(resource, batcher)))
    }

    pub(super) fn with_processor(
        resource: Resource,
        processor: impl opentelemetry_sdk::trace::SpanProcessor + 'static,
    ) -> Traces {
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_span_processor(processor)
            .build();
        Traces { provider }
    }

    pub fn tracer(&self) -> Tracer {
        self.provider.tracer("mcall")
    }

    /// Exports what is still queued (within a few seconds) and stops the export.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "flushing the traces failed");
        }
    }
}

/// The layer that turns `tracing` spans into OpenTelemetry spans: their fields become
/// attributes, the lines logged in them span events. Thread ids and code locations are left
/// out: the operator runs on one thread, and a span's name says where it comes from.
pub fn layer<S>(tracer: Tracer) -> tracing_opentelemetry::OpenTelemetryLayer<S, Tracer>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false)
}

/// The detected resource with our `service.name` rule and `service.version`.
fn resource(otel_service_name: Option<String>) -> Resource {
    let detected = Resource::builder().build();
    let from_attributes = detected
        .get(&Key::new("service.name"))
        .map(|name| name.as_str().into_owned());
    let name = service_name(otel_service_name, from_attributes);
    let mut builder = Resource::builder().with_service_name(name);
    if detected.get(&Key::new("service.version")).is_none() {
        builder = builder.with_attribute(KeyValue::new(
            "service.version",
            Value::from(env!("CARGO_PKG_VERSION")),
        ));
    }
    builder.build()
}

/// `OTEL_SERVICE_NAME` wins over `service.name` in `OTEL_RESOURCE_ATTRIBUTES` (the
/// specification's order; the SDK lets the attributes win), and either over `mcall`.
fn service_name(otel_service_name: Option<String>, detected: Option<String>) -> String {
    otel_service_name
        .filter(|name| !name.is_empty())
        .or(detected.filter(|name| name != SDK_DEFAULT_SERVICE_NAME))
        .unwrap_or_else(|| SERVICE_NAME.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_name_comes_from_otel_service_name_then_the_attributes_then_mcall() {
        let name = |env: Option<&str>, detected: Option<&str>| {
            service_name(env.map(str::to_owned), detected.map(str::to_owned))
        };
        assert_eq!(name(Some("a"), Some("b")), "a");
        assert_eq!(name(Some(""), Some("b")), "b");
        assert_eq!(name(None, Some("b")), "b");
        assert_eq!(name(None, Some("unknown_service")), "mcall");
        assert_eq!(name(None, None), "mcall");
    }
}
