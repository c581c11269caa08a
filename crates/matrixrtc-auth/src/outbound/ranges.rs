//! Which addresses are public unicast, and what the others are.
//!
//! The classification follows the IANA special-purpose address registries (RFC 6890 and its
//! updates). An IPv6 address that carries an IPv4 address a router or the kernel will reach
//! (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged by that IPv4
//! address: `::ffff:127.0.0.1` is loopback, `64:ff9b::a9fe:a9fe` is link-local.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A range of addresses that is not public unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpecialRange {
    /// `0.0.0.0/8`, `::`: "this host"; Linux connects such an address to the local host.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`, IPv6 unique local `fc00::/7`, the
    /// deprecated site-local `fec0::/10`, and local-use NAT64 `64:ff9b:1::/48`.
    Private,
    /// `100.64.0.0/10`: the shared address space of carrier-grade NAT.
    SharedAddressSpace,
    /// `169.254.0.0/16` (where cloud metadata services live), `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`.
    Benchmarking,
    /// Everything else that is not public unicast: `192.0.0.0/24`, `240.0.0.0/4`, IPv6 outside
    /// `2000::/3`, the IETF protocol assignments `2001::/23` (Teredo included), discard-only
    /// `100::/64`, and IPv4-compatible `::a.b.c.d`.
    Reserved,
}

impl SpecialRange {
    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedAddressSpace => "shared address space (carrier-grade NAT)",
            Self::LinkLocal => "link-local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::Reserved => "reserved",
        }
    }
}

impl fmt::Display for SpecialRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an IPv6 address carries the IPv4 address it was judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Embedding {
    /// `::ffff:a.b.c.d`: a dual-stack socket connects to the IPv4 address itself.
    Ipv4Mapped,
    /// `64:ff9b::/96`: a NAT64 gateway connects to the IPv4 address.
    Nat64,
    /// `2002:aabb:ccdd::/48`: a 6to4 relay forwards to the IPv4 address.
    SixToFour,
}

impl fmt::Display for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ipv4Mapped => "IPv4-mapped",
            Self::Nat64 => "NAT64",
            Self::SixToFour => "6to4",
        })
    }
}

/// What an address is, when it is not public unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classification {
    /// The range.
    pub range: SpecialRange,
    /// Set when the range is that of an IPv4 address carried in an IPv6 one.
    pub embedded: Option<(Embedding, Ipv4Addr)>,
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some((embedding, v4)) => write!(f, "{} ({embedding} form of {v4})", self.range),
            None => write!(f, "{}", self.range),
        }
    }
}

