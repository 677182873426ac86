//! One AdmissionReview in, one out. Pure: the HTTP server hands over the body (and the tasks a
//! McallTask's dependencies lead to, which it reads from the API server) and sends back what
//! this returns.

use std::sync::Arc;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use mcall_generated::{McallTask, McallWorkflow};

pub use super::settings::Settings;
use serde::de::DeserializeOwned;

use super::validate;

/// The kind an endpoint validates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    McallTask,
    McallWorkflow,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::McallTask => "McallTask",
            Kind::McallWorkflow => "McallWorkflow",
        }
    }
}

/// A task of the reviewed object's namespace, by name (`None`: none known).
pub type Tasks<'a> = &'a dyn Fn(&str) -> Option<Arc<McallTask>>;

/// A body that is not an AdmissionReview at all: answered with 400, as there is no review to
/// answer in.
#[derive(Debug, thiserror::Error)]
#[error("the body is not an AdmissionReview: {0}")]
pub struct NotAReview(#[from] serde_json::Error);

/// Judges the AdmissionReview in `body`, sent to `kind`'s endpoint, knowing no other task.
pub fn review(
    kind: Kind,
    settings: &Settings,
    body: &[u8],
) -> Result<AdmissionReview<DynamicObject>, NotAReview> {
    Ok(match parse(body)? {
        Some(request) => answer(kind, settings, &request, &|_| None),
        None => no_request(),
    })
}

/// The request of the AdmissionReview in `body`; `None` when the review has none.
pub fn parse(body: &[u8]) -> Result<Option<AdmissionRequest<DynamicObject>>, NotAReview> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)?;
    Ok(review.try_into().ok())
}

/// The answer to a review without a request: `allowed: false`, saying so.
pub fn no_request() -> AdmissionReview<DynamicObject> {
    AdmissionResponse::invalid("the AdmissionReview has no request").into_review()
}

/// A McallTask's place and `spec.dependencies`: where the server starts reading the tasks a
/// dependency cycle would run through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependencies {
    pub namespace: String,
    pub name: String,
    pub names: Vec<String>,
}

/// The reviewed McallTask's dependencies, when the request is judged and it has any.
pub fn dependencies(request: &AdmissionRequest<DynamicObject>) -> Option<Dependencies> {
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return None;
    }
    let object = request.object.as_ref()?;
    if request.operation == Operation::Update
        && unjudged_update(object, request.old_object.as_ref())
    {
        return None;
    }
    // A scheduled task closes no cycle (see `validate::task`).
    if !object.data["spec"]["schedule"].is_null() {
        return None;
    }
    let names: Vec<String> = object.data["spec"]["dependencies"]
        .as_array()?
        .iter()
        .filter_map(|name| name.as_str().map(str::to_owned))
        .collect();
    let namespace = request
        .namespace
        .clone()
        .or(object.metadata.namespace.clone())?;
    let name = object.metadata.name.clone()?;
    (!names.is_empty()).then_some(Dependencies {
        namespace,
        name,
        names,
    })
}

/// Judges `request`, sent to `kind`'s endpoint, with `tasks` of its namespace known; the
/// response echoes the request's uid.
pub fn answer(
    kind: Kind,
    settings: &Settings,
    request: &AdmissionRequest<DynamicObject>,
    tasks: Tasks<'_>,
) -> AdmissionReview<DynamicObject> {
    let response = AdmissionResponse::from(request);
    let response = match judge(kind, settings, request, tasks) {
        Ok(()) => response,
        Err(message) => response.deny(message),
    };
    response.into_review()
}

/// Why the request is refused, if it is.
fn judge(
    kind: Kind,
    settings: &Settings,
    request: &AdmissionRequest<DynamicObject>,
    tasks: Tasks<'_>,
) -> Result<(), String> {
    // The registration sends only CREATE and UPDATE; anything else is let through so that a
    // wider registration can never keep anyone from deleting.
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Ok(());
    }
    if request.kind.kind != kind.name() {
        return Err(format!(
            "this endpoint validates {}, not {}; check the webhook's registration",
            kind.name(),
            request.kind.kind
        ));
    }
    let Some(object) = &request.object else {
        return Err("the admission request has no object".to_owned());
    };
    if request.operation == Operation::Update
        && unjudged_update(object, request.old_object.as_ref())
    {
        return Ok(());
    }
    match kind {
        Kind::McallTask => validate::task(&typed::<McallTask>(object, kind)?, settings, tasks),
        Kind::McallWorkflow => validate::workflow(&typed::<McallWorkflow>(object, kind)?, settings),
    }
}

/// An update that leaves the spec as it was (labels, annotations, finalizers), or that of an
/// object being deleted, is let through: an object admitted while the webhook was down must
/// stay labelable and deletable, and its problem is already in its status.
fn unjudged_update(object: &DynamicObject, old: Option<&DynamicObject>) -> bool {
    object.metadata.deletion_timestamp.is_some()
        || old.is_some_and(|old| old.data.get("spec") == object.data.get("spec"))
}

fn typed<K: DeserializeOwned>(object: &DynamicObject, kind: Kind) -> Result<K, String> {
    let value = serde_json::to_value(object).map_err(|e| e.to_string())?;
    serde_json::from_value(value).map_err(|e| format!("the object is not a {}: {e}", kind.name()))
}

#[cfg(test)]
mod tests;
