//! One AdmissionReview in, one out. Pure: the HTTP server hands over the body and sends back
//! what this returns.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use mcall_generated::{McallTask, McallWorkflow};
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

/// What the operator's flags change about admission.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    pub cross_namespace_templates: bool,
}

/// A body that is not an AdmissionReview at all: answered with 400, as there is no review to
/// answer in.
#[derive(Debug, thiserror::Error)]
#[error("the body is not an AdmissionReview: {0}")]
pub struct NotAReview(#[from] serde_json::Error);

/// Judges the AdmissionReview in `body`, sent to `kind`'s endpoint; the response echoes the
/// request's uid. A review without a request is answered `allowed: false` with why.
pub fn review(
    kind: Kind,
    settings: Settings,
    body: &[u8],
) -> Result<AdmissionReview<DynamicObject>, NotAReview> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)?;
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(_) => {
            let response = AdmissionResponse::invalid("the AdmissionReview has no request");
            return Ok(response.into_review());
        }
    };
    let response = AdmissionResponse::from(&request);
    let response = match judge(kind, settings, &request) {
        Ok(()) => response,
        Err(message) => response.deny(message),
    };
    Ok(response.into_review())
}

/// Why the request is refused, if it is.
fn judge(
    kind: Kind,
    settings: Settings,
    request: &AdmissionRequest<DynamicObject>,
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
        Kind::McallTask => validate::task(&typed::<McallTask>(object, kind)?),
        Kind::McallWorkflow => validate::workflow(
            &typed::<McallWorkflow>(object, kind)?,
            settings.cross_namespace_templates,
        ),
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
