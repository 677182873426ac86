//! Secured metrics: `/metrics` over HTTPS, served only to callers the API server vouches for,
//! as controller-runtime's `filters.WithAuthenticationAndAuthorization` does (instead of a
//! kube-rbac-proxy sidecar). A request's bearer token goes to a TokenReview (who is it?), the
//! user to a SubjectAccessReview (may they `get` the non-resource URL `/metrics`?).
//!
//! - [`decide`]: the bearer token, the verdict from the reviews and the answer to it (pure);
//! - [`cache`]: verdicts kept briefly, keyed by a hash of the token (pure, time passed in);
//! - [`gate`]: a token in, a verdict out, through the cache and a [`gate::Reviewer`];
//! - [`review`]: the reviewer that asks the API server;
//! - [`tls`]: the serving certificate, from files or self-signed at start;
//! - [`serve`]: the HTTPS server.

pub mod cache;
pub mod decide;
pub mod gate;
pub mod review;
pub mod serve;
pub mod tls;

pub use gate::Gate;
pub use review::ApiReviewer;
pub use serve::serve;
pub use tls::{CertSource, server_config};
