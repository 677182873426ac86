//! Verdicts kept briefly, so a scrape every 15 s does not cost a TokenReview and a
//! SubjectAccessReview each time. Keyed by a SHA-256 of the token: the token itself is neither
//! kept nor logged. Bounded, so random tokens cannot grow it without end. The caller passes the
//! time in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::decide::Verdict;

/// The cache key of a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    pub fn of(token: &str) -> Self {
        TokenKey(Sha256::digest(token.as_bytes()).into())
    }
}

impl std::fmt::Debug for TokenKey {
    // A few bytes are enough to tell entries apart in a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenKey({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// How long verdicts are kept, and how many.
#[derive(Clone, Copy, Debug)]
pub struct CachePolicy {
    /// An allowed token: a revoked binding or token takes up to this long to be refused.
    pub allowed_ttl: Duration,
    /// A refused one (401, 403) is asked again sooner, so a freshly created binding works soon.
    pub refused_ttl: Duration,
    pub capacity: usize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            allowed_ttl: Duration::from_secs(60),
            refused_ttl: Duration::from_secs(10),
            capacity: 1024,
        }
    }
}

#[derive(Debug)]
pub struct ReviewCache {
    policy: CachePolicy,
    entries: HashMap<TokenKey, (Verdict, Instant)>,
}

impl ReviewCache {
    pub fn new(policy: CachePolicy) -> Self {
        ReviewCache {
            policy,
            entries: HashMap::new(),
        }
    }

    /// The verdict for `key` if one is kept and still fresh at `now`.
    pub fn get(&mut self, key: &TokenKey, now: Instant) -> Option<Verdict> {
        match self.entries.get(key) {
            Some(&(verdict, expires)) if now < expires => Some(verdict),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `verdict` for `key` from `now`. When full, expired entries go first, then the one
    /// closest to expiring.
    pub fn insert(&mut self, key: TokenKey, verdict: Verdict, now: Instant) {
        if self.policy.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.policy.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, expires)| now < *expires);
            if self.entries.len() >= self.policy.capacity {
                let soonest = self.entries.iter().min_by_key(|(_, (_, e))| *e);
                if let Some((&soonest, _)) = soonest {
                    self.entries.remove(&soonest);
                }
            }
        }
        let ttl = match verdict {
            Verdict::Allowed => self.policy.allowed_ttl,
            Verdict::Unauthenticated | Verdict::Forbidden => self.policy.refused_ttl,
        };
        self.entries.insert(key, (verdict, now + ttl));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn cache(capacity: usize) -> ReviewCache {
        ReviewCache::new(CachePolicy {
            allowed_ttl: 60 * S,
            refused_ttl: 10 * S,
            capacity,
        })
    }

    #[test]
    fn verdicts_are_kept_for_their_ttl() {
        let t0 = Instant::now();
        let mut cache = cache(8);
        let (good, bad) = (TokenKey::of("good"), TokenKey::of("bad"));
        cache.insert(good, Verdict::Allowed, t0);
        cache.insert(bad, Verdict::Forbidden, t0);
        assert_eq!(cache.get(&good, t0 + 59 * S), Some(Verdict::Allowed));
        assert_eq!(cache.get(&bad, t0 + 9 * S), Some(Verdict::Forbidden));
        assert_eq!(cache.get(&bad, t0 + 10 * S), None, "refusals expire sooner");
        assert_eq!(cache.get(&good, t0 + 60 * S), None);
        assert!(cache.is_empty(), "expired entries are dropped when seen");
    }

    #[test]
    fn the_key_is_a_hash_of_the_token() {
        assert_eq!(TokenKey::of("a"), TokenKey::of("a"));
        assert_ne!(TokenKey::of("a"), TokenKey::of("b"));
        let printed = format!("{:?}", TokenKey::of("secret-token"));
        assert!(!printed.contains("secret"), "{printed}");
    }

    #[test]
    fn a_full_cache_drops_expired_then_the_soonest_to_expire() {
        let t0 = Instant::now();
        let mut cache = cache(2);
        cache.insert(TokenKey::of("refused"), Verdict::Unauthenticated, t0);
        cache.insert(TokenKey::of("old"), Verdict::Allowed, t0);
        // "refused" has expired at t0 + 20 s: it goes, "old" stays.
        cache.insert(TokenKey::of("new"), Verdict::Allowed, t0 + 20 * S);
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.get(&TokenKey::of("old"), t0 + 20 * S),
            Some(Verdict::Allowed)
        );
        // Nothing expired: "old" expires first and goes.
        cache.insert(TokenKey::of("newer"), Verdict::Allowed, t0 + 30 * S);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&TokenKey::of("old"), t0 + 30 * S), None);
        assert_eq!(
            cache.get(&TokenKey::of("new"), t0 + 30 * S),
            Some(Verdict::Allowed)
        );
        assert_eq!(
            cache.get(&TokenKey::of("newer"), t0 + 30 * S),
            Some(Verdict::Allowed)
        );
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut cache = cache(0);
        cache.insert(TokenKey::of("a"), Verdict::Allowed, Instant::now());
        assert!(cache.is_empty());
    }
}
