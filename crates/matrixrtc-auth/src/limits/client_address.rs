//! Who a request comes from, for the per-client limit.
//!
//! The client is the TCP peer, unless the peer is a reverse proxy the operator trusts
//! (`MATRIXRTC_AUTH_TRUSTED_PROXIES`): then it is the right-most address of `X-Forwarded-For`
//! that is not itself a trusted proxy (addresses further left were written by the client and
//! prove nothing). IPv6 clients are counted per `/64`, the block one subscriber usually holds.

use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The key of a client's bucket: an IPv4 address or an IPv6 `/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of `address`.
    pub fn new(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => Self(address),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(Ipv6Addr::from(bits)))
                }
            },
        }
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The client's address: `peer`, or what the trusted proxies in front of the service saw.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> IpAddr {
    let trusted = |ip: &IpAddr| {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
            IpAddr::V4(_) => *ip,
        };
        trusted_proxies.iter().any(|network| network.contains(&ip))
    };
    if !trusted(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        // A proxy that wrote garbage: stop at the last address known good.
        let Ok(address) = hop.parse::<IpAddr>() else { break };
        client = address;
        if !trusted(&address) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let claims = headers(&["1.2.3.4"]);
        assert_eq!(client_address(ip("9.9.9.9"), &claims, &[]), ip("9.9.9.9"));
        let proxies = ["10.0.0.0/8".parse().unwrap()];
        assert_eq!(client_address(ip("9.9.9.9"), &claims, &proxies), ip("9.9.9.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let proxies = ["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let peer = ip("10.0.0.2");
        // The client forged a first entry; its proxy appended the real address.
        let chain = headers(&["6.6.6.6, 5.5.5.5", "10.0.0.9"]);
        assert_eq!(client_address(peer, &chain, &proxies), ip("5.5.5.5"));
        assert_eq!(client_address(ip("::ffff:10.0.0.2"), &chain, &proxies), ip("5.5.5.5"));
        // No header: the proxy itself.
        assert_eq!(client_address(peer, &HeaderMap::new(), &proxies), peer);
        // Garbage stops the walk at the last good hop.
        assert_eq!(client_address(peer, &headers(&["5.5.5.5, nonsense"]), &proxies), peer);
        assert_eq!(
            client_address(peer, &headers(&["nonsense, 2001:db8::7, fd00::1"]), &proxies),
            ip("2001:db8::7")
        );
        // Only proxies in the chain: the left-most is as far as it goes.
        assert_eq!(client_address(peer, &headers(&["10.1.1.1"]), &proxies), ip("10.1.1.1"));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a = ClientKey::new(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, ClientKey::new(ip("2001:db8:1:2:bbbb::2")));
        assert_ne!(a, ClientKey::new(ip("2001:db8:1:3::1")));
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(ClientKey::new(ip("::ffff:1.2.3.4")), ClientKey::new(ip("1.2.3.4")));
        assert_eq!(ClientKey::new(ip("1.2.3.4")).to_string(), "1.2.3.4");
    }
}
