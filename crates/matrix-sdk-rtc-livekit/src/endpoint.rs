//! Checks of the URLs that secrets travel to, and their shape in logs.
//!
//! An OpenID token, a LiveKit join token or a password in clear text on a network is readable by
//! everybody on the path, so plain `http://` and `ws://` are accepted only toward this machine
//! (loopback addresses and `localhost`), unless the application explicitly allows it.

use std::net::IpAddr;

use url::{Host, Url};

use crate::error::Error;

/// Whether `url` points at this machine.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name.to_ascii_lowercase().ends_with(".localhost")
        }
        None => false,
    }
}

/// `url` without its query, fragment and user info: what may appear in logs and errors.
pub fn display(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// `text` as a URL without query and user info, for messages; the text itself when it does not
/// parse (cut at the first `?`).
pub fn display_str(text: &str) -> String {
    Url::parse(text)
        .map(|url| display(&url))
        .unwrap_or_else(|_| text.split('?').next().unwrap_or_default().to_owned())
}

/// Parses `text` as an `http(s)` URL that `what` (a secret) may be sent to.
pub fn http_url(text: &str, what: &'static str, allow_insecure: bool) -> Result<Url, Error> {
    let url = parse(text, what)?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_insecure || is_loopback(&url) => Ok(url),
        "http" => Err(insecure(&url, what)),
        other => Err(Error::InvalidUrl {
            what,
            url: display(&url),
            reason: format!("the scheme must be https (or http to this machine), not {other}"),
        }),
    }
}

/// Parses `text` as a LiveKit server URL (`wss://`, `https://` and the plain forms) that a join
/// token may be sent to.
pub fn livekit_url(text: &str, allow_insecure: bool) -> Result<Url, Error> {
    const WHAT: &str = "a LiveKit join token";
    let url = parse(text, WHAT)?;
    match url.scheme() {
        "wss" | "https" => Ok(url),
        "ws" | "http" if allow_insecure || is_loopback(&url) => Ok(url),
        "ws" | "http" => Err(insecure(&url, WHAT)),
        other => Err(Error::InvalidUrl {
            what: "LiveKit server",
            url: display(&url),
            reason: format!(
                "the scheme must be wss or https (ws or http to this machine), not {other}"
            ),
        }),
    }
}

fn parse(text: &str, what: &'static str) -> Result<Url, Error> {
    let url = Url::parse(text.trim()).map_err(|e| Error::InvalidUrl {
        what,
        url: display_str(text),
        reason: e.to_string(),
    })?;
    if url.host().is_none() {
        return Err(Error::InvalidUrl { what, url: display(&url), reason: "no host".into() });
    }
    Ok(url)
}

fn insecure(url: &Url, what: &'static str) -> Error {
    Error::InsecureUrl {
        what,
        scheme: url.scheme().to_owned(),
        host: url.host_str().unwrap_or_default().to_owned(),
    }
}

/// `base` with `path` appended as further segments (`https://a/jwt` + `sfu/get` →
/// `https://a/jwt/sfu/get`), whatever the trailing slash of `base`.
pub fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty();
        segments.extend(path.split('/'));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_only_to_this_machine() {
        for ok in [
            "https://rtc.example.org/jwt",
            "http://127.0.0.1:8080",
            "http://[::1]:80",
            "http://localhost:1",
        ] {
            assert!(http_url(ok, "an OpenID token", false).is_ok(), "{ok}");
        }
        let refused = http_url("http://rtc.example.org", "an OpenID token", false).unwrap_err();
        assert!(matches!(refused, Error::InsecureUrl { .. }), "{refused}");
        assert!(refused.to_string().contains("rtc.example.org"));
        assert!(http_url("http://rtc.example.org", "x", true).is_ok(), "allowed explicitly");
        assert!(http_url("ftp://a", "x", false).is_err());
        assert!(http_url("not a url", "x", false).is_err());
        assert!(livekit_url("wss://sfu.example.org", false).is_ok());
        assert!(livekit_url("ws://127.0.0.1:7880", false).is_ok());
        assert!(livekit_url("ws://10.0.0.5:7880", false).is_err());
        assert!(livekit_url("ws://10.0.0.5:7880", true).is_ok());
    }

    #[test]
    fn displayed_urls_hold_no_secrets() {
        let url = Url::parse("wss://user:pw@sfu.example.org/rtc?access_token=secret#x").unwrap();
        assert_eq!(display(&url), "wss://sfu.example.org/rtc");
        assert_eq!(display_str("garbage?access_token=secret"), "garbage");
    }

    #[test]
    fn paths_are_joined_as_segments() {
        let join_str = |base: &str| join(&Url::parse(base).unwrap(), "sfu/get").to_string();
        assert_eq!(
            join_str("https://a.example/livekit/jwt"),
            "https://a.example/livekit/jwt/sfu/get"
        );
        assert_eq!(
            join_str("https://a.example/livekit/jwt/"),
            "https://a.example/livekit/jwt/sfu/get"
        );
        assert_eq!(join_str("http://127.0.0.1:8080"), "http://127.0.0.1:8080/sfu/get");
        assert_eq!(join_str("http://127.0.0.1:8080/?x=1"), "http://127.0.0.1:8080/sfu/get");
    }
}
