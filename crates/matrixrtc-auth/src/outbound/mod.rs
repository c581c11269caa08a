//! What the service may connect to when it verifies an OpenID token or reaches a homeserver's
//! client-server API.
//!
//! A token names its homeserver, so anyone on the internet chooses where the service connects.
//! Without a policy a request naming `169.254.169.254` would make the service reach a cloud
//! metadata service, and a name resolving to `10.0.0.5` a host of the internal network. The
//! service therefore connects only to public unicast addresses ([`classify`]) unless the operator
//! allows networks (`MATRIXRTC_AUTH_OUTBOUND_ALLOW`; the local stack allows `127.0.0.1`).
//!
//! The check is made on the address the connection goes to:
//!
//! * names are resolved by a [`HostResolver`] wrapped in the policy, and the HTTP client connects
//!   only to the addresses that passed, so a name whose answer changes between two lookups (DNS
//!   rebinding) is judged by the answer used for the connection;
//! * URLs whose host is an IP literal are checked before the request is made;
//! * this applies to every hop: the `.well-known` lookup, the server it delegates to, the
//!   `m.homeserver.base_url` of client discovery and the configured overrides;
//! * redirects are not followed and no proxy is used, so the connection goes nowhere else.

mod client;
mod ranges;
mod resolver;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

pub use client::HomeserverHttp;
pub(crate) use client::refusal;
pub use ranges::{Classification, Embedding, SpecialRange, classify};
pub use resolver::{HostResolver, Lookup, SystemResolver};

/// The name of the setting that allows networks, for messages.
pub const ALLOW_SETTING: &str = "MATRIXRTC_AUTH_OUTBOUND_ALLOW";

/// Which addresses outbound connections to homeservers may go to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allowed: Vec<ipnet::IpNet>,
}

impl OutboundPolicy {
    /// Public unicast addresses only.
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Public unicast addresses, and every address in `networks`.
    pub fn allowing(networks: impl IntoIterator<Item = ipnet::IpNet>) -> Self {
        Self { allowed: networks.into_iter().collect() }
    }

    /// The networks allowed besides public unicast addresses.
    pub fn allowed(&self) -> &[ipnet::IpNet] {
        &self.allowed
    }

    /// Whether a connection to `address` may be made.
    ///
    /// ```
    /// use matrixrtc_auth::outbound::OutboundPolicy;
    ///
    /// let policy = OutboundPolicy::allowing(["127.0.0.1/32".parse().unwrap()]);
    /// assert!(policy.check("127.0.0.1".parse().unwrap()).is_ok());
    /// assert!(policy.check("::ffff:127.0.0.1".parse().unwrap()).is_ok());
    /// assert!(policy.check("127.0.0.2".parse().unwrap()).is_err());
    /// assert!(policy.check("9.9.9.9".parse().unwrap()).is_ok());
    /// ```
    pub fn check(&self, address: IpAddr) -> Result<(), Refused> {
        let Some(classification) = classify(address) else { return Ok(()) };
        // An IPv4-mapped address reaches its IPv4 address: an allowed IPv4 network allows it.
        let mapped = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = |ip: IpAddr| self.allowed.iter().any(|network| network.contains(&ip));
        if allowed(address) || mapped.is_some_and(allowed) {
            return Ok(());
        }
        Err(Refused { host: None, address, classification })
    }
}

/// A connection the outbound policy refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct Refused {
    /// The name that resolved to `address`, when the URL had a name.
    pub host: Option<String>,
    /// The address refused (the first one, when a name resolved to several).
    pub address: IpAddr,
    /// Why.
    pub classification: Classification,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            write!(f, "{host} resolves to ")?;
        }
        write!(
            f,
            "{}, a {} address, which the outbound policy refuses (allow it with {ALLOW_SETTING})",
            self.address, self.classification
        )
    }
}

/// The outbound side of the service's configuration: the policy and the resolver it guards.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// What may be connected to.
    pub policy: OutboundPolicy,
    /// How names are resolved (the system's resolver unless a test or an embedder sets another).
    pub resolver: Arc<dyn HostResolver>,
}

impl Outbound {
    /// `policy` with the system's resolver.
    pub fn new(policy: OutboundPolicy) -> Self {
        Self { policy, resolver: Arc::new(SystemResolver) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_range_and_the_setting() {
        let policy = OutboundPolicy::public_only();
        let refused = policy.check("169.254.169.254".parse().unwrap()).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "169.254.169.254, a link-local address, which the outbound policy refuses (allow it \
             with MATRIXRTC_AUTH_OUTBOUND_ALLOW)"
        );
        let named = Refused { host: Some("metadata.test".into()), ..refused };
        assert!(
            named
                .to_string()
                .starts_with("metadata.test resolves to 169.254.169.254, a link-local")
        );
    }

    #[test]
    fn allowed_networks_cover_their_mapped_forms_only() {
        let policy =
            OutboundPolicy::allowing(["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        for ok in ["127.0.0.1", "127.1.2.3", "::ffff:127.0.0.1", "fd12::1", "1.1.1.1"] {
            assert_eq!(policy.check(ok.parse().unwrap()), Ok(()), "{ok}");
        }
        for refused in ["::1", "10.0.0.1", "::ffff:10.0.0.1", "fe80::1", "64:ff9b::7f00:1"] {
            assert!(policy.check(refused.parse().unwrap()).is_err(), "{refused}");
        }
    }
}
