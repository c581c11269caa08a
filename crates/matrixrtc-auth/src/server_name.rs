//! Matrix server names (`host[:port]`), validated before they are ever put into a URL.
//!
//! The OpenID token names the homeserver that issued it (`matrix_server_name`); the service
//! contacts that server, so the name is untrusted input. Only the grammar of the Matrix
//! specification (appendix "Server Name") is accepted: a DNS name, an IPv4 literal or a bracketed
//! IPv6 literal, optionally followed by a port. Anything else (paths, credentials, queries,
//! whitespace) is rejected.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The host part of a server name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lower-cased.
    Domain(String),
    /// An IPv4 literal.
    Ipv4(Ipv4Addr),
    /// An IPv6 literal (written in brackets in the server name).
    Ipv6(Ipv6Addr),
}

/// A syntactically valid Matrix server name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerName {
    host: Host,
    port: Option<u16>,
}

/// A server name that does not follow the Matrix grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Matrix server name")]
#[non_exhaustive]
pub struct InvalidServerName;

impl ServerName {
    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The explicit port, if the name has one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether the host is an IP literal (no `.well-known` delegation applies then).
    pub fn is_ip_literal(&self) -> bool {
        !matches!(self.host, Host::Domain(_))
    }

    /// The host as written in a URL authority (`[::1]` for IPv6).
    pub fn host_for_url(&self) -> String {
        match &self.host {
            Host::Domain(d) => d.clone(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => format!("[{ip}]"),
        }
    }
}

impl FromStr for ServerName {
    type Err = InvalidServerName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 255 {
            return Err(InvalidServerName);
        }
        let (host_part, port_part) = if let Some(rest) = s.strip_prefix('[') {
            let end = rest.find(']').ok_or(InvalidServerName)?;
            let ip: Ipv6Addr = rest[..end].parse().map_err(|_| InvalidServerName)?;
            let after = &rest[end + 1..];
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(InvalidServerName)?),
            };
            return Ok(Self { host: Host::Ipv6(ip), port: port.map(parse_port).transpose()? });
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        let port = port_part.map(parse_port).transpose()?;
        if host_part.is_empty() {
            return Err(InvalidServerName);
        }
        let host = if let Ok(ip) = host_part.parse::<Ipv4Addr>() {
            Host::Ipv4(ip)
        } else if host_part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host_part.starts_with(['.', '-'])
            && !host_part.contains("..")
        {
            Host::Domain(host_part.to_ascii_lowercase())
        } else {
            return Err(InvalidServerName);
        };
        Ok(Self { host, port })
    }
}

fn parse_port(p: &str) -> Result<u16, InvalidServerName> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidServerName);
    }
    p.parse().map_err(|_| InvalidServerName)
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host_for_url())?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar() {
        let domain = |d: &str| Host::Domain(d.to_owned());
        let cases = [
            ("localhost", domain("localhost"), None),
            ("example.org", domain("example.org"), None),
            ("matrix.example.org:8448", domain("matrix.example.org"), Some(8448)),
            ("1.2.3.4", Host::Ipv4(Ipv4Addr::new(1, 2, 3, 4)), None),
            ("1.2.3.4:80", Host::Ipv4(Ipv4Addr::new(1, 2, 3, 4)), Some(80)),
            ("[::1]", Host::Ipv6(Ipv6Addr::LOCALHOST), None),
            (
                "[1234:5678::abcd]:5678",
                Host::Ipv6(Ipv6Addr::new(0x1234, 0x5678, 0, 0, 0, 0, 0, 0xabcd)),
                Some(5678),
            ),
            ("Example.ORG", domain("example.org"), None),
            ("xn--bcher-kva.example", domain("xn--bcher-kva.example"), None),
        ];
        for (ok, host, port) in cases {
            let name: ServerName = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!((name.host(), name.port()), (&host, port), "{ok}");
            assert_eq!(name.is_ip_literal(), !matches!(host, Host::Domain(_)), "{ok}");
        }
        let name: ServerName = "Example.ORG:8448".parse().unwrap();
        assert_eq!(name.to_string(), "example.org:8448");
        assert_eq!("[::1]:99".parse::<ServerName>().unwrap().host_for_url(), "[::1]");
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            ":80",
            "example.org:",
            "example.org:99999",
            "example.org:8a",
            "example.org/path",
            "user@example.org",
            "exa mple.org",
            "example.org?x=1",
            "[::1",
            "[::1]x",
            "[nope]",
            "..",
            ".example.org",
            "-a.org",
            "a..b",
            "a:b:c",
            "example.org#frag",
            "\u{e9}.org",
        ] {
            assert_eq!(bad.parse::<ServerName>(), Err(InvalidServerName), "{bad:?}");
        }
        assert_eq!("a".repeat(256).parse::<ServerName>(), Err(InvalidServerName));
        // 255 characters are still a name.
        let longest = "a".repeat(255);
        assert_eq!(longest.parse::<ServerName>().map(|n| n.to_string()), Ok(longest));
    }
}
