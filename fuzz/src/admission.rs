//! The admission webhook's AdmissionReview handling: `mcall::webhook::review::review`.
//!
//! Input: the first byte picks the endpoint (even: McallTask, odd: McallWorkflow), the rest is
//! the HTTP body the API server would send.
//!
//! Properties: the answer is deterministic; a body that parses is answered with a response
//! that echoes the request's uid; a refusal always says why.

use mcall::webhook::review::{Kind, Settings, review};

pub(crate) fn run(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let kind = if selector % 2 == 0 {
        Kind::McallTask
    } else {
        Kind::McallWorkflow
    };
    let first = review(kind, &Settings::default(), body);
    let again = review(kind, &Settings::default(), body);
    let as_json = |r: &Result<_, _>| match r {
        Ok(review) => serde_json::to_string(review).expect("a review serializes"),
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(
        as_json(&first),
        as_json(&again),
        "the answer is deterministic"
    );
    let Ok(answer) = first else {
        return;
    };
    let response = answer.response.expect("an answered review has a response");
    if !response.allowed {
        assert!(
            !response.result.message.is_empty(),
            "a refusal says why: {response:?}"
        );
    }
    let sent: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    if let Some(uid) = sent["request"]["uid"].as_str() {
        assert_eq!(response.uid, uid, "the response echoes the request's uid");
    }
}
