//! Name resolution under the outbound policy.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use super::{OutboundPolicy, Refused};

/// A lookup in progress: the addresses of a name.
pub type Lookup = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// Resolves host names to addresses. The service's default is [`SystemResolver`]; tests use
/// their own to make names resolve where they need (including answers that change between two
/// lookups).
pub trait HostResolver: fmt::Debug + Send + Sync + 'static {
    /// The addresses of `host` (a DNS name, never an IP literal).
    fn lookup(self: Arc<Self>, host: String) -> Lookup;
}

/// The system's resolver (`getaddrinfo`, on tokio's blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl HostResolver for SystemResolver {
    fn lookup(self: Arc<Self>, host: String) -> Lookup {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect())
        })
    }
}

/// The HTTP client's resolver: answers only the addresses the policy allows, so the client
/// connects to nothing else.
#[derive(Debug, Clone)]
pub(super) struct GuardedResolver {
    pub(super) inner: Arc<dyn HostResolver>,
    pub(super) policy: Arc<OutboundPolicy>,
}

impl GuardedResolver {
    /// The allowed addresses of `host`, or why there are none.
    pub(super) async fn resolve_allowed(
        &self,
        host: String,
    ) -> Result<Vec<IpAddr>, ResolveRefused> {
        let answer =
            Arc::clone(&self.inner).lookup(host.clone()).await.map_err(ResolveRefused::Lookup)?;
        let mut refused = None;
        let allowed: Vec<IpAddr> = answer
            .into_iter()
            .filter(|&address| match self.policy.check(address) {
                Ok(()) => true,
                Err(refusal) => {
                    tracing::debug!(%host, %refusal, "address skipped");
                    refused.get_or_insert(refusal);
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some(refusal)) => {
                Err(ResolveRefused::Policy(Refused { host: Some(host), ..refusal }))
            }
            (true, None) => Err(ResolveRefused::Lookup(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} has no address"),
            ))),
        }
    }
}

/// Why a name gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub(super) enum ResolveRefused {
    #[error(transparent)]
    Policy(Refused),
    #[error("cannot resolve: {0}")]
    Lookup(io::Error),
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let allowed = this.resolve_allowed(host).await.map_err(|error| match error {
                // Boxed as itself, so that the request's error chain can be searched for it.
                ResolveRefused::Policy(refused) => {
                    Box::new(refused) as Box<dyn std::error::Error + Send + Sync>
                }
                ResolveRefused::Lookup(error) => Box::new(error),
            })?;
            let addresses: reqwest::dns::Addrs =
                Box::new(allowed.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(Vec<IpAddr>);

    impl HostResolver for Fixed {
        fn lookup(self: Arc<Self>, _host: String) -> Lookup {
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }

    fn guarded(answer: &[&str]) -> GuardedResolver {
        GuardedResolver {
            inner: Arc::new(Fixed(answer.iter().map(|a| a.parse().unwrap()).collect())),
            policy: Arc::new(OutboundPolicy::public_only()),
        }
    }

    #[tokio::test]
    async fn keeps_only_the_allowed_addresses() {
        let mixed = guarded(&["10.0.0.1", "1.1.1.1", "fe80::1", "2606:4700::1111"]);
        let allowed = mixed.resolve_allowed("mixed.test".into()).await.unwrap();
        assert_eq!(
            allowed,
            ["1.1.1.1".parse::<IpAddr>().unwrap(), "2606:4700::1111".parse().unwrap()]
        );
    }

    #[tokio::test]
    async fn a_name_with_only_refused_addresses_is_refused_by_name() {
        let internal = guarded(&["169.254.169.254", "10.0.0.1"]);
        match internal.resolve_allowed("metadata.test".into()).await {
            Err(ResolveRefused::Policy(refused)) => {
                assert_eq!(refused.host.as_deref(), Some("metadata.test"));
                assert_eq!(refused.address, "169.254.169.254".parse::<IpAddr>().unwrap());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            guarded(&[]).resolve_allowed("empty.test".into()).await,
            Err(ResolveRefused::Lookup(_))
        ));
    }
}
