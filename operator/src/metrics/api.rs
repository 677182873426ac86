//! Requests to the Kubernetes API server by verb and response code: a tower layer on the kube
//! client. The verb is the one Kubernetes names (get, list, watch, create, update, patch, delete,
//! deletecollection), from the HTTP method and the path; the code is the HTTP status, or `error`
//! when no response came (connection refused, TLS, timeout).

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Method, Request, Response, Uri};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tower::{Layer, Service};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    code: Code,
}

/// An HTTP status, or none when the request failed without a response.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(super) struct Code(pub(super) Option<u16>);

impl EncodeLabelValue for Code {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        match self.0 {
            Some(code) => write!(encoder, "{code}"),
            None => encoder.write_str("error"),
        }
    }
}

#[derive(Clone)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
}

impl ApiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ApiMetrics {
            requests: Family::default(),
        };
        registry.register(
            "api_requests",
            "Requests to the Kubernetes API server, per verb and HTTP status code (`error`: no response)",
            metrics.requests.clone(),
        );
        metrics
    }

    pub(super) fn count(&self, verb: &'static str, code: Code) {
        self.requests
            .get_or_create(&RequestLabels { verb, code })
            .inc();
    }
}

/// The Kubernetes verb of a request.
pub fn verb(method: &Method, uri: &Uri) -> &'static str {
    let collection = names_a_collection(uri.path());
    match *method {
        Method::GET if is_watch(uri.query()) => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "other",
    }
}

fn is_watch(query: Option<&str>) -> bool {
    query
        .unwrap_or_default()
        .split('&')
        .any(|pair| matches!(pair, "watch=true" | "watch=1"))
}

/// Whether `path` names a collection of resources (`/api/v1/namespaces/ns/pods`,
/// `/apis/g/v1/leases`) rather than one object, its subresource, or discovery.
fn names_a_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let resource = match segments.as_slice() {
        ["api", _version, rest @ ..] | ["apis", _, _version, rest @ ..] => rest,
        _ => return false,
    };
    let resource = match resource {
        ["namespaces", _namespace, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    resource.len() == 1
}

/// Counts the requests of the service it wraps; see [`ApiMetrics`].
#[derive(Clone)]
pub struct ApiMetricsLayer {
    metrics: ApiMetrics,
}

impl ApiMetricsLayer {
    pub fn new(metrics: ApiMetrics) -> Self {
        ApiMetricsLayer { metrics }
    }
}

impl<S> Layer<S> for ApiMetricsLayer {
    type Service = ApiMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ApiMetricsService<S> {
    inner: S,
    metrics: ApiMetrics,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ApiMetricsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    // The kube client's own stack boxes its futures, so this costs no allocation here.
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let verb = verb(request.method(), request.uri());
        Counted {
            inner: self.inner.call(request),
            verb,
            metrics: self.metrics.clone(),
        }
    }
}

/// A request's response future; counts the request once it has a response or failed.
pub struct Counted<F> {
    inner: F,
    verb: &'static str,
    metrics: ApiMetrics,
}

impl<F, B, E> Future for Counted<F>
where
    F: Future<Output = Result<Response<B>, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = ready!(Pin::new(&mut self.inner).poll(cx));
        let code = Code(result.as_ref().ok().map(|r| r.status().as_u16()));
        self.metrics.count(self.verb, code);
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_the_kubernetes_ones() {
        let crd = "/apis/mcall.tz.io/v1/namespaces/ns/mcalltasks";
        let lease = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/mcall-operator";
        let cases = [
            (
                Method::GET,
                format!("{crd}?&watch=true&resourceVersion=1"),
                "watch",
            ),
            (Method::GET, format!("{crd}?limit=100"), "list"),
            (
                Method::GET,
                "/apis/mcall.tz.io/v1/mcalltasks".into(),
                "list",
            ),
            (Method::GET, "/api/v1/namespaces".into(), "list"),
            (Method::GET, format!("{crd}/t"), "get"),
            (Method::GET, format!("{crd}/t/status"), "get"),
            (Method::GET, lease.into(), "get"),
            (Method::GET, "/api/v1/namespaces/ns".into(), "get"),
            (Method::GET, "/apis/mcall.tz.io/v1".into(), "get"),
            (Method::GET, "/version".into(), "get"),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/ns/events".into(),
                "create",
            ),
            (Method::PUT, lease.into(), "update"),
            (
                Method::PATCH,
                format!("{crd}/t/status?fieldManager=mcall"),
                "patch",
            ),
            (Method::DELETE, format!("{crd}/t"), "delete"),
            (Method::DELETE, crd.into(), "deletecollection"),
            (Method::HEAD, crd.into(), "other"),
        ];
        for (method, uri, expected) in cases {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(verb(&method, &uri), expected, "{method} {uri}");
        }
    }
}