/// `None` for a public unicast address, else the range it belongs to.
///
/// ```
/// use matrixrtc_auth::outbound::{SpecialRange, classify};
///
/// assert_eq!(classify("169.254.169.254".parse().unwrap()).unwrap().range, SpecialRange::LinkLocal);
/// assert_eq!(classify("::ffff:10.0.0.1".parse().unwrap()).unwrap().range, SpecialRange::Private);
/// assert!(classify("1.1.1.1".parse().unwrap()).is_none());
/// ```
pub fn classify(address: IpAddr) -> Option<Classification> {
    match address {
        IpAddr::V4(v4) => classify_v4(v4).map(|range| Classification { range, embedded: None }),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<SpecialRange> {
    let [a, b, c, _] = ip.octets();
    let range = match (a, b, c) {
        (0, _, _) => SpecialRange::Unspecified,
        (127, _, _) => SpecialRange::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => SpecialRange::Private,
        (100, 64..=127, _) => SpecialRange::SharedAddressSpace,
        (169, 254, _) => SpecialRange::LinkLocal,
        (224..=239, _, _) => SpecialRange::Multicast,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => SpecialRange::Documentation,
        (198, 18..=19, _) => SpecialRange::Benchmarking,
        _ if ip == Ipv4Addr::BROADCAST => SpecialRange::Broadcast,
        (240..=255, _, _) | (192, 0, 0) => SpecialRange::Reserved,
        _ => return None,
    };
    Some(range)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Classification> {
    let plain = |range| Some(Classification { range, embedded: None });
    let segments = ip.segments();
    if let Some((embedding, v4)) = embedded_v4(ip) {
        return classify_v4(v4)
            .map(|range| Classification { range, embedded: Some((embedding, v4)) });
    }
    if ip.is_unspecified() {
        return plain(SpecialRange::Unspecified);
    }
    if ip.is_loopback() {
        return plain(SpecialRange::Loopback);
    }
    let first = segments[0];
    match first {
        0xff00..=0xffff => plain(SpecialRange::Multicast),
        0xfe80..=0xfebf => plain(SpecialRange::LinkLocal),
        0xfec0..=0xfeff | 0xfc00..=0xfdff => plain(SpecialRange::Private),
        0x0064 if segments[1] == 0xff9b && segments[2] == 0x0001 => plain(SpecialRange::Private),
        0x2001 if segments[1] == 0x0db8 => plain(SpecialRange::Documentation),
        0x3fff if segments[1] < 0x1000 => plain(SpecialRange::Documentation),
        0x2001 if segments[1] < 0x0200 => plain(SpecialRange::Reserved),
        0x2000..=0x3fff => None,
        // `::a.b.c.d` (IPv4-compatible), `100::/64` and every other range outside `2000::/3`.
        _ => plain(SpecialRange::Reserved),
    }
}

/// The IPv4 address an IPv6 address forwards to, and how.
fn embedded_v4(ip: Ipv6Addr) -> Option<(Embedding, Ipv4Addr)> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some((Embedding::Ipv4Mapped, v4))
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some((Embedding::Nat64, low))
    } else if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        Some((Embedding::SixToFour, v4))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(address: &str) -> Option<SpecialRange> {
        classify(address.parse().unwrap()).map(|c| c.range)
    }

    #[test]
    fn public_unicast_is_not_special() {
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert_eq!(range(public), None, "{public}");
        }
    }

    #[test]
    fn every_special_range_is_named() {
        use SpecialRange::*;
        let cases = [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("::", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("::1", Loopback),
            ("10.0.0.1", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("fd00::1", Private),
            ("fc00::1", Private),
            ("fec0::1", Private),
            ("64:ff9b:1::a00:1", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("169.254.169.254", LinkLocal),
            ("fe80::1", LinkLocal),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("ff02::1", Multicast),
            ("255.255.255.255", Broadcast),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("192.0.0.8", Reserved),
            ("240.0.0.1", Reserved),
            ("2001::1", Reserved),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Reserved),
            ("100::1", Reserved),
            ("::10.0.0.1", Reserved),
            ("::1.1.1.1", Reserved),
            ("4000::1", Reserved),
        ];
        for (address, expected) in cases {
            assert_eq!(range(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn embedded_ipv4_is_judged_by_what_it_reaches() {
        let mapped = classify("::ffff:169.254.169.254".parse().unwrap()).unwrap();
        assert_eq!(mapped.range, SpecialRange::LinkLocal);
        assert_eq!(
            mapped.embedded,
            Some((Embedding::Ipv4Mapped, Ipv4Addr::new(169, 254, 169, 254)))
        );
        assert_eq!(mapped.to_string(), "link-local (IPv4-mapped form of 169.254.169.254)");
        let nat64 = classify("64:ff9b::7f00:1".parse().unwrap()).unwrap();
        assert_eq!(
            (nat64.range, nat64.embedded.map(|e| e.0)),
            (SpecialRange::Loopback, Some(Embedding::Nat64))
        );
        let six_to_four = classify("2002:c0a8:0101::1".parse().unwrap()).unwrap();
        assert_eq!(six_to_four.range, SpecialRange::Private);
        assert_eq!(
            six_to_four.embedded,
            Some((Embedding::SixToFour, Ipv4Addr::new(192, 168, 1, 1)))
        );
    }
}
