//! A scrape's token in, its verdict out: from the cache when fresh, else from a TokenReview and
//! (for an authenticated user) a SubjectAccessReview. Errors are not cached: the next scrape
//! asks again.

use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

use super::cache::{CachePolicy, ReviewCache, TokenKey};
use super::decide::{ReviewError, User, Verdict, verdict};

/// Who asks the API server; tests use a fake.
pub trait Reviewer: Send + Sync + 'static {
    /// The user `token` belongs to, or `None` when the API server does not accept it.
    fn authenticate(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<Option<User>, ReviewError>> + Send;

    /// Whether `user` may `get /metrics`.
    fn authorize(&self, user: &User) -> impl Future<Output = Result<bool, ReviewError>> + Send;
}

pub struct Gate<R> {
    reviewer: R,
    cache: Mutex<ReviewCache>,
}

impl<R: Reviewer> Gate<R> {
    pub fn new(reviewer: R, policy: CachePolicy) -> Self {
        Gate {
            reviewer,
            cache: Mutex::new(ReviewCache::new(policy)),
        }
    }

    /// The verdict for a scrape with `token` (none: unauthenticated, without asking) at `now`.
    pub async fn check(&self, token: Option<&str>, now: Instant) -> Result<Verdict, ReviewError> {
        let Some(token) = token else {
            return Ok(Verdict::Unauthenticated);
        };
        let key = TokenKey::of(token);
        if let Some(cached) = self.cache().get(&key, now) {
            return Ok(cached);
        }
        let user = self.reviewer.authenticate(token).await?;
        let allowed = match &user {
            Some(user) => Some(self.reviewer.authorize(user).await?),
            None => None,
        };
        let decided = verdict(user.as_ref(), allowed);
        // Logged by user, never by token.
        match (&user, decided) {
            (Some(user), Verdict::Forbidden) => {
                tracing::info!(user = %user.name, "metrics: scrape forbidden");
            }
            (None, _) => tracing::debug!("metrics: scrape with a token the API server refused"),
            _ => {}
        }
        self.cache().insert(key, decided, now);
        Ok(decided)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ReviewCache> {
        // The lock is never held across an await or a panic-prone call.
        self.cache
            .lock()
            .expect("the review cache's lock is not poisoned")
    }
}

#[cfg(test)]
pub(super) mod fake {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::decide::{ReviewError, User};
    use super::Reviewer;

    /// Tokens `allowed` and `forbidden` are users; `broken` fails the TokenReview; any other
    /// token is refused. Counts the calls.
    #[derive(Default)]
    pub(in crate::metrics_auth) struct Fake {
        pub authentications: AtomicUsize,
        pub authorizations: AtomicUsize,
    }

    impl Reviewer for Fake {
        async fn authenticate(&self, token: &str) -> Result<Option<User>, ReviewError> {
            self.authentications.fetch_add(1, Ordering::SeqCst);
            match token {
                "broken" => Err(ReviewError::TokenReview(kube::Error::Service(
                    "connection refused".into(),
                ))),
                "allowed" | "forbidden" => Ok(Some(User {
                    name: token.to_owned(),
                    uid: None,
                    groups: vec![],
                    extra: BTreeMap::new(),
                })),
                _ => Ok(None),
            }
        }

        async fn authorize(&self, user: &User) -> Result<bool, ReviewError> {
            self.authorizations.fetch_add(1, Ordering::SeqCst);
            Ok(user.name == "allowed")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::fake::Fake;
    use super::*;

    fn calls(gate: &Gate<Fake>) -> (usize, usize) {
        let r = &gate.reviewer;
        (
            r.authentications.load(Ordering::SeqCst),
            r.authorizations.load(Ordering::SeqCst),
        )
    }

    #[tokio::test]
    async fn each_token_gets_its_verdict() {
        let gate = Gate::new(Fake::default(), CachePolicy::default());
        let now = Instant::now();
        assert_eq!(
            gate.check(None, now).await.unwrap(),
            Verdict::Unauthenticated
        );
        assert_eq!(calls(&gate), (0, 0), "no token, no review");
        let check = |token| gate.check(Some(token), now);
        assert_eq!(check("nobody").await.unwrap(), Verdict::Unauthenticated);
        assert_eq!(
            calls(&gate),
            (1, 0),
            "no authorization for an unknown token"
        );
        assert_eq!(check("forbidden").await.unwrap(), Verdict::Forbidden);
        assert_eq!(check("allowed").await.unwrap(), Verdict::Allowed);
        assert!(check("broken").await.is_err());
    }

    #[tokio::test]
    async fn verdicts_are_cached_and_errors_are_not() {
        let gate = Gate::new(Fake::default(), CachePolicy::default());
        let t0 = Instant::now();
        for scrape in 0..4 {
            let at = t0 + Duration::from_secs(15) * scrape;
            assert_eq!(
                gate.check(Some("allowed"), at).await.unwrap(),
                Verdict::Allowed
            );
        }
        assert_eq!(calls(&gate), (1, 1), "4 scrapes in 45 s: one review each");
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            gate.check(Some("allowed"), later).await.unwrap(),
            Verdict::Allowed
        );
        assert_eq!(calls(&gate), (2, 2), "reviewed again once expired");

        assert!(gate.check(Some("broken"), t0).await.is_err());
        assert!(gate.check(Some("broken"), t0).await.is_err());
        assert_eq!(calls(&gate), (4, 2), "a failed review is asked again");
    }
}
