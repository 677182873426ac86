//! The [`Reviewer`] that asks the API server: a TokenReview, then a SubjectAccessReview. Thin
//! on purpose; what the answers mean is decided in [`super::decide`].

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use kube::api::{Api, PostParams};

use super::decide::{ReviewError, User, access_review, authentication, authorized};
use super::gate::Reviewer;

/// Reviews through `client`, which must not be fenced by leadership: every replica serves
/// metrics, and a review is a create.
#[derive(Clone)]
pub struct ApiReviewer {
    client: kube::Client,
}

impl ApiReviewer {
    pub fn new(client: kube::Client) -> Self {
        ApiReviewer { client }
    }
}

impl Reviewer for ApiReviewer {
    async fn authenticate(&self, token: &str) -> Result<Option<User>, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                // The API server's own audiences, as for a request to the API server itself.
                audiences: None,
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::TokenReview)?;
        Ok(authentication(reviewed.status.as_ref()))
    }

    async fn authorize(&self, user: &User) -> Result<bool, ReviewError> {
        let review = SubjectAccessReview {
            spec: access_review(user),
            ..SubjectAccessReview::default()
        };
        let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::SubjectAccessReview)?;
        Ok(authorized(reviewed.status.as_ref()))
    }
}
