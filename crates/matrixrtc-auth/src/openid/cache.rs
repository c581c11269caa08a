//! A short cache of successful OpenID verifications.
//!
//! Element Call asks for a token several times while it joins (both token routes, the delegation
//! probe), and a member reconnecting asks again: each would cost its homeserver a userinfo
//! request. Verified tokens are kept for a short time (60 s by default), keyed by a SHA-256 of
//! the server name and the access token (the token itself is not kept). Requests that arrive
//! while the same token is being verified wait for that verification instead of making their own,
//! so a burst costs one request. A failed verification is not kept: the next request tries again.
//!
//! The cost: a token revoked on its homeserver keeps working here until its entry expires.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::request::OpenIdToken;

/// The default number of entries kept.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Which token an entry is for: `SHA-256(server_name NUL access_token)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of `token`.
    pub fn new(token: &OpenIdToken) -> Self {
        let mut hash = Sha256::new();
        hash.update(token.matrix_server_name.as_bytes());
        hash.update([0]);
        hash.update(token.access_token.expose().as_bytes());
        Self(hash.finalize().into())
    }
}

/// One token's verification: empty while it runs, then the user id and when it was verified.
#[derive(Debug, Default)]
struct Slot(OnceCell<(String, Instant)>);

impl Slot {
    /// Whether the slot still answers at `now`: its verification runs, or succeeded within `ttl`.
    fn live(&self, now: Instant, ttl: Duration) -> bool {
        self.0.get().is_none_or(|(_, at)| now.saturating_duration_since(*at) < ttl)
    }
}

/// Verified tokens, for a short time; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct VerificationCache {
    ttl: Duration,
    capacity: usize,
    slots: Mutex<HashMap<CacheKey, Arc<Slot>>>,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This request verified the token.
    Verified,
    /// Another request's verification (finished, or running when this one came).
    Cache,
}

impl VerificationCache {
    /// A cache keeping verifications for `ttl` (`Duration::ZERO` turns it off), with at most
    /// `capacity` entries.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity, slots: Mutex::new(HashMap::new()) }
    }

    /// The user id of the token `key`: cached, or from `verify`, which runs only when no live
    /// entry exists and no other verification of the same token runs.
    pub async fn get_or_verify<E, F, Fut>(
        &self,
        key: CacheKey,
        verify: F,
    ) -> Result<(String, Source), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, E>>,
    {
        let Some(slot) = self.slot(key) else {
            return verify().await.map(|user_id| (user_id, Source::Verified));
        };
        let mut source = Source::Cache;
        let result = slot
            .0
            .get_or_try_init(|| {
                source = Source::Verified;
                async { verify().await.map(|user_id| (user_id, Instant::now())) }
            })
            .await
            .map(|(user_id, _)| (user_id.clone(), source));
        if result.is_err() {
            let mut slots = self.lock();
            if slots.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot) && s.0.get().is_none()) {
                slots.remove(&key);
            }
        }
        result
    }

    /// The live slot of `key`, a new one, or `None` when the cache is off or full.
    fn slot(&self, key: CacheKey) -> Option<Arc<Slot>> {
        if self.ttl.is_zero() || self.capacity == 0 {
            return None;
        }
        let now = Instant::now();
        let mut slots = self.lock();
        if let Some(slot) = slots.get(&key).filter(|s| s.live(now, self.ttl)) {
            return Some(Arc::clone(slot));
        }
        if slots.len() >= self.capacity {
            slots.retain(|_, slot| slot.live(now, self.ttl));
            if slots.len() >= self.capacity {
                tracing::debug!(entries = slots.len(), "verification cache full");
                return None;
            }
        }
        let slot = Arc::new(Slot::default());
        slots.insert(key, Arc::clone(&slot));
        Some(slot)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of entries (live or expired, not yet removed).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::secret::Secret;

    fn key(token: &str) -> CacheKey {
        CacheKey::new(&OpenIdToken::new(Secret::new(token), "example.org"))
    }

    /// A verification that counts its runs, takes 100 ms and answers `answer`.
    async fn counted(runs: &AtomicUsize, answer: Result<&str, &str>) -> Result<String, String> {
        runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer.map(str::to_owned).map_err(str::to_owned)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_costs_one_verification_until_the_entry_expires() {
        let cache = VerificationCache::new(Duration::from_secs(60), 100);
        let runs = AtomicUsize::new(0);
        let burst =
            (0..10).map(|_| cache.get_or_verify(key("t"), || counted(&runs, Ok("@a:example.org"))));
        let answers = futures_util::future::join_all(burst).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let sources: Vec<Source> = answers.into_iter().map(|a| a.unwrap().1).collect();
        assert_eq!(sources.iter().filter(|s| **s == Source::Verified).count(), 1);
        assert!(sources.iter().all(|s| matches!(s, Source::Verified | Source::Cache)));

        tokio::time::advance(Duration::from_secs(59)).await;
        let again = cache.get_or_verify(key("t"), || counted(&runs, Ok("@a:example.org"))).await;
        assert_eq!(again, Ok(("@a:example.org".to_owned(), Source::Cache)));
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        tokio::time::advance(Duration::from_secs(2)).await;
        let expired = cache.get_or_verify(key("t"), || counted(&runs, Ok("@a:example.org"))).await;
        assert_eq!(expired.map(|a| a.1), Ok(Source::Verified));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_not_kept_and_tokens_do_not_share_entries() {
        let cache = VerificationCache::new(Duration::from_secs(60), 100);
        let runs = AtomicUsize::new(0);
        let failed = cache.get_or_verify(key("bad"), || counted(&runs, Err("rejected"))).await;
        assert_eq!(failed, Err("rejected".to_owned()));
        assert!(cache.is_empty());
        let retried =
            cache.get_or_verify(key("bad"), || counted(&runs, Ok("@b:example.org"))).await;
        assert_eq!(retried.map(|a| a.1), Ok(Source::Verified));
        let other =
            cache.get_or_verify(key("other"), || counted(&runs, Ok("@c:example.org"))).await;
        assert_eq!(other, Ok(("@c:example.org".to_owned(), Source::Verified)));
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_ne!(key("t"), CacheKey::new(&OpenIdToken::new(Secret::new("t"), "example.com")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_verifies_without_keeping_and_an_off_cache_keeps_nothing() {
        let runs = AtomicUsize::new(0);
        let full = VerificationCache::new(Duration::from_secs(60), 1);
        full.get_or_verify(key("a"), || counted(&runs, Ok("@a:example.org"))).await.unwrap();
        full.get_or_verify(key("b"), || counted(&runs, Ok("@b:example.org"))).await.unwrap();
        full.get_or_verify(key("b"), || counted(&runs, Ok("@b:example.org"))).await.unwrap();
        assert_eq!((runs.load(Ordering::SeqCst), full.len()), (3, 1));
        // Once the first entry expired, its room is taken again.
        tokio::time::advance(Duration::from_secs(61)).await;
        full.get_or_verify(key("b"), || counted(&runs, Ok("@b:example.org"))).await.unwrap();
        let cached = full.get_or_verify(key("b"), || counted(&runs, Ok("@b:example.org"))).await;
        assert_eq!(cached.map(|a| a.1), Ok(Source::Cache));

        let off = VerificationCache::new(Duration::ZERO, 100);
        for _ in 0..2 {
            off.get_or_verify(key("a"), || counted(&runs, Ok("@a:example.org"))).await.unwrap();
        }
        assert!(off.is_empty());
        assert_eq!(runs.load(Ordering::SeqCst), 6);
    }
}
