//! Running one `get`/`post` input with reqwest: headers, body, redirect policy, a per-request
//! timeout, and the body read into a bounded capture.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, redirect};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::capture::{Capture, Captured};
use crate::plan::{HttpPlan, InputPlan};
use crate::request::TaskKind;

/// How an HTTP run ended.
#[derive(Debug)]
pub(crate) enum HttpEnd {
    /// A complete response (the body is in the capture).
    Response {
        status: u16,
        headers: HeaderMap,
    },
    /// No complete response within `limit`; `by_response_timeout` says which setting bound it.
    TimedOut {
        limit: Duration,
        by_response_timeout: bool,
    },
    Cancelled,
    /// Connection, TLS, redirect or protocol failure, as a one-line reason.
    Failed {
        reason: String,
        status: Option<u16>,
    },
}

#[derive(Debug)]
pub(crate) struct HttpRun {
    pub end: HttpEnd,
    pub output: Captured,
    /// From sending the request to the end of the response body, when a response came whole.
    pub response_time: Option<Duration>,
}

/// What [`run_http`] needs besides the input.
pub(crate) struct HttpSettings<'a> {
    pub plan: &'a HttpPlan,
    pub task_timeout: Duration,
    pub keep: usize,
    /// The attempt's deadline: a request never outlives it, whatever `responseTimeout` says.
    pub deadline: Instant,
}

pub(crate) async fn run_http(
    input: &InputPlan,
    settings: &HttpSettings<'_>,
    cancel: &CancellationToken,
) -> HttpRun {
    let plan = settings.plan;
    let failed = |reason: String| HttpRun {
        end: HttpEnd::Failed {
            reason,
            status: None,
        },
        output: Captured::default(),
        response_time: None,
    };
    let client = match client(plan.follow_redirects, plan.max_redirects) {
        Ok(client) => client,
        Err(reason) => return failed(reason),
    };
    let Some(url) = input.url.clone() else {
        return failed("the input has no URL".to_owned());
    };
    let method = if input.kind == TaskKind::Post {
        Method::POST
    } else {
        Method::GET
    };
    let mut request = client.request(method, url).headers(plan.headers.clone());
    if input.kind == TaskKind::Post {
        request = request.body(plan.body.clone().unwrap_or_default());
    }
    let limit = plan.response_timeout.unwrap_or(settings.task_timeout);
    let own_deadline = Instant::now() + limit;
    let by_response_timeout = plan.response_timeout.is_some() && own_deadline <= settings.deadline;
    let deadline = own_deadline.min(settings.deadline);
    let limit = if by_response_timeout {
        limit
    } else {
        settings.task_timeout
    };

    // One capture outlives the request future, so a partial body is kept even on timeout.
    let mut capture = Capture::new(settings.keep);
    let sent = Instant::now();
    let exchange = async {
        let mut response = request.send().await.map_err(|e| (describe(e), None))?;
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => capture.push(&chunk),
                Ok(None) => break,
                Err(e) => {
                    return Err((
                        format!("reading the response body failed: {}", describe(e)),
                        Some(status),
                    ));
                }
            }
        }
        Ok((status, headers))
    };
    let mut response_time = None;
    let end = tokio::select! {
        result = exchange => match result {
            Ok((status, headers)) => {
                response_time = Some(sent.elapsed());
                HttpEnd::Response { status, headers }
            }
            Err((reason, status)) => HttpEnd::Failed { reason, status },
        },
        () = sleep_until(deadline) => HttpEnd::TimedOut { limit, by_response_timeout },
        () = cancel.cancelled() => HttpEnd::Cancelled,
    };
    HttpRun {
        end,
        output: capture.finish(),
        response_time,
    }
}

/// A reqwest error with its causes, on one line ("error sending request: connection refused").
/// The URL is left out: the message names the input already.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// One client per redirect policy, shared by all tasks: building a client loads the TLS root
/// store, which is too slow to repeat for every check. Pooling is off so that every check opens
/// its own connection (it measures the real service, not a kept-alive socket) and so that no
/// connection is tied to a runtime that may be gone by the next use.
fn client(follow_redirects: bool, max_redirects: u32) -> Result<Client, String> {
    static CLIENTS: OnceLock<Mutex<HashMap<(bool, u32), Client>>> = OnceLock::new();
    let key = (
        follow_redirects,
        if follow_redirects { max_redirects } else { 0 },
    );
    let clients = CLIENTS.get_or_init(Default::default);
    let mut clients = clients
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(client) = clients.get(&key) {
        return Ok(client.clone());
    }
    // reqwest is built without a bundled crypto provider: use ring, the one kube uses too.
    // An error only means some provider is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let policy = if follow_redirects {
        let max = max_redirects as usize;
        redirect::Policy::custom(move |attempt| {
            // `previous` starts with the original URL, so it holds one more than the hops made.
            if attempt.previous().len() > max {
                attempt.error(format!(
                    "more than {max} redirects (httpValidation.maxRedirects is {max})"
                ))
            } else {
                attempt.follow()
            }
        })
    } else {
        redirect::Policy::none()
    };
    let client = Client::builder()
        .redirect(policy)
        .pool_max_idle_per_host(0)
        .user_agent(concat!("mcall/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("could not set up the HTTP client: {}", describe(e)))?;
    clients.insert(key, client.clone());
    Ok(client)
}
