//! What a scrape gets, decided from the reviews' results without any I/O: who the token is
//! ([`authentication`]), whether they may read `/metrics` ([`authorized`]), and the HTTP answer
//! ([`response`]). A failed review is an error, never an allow.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::TokenReviewStatus;
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};

/// The non-resource URL and verb a scraper needs (what the chart's metrics-reader ClusterRole
/// grants).
pub const METRICS_PATH: &str = "/metrics";
pub const METRICS_VERB: &str = "get";

/// A user the API server authenticated, as its TokenReview said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a scrape gets once the reviews answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated and allowed: the metrics.
    Allowed,
    /// No token, or one the API server did not accept: 401.
    Unauthenticated,
    /// Authenticated, not allowed to `get /metrics`: 403.
    Forbidden,
}

/// A review that could not be made: the answer is an error, not a verdict.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("creating a TokenReview failed: {0}")]
    TokenReview(#[source] kube::Error),
    #[error("creating a SubjectAccessReview failed: {0}")]
    SubjectAccessReview(#[source] kube::Error),
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive);
/// `None` when there is none, another scheme, or an empty token.
pub fn bearer_token(header: Option<&HeaderValue>) -> Option<&str> {
    let value = header?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The user a TokenReview's status vouches for: only an explicit `authenticated: true` with a
/// user name counts.
pub fn authentication(status: Option<&TokenReviewStatus>) -> Option<User> {
    let status = status.filter(|s| s.authenticated == Some(true))?;
    let user = status.user.as_ref()?;
    let name = user.username.clone().filter(|n| !n.is_empty())?;
    Some(User {
        name,
        uid: user.uid.clone().filter(|u| !u.is_empty()),
        groups: user.groups.clone().unwrap_or_default(),
        extra: user.extra.clone().unwrap_or_default(),
    })
}

/// The SubjectAccessReview asking whether `user` may `get /metrics`.
pub fn access_review(user: &User) -> SubjectAccessReviewSpec {
    SubjectAccessReviewSpec {
        user: Some(user.name.clone()),
        uid: user.uid.clone(),
        groups: Some(user.groups.clone()).filter(|g| !g.is_empty()),
        extra: Some(user.extra.clone()).filter(|e| !e.is_empty()),
        non_resource_attributes: Some(NonResourceAttributes {
            path: Some(METRICS_PATH.to_owned()),
            verb: Some(METRICS_VERB.to_owned()),
        }),
        resource_attributes: None,
    }
}

/// Whether a SubjectAccessReview's status allows: `allowed` and not `denied` (an authorizer
/// that failed to evaluate says neither, which is a no).
pub fn authorized(status: Option<&SubjectAccessReviewStatus>) -> bool {
    status.is_some_and(|s| s.allowed && s.denied != Some(true))
}

/// The verdict from the two reviews: `None` for the authentication means it was refused, and
/// then no authorization was asked.
pub fn verdict(user: Option<&User>, allowed: Option<bool>) -> Verdict {
    match (user, allowed) {
        (None, _) => Verdict::Unauthenticated,
        (Some(_), Some(true)) => Verdict::Allowed,
        (Some(_), _) => Verdict::Forbidden,
    }
}

/// The status of a refused or failed scrape, and its message; `None` for an allowed one.
pub fn refusal(outcome: &Result<Verdict, ReviewError>) -> Option<(StatusCode, String)> {
    match outcome {
        Ok(Verdict::Allowed) => None,
        Ok(Verdict::Unauthenticated) => Some((
            StatusCode::UNAUTHORIZED,
            "Unauthorized: send a ServiceAccount token as `Authorization: Bearer <token>`".into(),
        )),
        Ok(Verdict::Forbidden) => Some((
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden: the token's user may not {METRICS_VERB} {METRICS_PATH}; bind it to the chart's metrics-reader ClusterRole"
            ),
        )),
        // The API server answered with an error (the operator may lack the RBAC to create
        // reviews): the operator is misconfigured.
        Err(
            error @ (ReviewError::TokenReview(kube::Error::Api(_))
            | ReviewError::SubjectAccessReview(kube::Error::Api(_))),
        ) => Some((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request could not be reviewed: {error}"),
        )),
        // No answer: the API server is out of reach, perhaps for a moment.
        Err(error) => Some((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request could not be reviewed: {error}"),
        )),
    }
}

/// The HTTP answer to a refused or failed scrape (see [`refusal`]).
pub fn refusal_response(status: StatusCode, message: String) -> Response {
    if status == StatusCode::UNAUTHORIZED {
        let challenge = [(header::WWW_AUTHENTICATE, "Bearer")];
        (status, challenge, message).into_response()
    } else {
        (status, message).into_response()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token(Some(&header("Bearer abc"))), Some("abc"));
        assert_eq!(bearer_token(Some(&header("bearer  abc "))), Some("abc"));
        assert_eq!(bearer_token(Some(&header("Basic abc"))), None);
        assert_eq!(bearer_token(Some(&header("Bearer "))), None);
        assert_eq!(bearer_token(Some(&header("Bearer"))), None);
        assert_eq!(bearer_token(None), None);
    }

    fn token_status(authenticated: Option<bool>, username: Option<&str>) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated,
            user: Some(UserInfo {
                username: username.map(str::to_owned),
                groups: Some(vec!["system:serviceaccounts".into()]),
                uid: Some("u-1".into()),
                extra: None,
            }),
            ..TokenReviewStatus::default()
        }
    }

    #[test]
    fn only_an_explicit_authentication_with_a_name_is_a_user() {
        let user = authentication(Some(&token_status(Some(true), Some("sa")))).unwrap();
        assert_eq!(user.name, "sa");
        assert_eq!(user.groups, ["system:serviceaccounts"]);
        assert_eq!(user.uid.as_deref(), Some("u-1"));
        for (authenticated, name) in [
            (Some(false), Some("sa")),
            (None, Some("sa")),
            (Some(true), None),
            (Some(true), Some("")),
        ] {
            let status = token_status(authenticated, name);
            assert_eq!(authentication(Some(&status)), None, "{status:?}");
        }
        assert_eq!(authentication(None), None);
    }

    #[test]
    fn the_access_review_asks_for_get_metrics_as_the_user() {
        let user = authentication(Some(&token_status(Some(true), Some("sa")))).unwrap();
        let spec = access_review(&user);
        assert_eq!(spec.user.as_deref(), Some("sa"));
        assert_eq!(
            spec.groups.as_deref(),
            Some(&["system:serviceaccounts".into()][..])
        );
        let attributes = spec.non_resource_attributes.unwrap();
        assert_eq!(attributes.path.as_deref(), Some("/metrics"));
        assert_eq!(attributes.verb.as_deref(), Some("get"));
        assert!(spec.resource_attributes.is_none());
    }

    #[test]
    fn only_allowed_and_not_denied_authorizes() {
        let status = |allowed, denied| SubjectAccessReviewStatus {
            allowed,
            denied,
            ..SubjectAccessReviewStatus::default()
        };
        assert!(authorized(Some(&status(true, None))));
        assert!(authorized(Some(&status(true, Some(false)))));
        assert!(!authorized(Some(&status(true, Some(true)))));
        assert!(!authorized(Some(&status(false, None))));
        assert!(!authorized(None));
    }

    #[test]
    fn verdicts_and_their_status_codes() {
        let user = User {
            name: "sa".into(),
            uid: None,
            groups: vec![],
            extra: BTreeMap::new(),
        };
        let cases = [
            (None, None, Verdict::Unauthenticated, Some(401)),
            (None, Some(true), Verdict::Unauthenticated, Some(401)),
            (Some(&user), Some(false), Verdict::Forbidden, Some(403)),
            (Some(&user), None, Verdict::Forbidden, Some(403)),
            (Some(&user), Some(true), Verdict::Allowed, None),
        ];
        for (user, allowed, want, code) in cases {
            let got = verdict(user, allowed);
            assert_eq!(got, want, "{user:?} {allowed:?}");
            let status = refusal(&Ok(got)).map(|(s, _)| s.as_u16());
            assert_eq!(status, code, "{got:?}");
        }
    }

    #[test]
    fn a_failed_review_is_an_error_never_an_allow() {
        let api = kube::Error::Api(Box::new(
            kube::core::Status::failure("tokenreviews is forbidden", "Forbidden").with_code(403),
        ));
        let (status, message) = refusal(&Err(ReviewError::TokenReview(api))).unwrap();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(message.contains("TokenReview"), "{message}");
        let unreachable = kube::Error::Service("connection refused".into());
        let (status, message) =
            refusal(&Err(ReviewError::SubjectAccessReview(unreachable))).unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(message.contains("SubjectAccessReview"), "{message}");
    }
}
