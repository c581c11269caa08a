//! Abuse limits of the token routes (`/sfu/get`, `/get_token`, `/delegate_delayed_leave`).
//!
//! * **Per client** ([`client_address`]): a token bucket per client address, checked before the
//!   request is read; over it, `429` with `Retry-After`.
//! * **Per homeserver**: a token bucket per `matrix_server_name`, taken only by requests that
//!   cost that homeserver a verification (not by answers from the
//!   [verification cache](crate::openid::cache)): it bounds what anyone can make the service
//!   send to one homeserver. Over it, `429` with `Retry-After`.
//! * **Concurrent verifications**: at most so many OpenID verifications run at once; a request
//!   that cannot start one within a second gets `503` with `Retry-After`.

pub mod client_address;
pub mod token_bucket;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

pub use client_address::{ClientKey, client_address};
pub use token_bucket::{Rate, TokenBuckets};

/// How many client addresses are tracked at most.
const CLIENT_KEYS: usize = 100_000;
/// How many homeservers are tracked at most.
const HOMESERVER_KEYS: usize = 10_000;
/// How long a request waits for a verification slot.
const VERIFICATION_WAIT: Duration = Duration::from_secs(1);

/// The configured limits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Requests per client address.
    pub per_client: Rate,
    /// Verifications per homeserver.
    pub per_homeserver: Rate,
    /// OpenID verifications running at once.
    pub max_concurrent_verifications: usize,
    /// How long a successful verification is kept (zero: not at all).
    pub verification_cache_ttl: Duration,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            per_client: Rate { burst: 30, per_minute: 60 },
            per_homeserver: Rate { burst: 100, per_minute: 600 },
            max_concurrent_verifications: 32,
            verification_cache_ttl: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
        }
    }
}

/// The limits' state.
#[derive(Debug)]
pub(crate) struct Limits {
    clients: Mutex<TokenBuckets<ClientKey>>,
    homeservers: Mutex<TokenBuckets<String>>,
    verifications: Semaphore,
}

/// The service cannot start a verification now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Busy;

impl Limits {
    pub(crate) fn new(config: &LimitsConfig) -> Self {
        Self {
            clients: Mutex::new(TokenBuckets::new(config.per_client, CLIENT_KEYS)),
            homeservers: Mutex::new(TokenBuckets::new(config.per_homeserver, HOMESERVER_KEYS)),
            verifications: Semaphore::new(config.max_concurrent_verifications.max(1)),
        }
    }

    /// Takes a request of `client`; `Err` says when to retry.
    pub(crate) fn client(&self, client: ClientKey) -> Result<(), Duration> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner).take(&client, Instant::now())
    }

    /// Takes a verification at `server_name`; `Err` says when to retry.
    pub(crate) fn homeserver(&self, server_name: &str) -> Result<(), Duration> {
        let mut buckets = self.homeservers.lock().unwrap_or_else(PoisonError::into_inner);
        buckets.take(&server_name.to_owned(), Instant::now())
    }

    /// A verification slot, waiting up to a second for one.
    pub(crate) async fn verification_slot(&self) -> Result<SemaphorePermit<'_>, Busy> {
        match tokio::time::timeout(VERIFICATION_WAIT, self.verifications.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(Busy),
        }
    }
}
