//! OTLP/HTTP export: spans as a protobuf `ExportTraceServiceRequest` (opentelemetry-proto's
//! types and conversion), POSTed to the collector's `/v1/traces`.
//!
//! Why our own exporter rather than opentelemetry-otlp: its HTTP clients are reqwest 0.12 and
//! hyper; the workspace has reqwest 0.13 (the HTTP checks use it), and one version of each crate
//! is the rule. Encoding is the library's; what is ours is the request and the settings below.
//!
//! Settings (the OpenTelemetry exporter variables; a `TRACES_` one wins over the general one):
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! (as it is), `OTEL_EXPORTER_OTLP_HEADERS` (`key=value,…`, values URL-encoded),
//! `OTEL_EXPORTER_OTLP_TIMEOUT` (ms, default 10 s), `OTEL_EXPORTER_OTLP_PROTOCOL` (only
//! `http/protobuf`).

use std::time::Duration;

use anyhow::{Context as _, bail};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::Message as _;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const PROTOCOL: &str = "http/protobuf";

/// Where the spans go and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: Url,
    pub headers: HeaderMap,
    pub timeout: Duration,
}

impl Endpoint {
    /// From the variables `var` reads; `None` when no endpoint is set (traces off). An error names
    /// the variable and what is wrong with it.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Endpoint>> {
        // The signal's own variable, else the general one; empty counts as unset.
        let setting = |name: &str| {
            let traces = name.replace("OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_");
            [traces, name.to_owned()]
                .into_iter()
                .find_map(|name| Some((var(&name).filter(|v| !v.trim().is_empty())?, name)))
        };
        let Some((set, name)) = setting("OTEL_EXPORTER_OTLP_ENDPOINT") else {
            return Ok(None);
        };
        let set = set.trim();
        let url = if name.contains("_TRACES_") {
            Url::parse(set)
        } else {
            Url::parse(&format!("{}/v1/traces", set.trim_end_matches('/')))
        };
        let url = url.with_context(|| format!("{name} {set:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("{name} {set:?} is not an http:// or https:// URL");
        }
        if let Some((protocol, name)) = setting("OTEL_EXPORTER_OTLP_PROTOCOL")
            && protocol.trim() != PROTOCOL
        {
            bail!(
                "{name} is {protocol:?}, but mcall exports traces as {PROTOCOL} only (OTLP/HTTP, \
                 a collector's port 4318): set it to {PROTOCOL} or leave it unset"
            );
        }
        let headers = match setting("OTEL_EXPORTER_OTLP_HEADERS") {
            Some((headers, name)) => parse_headers(&headers).context(name)?,
            None => HeaderMap::new(),
        };
        let timeout = match setting("OTEL_EXPORTER_OTLP_TIMEOUT") {
            Some((ms, name)) => ms
                .trim()
                .parse()
                .map(Duration::from_millis)
                .with_context(|| format!("{name} {ms:?} is not a number of milliseconds"))?,
            None => DEFAULT_TIMEOUT,
        };
        Ok(Some(Endpoint {
            url,
            headers,
            timeout,
        }))
    }
}

/// `key=value,key2=value2` with URL-encoded values (the W3C baggage form).
fn parse_headers(text: &str) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("{pair:?} is not key=value");
        };
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .with_context(|| format!("the value of {key:?} is not UTF-8 once decoded"))?;
        let name = HeaderName::try_from(key.trim())
            .with_context(|| format!("{key:?} is not a header name"))?;
        let value = HeaderValue::try_from(value.as_ref())
            .with_context(|| format!("the value of {key:?} is not a header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Sends spans to the endpoint. Used by the export thread only, on its own runtime.
pub struct Exporter {
    client: reqwest::Client,
    endpoint: Endpoint,
    resource: ResourceAttributesWithSchema,
}

impl Exporter {
    pub fn new(endpoint: Endpoint, resource: &Resource) -> anyhow::Result<Exporter> {
        // reqwest is built without a bundled crypto provider: ring, as for the HTTP checks (an
        // error only means one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("mcall/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("setting up the HTTP client of the trace export")?;
        Ok(Exporter {
            client,
            endpoint,
            resource: resource.into(),
        })
    }

    /// How long one request may take at most.
    pub fn timeout(&self) -> Duration {
        self.endpoint.timeout
    }

    /// One request with `spans`, within `timeout`. The error says why, for the log.
    pub async fn export(&self, spans: Vec<SpanData>, timeout: Duration) -> Result<(), String> {
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &self.resource),
        };
        let url = &self.endpoint.url;
        let response = self
            .client
            .post(url.clone())
            .headers(self.endpoint.headers.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(request.encode_to_vec())
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {}", describe(&e)))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("POST {url}: {status}")),
        }
    }
}

/// The error and its causes (reqwest's own message is often only "error sending request").
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn endpoint(vars: &[(&str, &str)]) -> anyhow::Result<Option<Endpoint>> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Endpoint::from_env(|name| vars.get(name).cloned())
    }

    fn url(vars: &[(&str, &str)]) -> String {
        endpoint(vars).unwrap().unwrap().url.to_string()
    }

    #[test]
    fn no_endpoint_means_no_traces() {
        assert_eq!(endpoint(&[]).unwrap(), None);
        assert_eq!(
            endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap(),
            None
        );
        assert_eq!(endpoint(&[("OTEL_SERVICE_NAME", "x")]).unwrap(), None);
    }

    #[test]
    fn the_general_endpoint_gets_the_traces_path_and_the_traces_one_is_used_as_it_is() {
        let general = "OTEL_EXPORTER_OTLP_ENDPOINT";
        let traces = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
        assert_eq!(
            url(&[(general, "http://c:4318")]),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            url(&[(general, "http://c:4318/")]),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            url(&[(general, "https://c/otlp")]),
            "https://c/otlp/v1/traces"
        );
        assert_eq!(url(&[(traces, "http://c:4318/x")]), "http://c:4318/x");
        assert_eq!(
            url(&[(general, "http://a"), (traces, "http://b/t")]),
            "http://b/t"
        );
    }

    #[test]
    fn a_bad_setting_names_its_variable() {
        let error = |vars: &[(&str, &str)]| format!("{:#}", endpoint(vars).unwrap_err());
        let general = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        assert!(error(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318")]).contains("not an http"));
        assert!(
            error(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "nope")])
                .starts_with("OTEL_EXPORTER_OTLP_ENDPOINT \"nope\" is not a URL")
        );
        let grpc = error(&[general, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert!(
            grpc.starts_with("OTEL_EXPORTER_OTLP_PROTOCOL is \"grpc\""),
            "{grpc}"
        );
        let timeout = error(&[general, ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "5s")]);
        assert!(
            timeout.starts_with("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT \"5s\""),
            "{timeout}"
        );
        let headers = error(&[general, ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b")]);
        assert!(
            headers.starts_with("OTEL_EXPORTER_OTLP_HEADERS: \"b\""),
            "{headers}"
        );
    }

    #[test]
    fn headers_timeout_and_protocol() {
        let found = endpoint(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-api-key=a%20b%3Dc, x-team = ops",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(found.headers["x-api-key"], "a b=c");
        assert_eq!(found.headers["x-team"], "ops");
        assert_eq!(found.timeout, Duration::from_millis(2500));
        let default = endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c")]);
        assert_eq!(default.unwrap().unwrap().timeout, DEFAULT_TIMEOUT);
    }
}
