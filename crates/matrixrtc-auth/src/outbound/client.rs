//! The HTTP client of requests to homeservers, under the outbound policy.

use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

use super::resolver::GuardedResolver;
use super::{Outbound, Refused};

/// The HTTP client of requests to homeservers (OpenID verification, delegated leaves):
/// timeouts, no redirects, no proxy, and only to addresses the policy allows. Cheap to clone;
/// clones share their connections.
#[derive(Debug, Clone)]
pub struct HomeserverHttp {
    http: reqwest::Client,
    policy: Arc<super::OutboundPolicy>,
}

impl HomeserverHttp {
    /// A client whose requests time out after `timeout`; with `accept_invalid_certs` TLS
    /// certificates are not checked (tests only).
    pub fn new(
        timeout: Duration,
        accept_invalid_certs: bool,
        outbound: &Outbound,
    ) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(outbound.policy.clone());
        let resolver =
            GuardedResolver { inner: Arc::clone(&outbound.resolver), policy: Arc::clone(&policy) };
        let http = crate::http::client_builder(timeout, accept_invalid_certs)
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .build()?;
        Ok(Self { http, policy })
    }

    /// A GET of `url`, refused at once when its host is an IP literal the policy refuses (names
    /// are checked when they are resolved for the connection).
    pub(crate) fn get(&self, url: Url) -> Result<reqwest::RequestBuilder, Refused> {
        self.check_url(&url)?;
        Ok(self.http.get(url))
    }

    /// A POST of `url`, checked as [`Self::get`].
    pub(crate) fn post(&self, url: Url) -> Result<reqwest::RequestBuilder, Refused> {
        self.check_url(&url)?;
        Ok(self.http.post(url))
    }

    /// Refuses `url` when its host is an IP literal the policy refuses.
    pub(crate) fn check_url(&self, url: &Url) -> Result<(), Refused> {
        match url.host() {
            Some(Host::Ipv4(ip)) => self.policy.check(ip.into()),
            Some(Host::Ipv6(ip)) => self.policy.check(ip.into()),
            Some(Host::Domain(_)) | None => Ok(()),
        }
    }
}

/// The policy's refusal inside a request's error, if that is why it failed.
pub(crate) fn refusal(error: &reqwest::Error) -> Option<Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        source = error.source();
    }
    None
}
