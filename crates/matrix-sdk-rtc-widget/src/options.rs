//! How a host is set up: where Element Call is, where its page is served, what it may do.

use url::Url;

use crate::HostError;
use crate::capabilities::CapabilityPolicy;

/// The widget id when none is given.
pub const DEFAULT_WIDGET_ID: &str = "element-call";

/// How to host Element Call.
///
/// ```
/// use matrix_sdk_rtc_widget::HostOptions;
///
/// let mut options = HostOptions::new("https://call.element.io".parse().unwrap());
/// options.page_url = Some("http://127.0.0.1:8765/".parse().unwrap());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HostOptions {
    /// Where Element Call is served (its "embedded" package, or a full deployment such as
    /// `https://call.element.io`). A URL ending in `/` gets `index.html`, so that Element Call
    /// opens its room page and not its home page.
    pub element_call_url: Url,
    /// The widget's id (Element Call's `widgetId`); [`DEFAULT_WIDGET_ID`] by default.
    pub widget_id: String,
    /// The host page's URL, the parent Element Call posts its messages to (`parentUrl`):
    /// `http://127.0.0.1:<port>/` or `http://localhost:<port>/`, whose port the host listens on
    /// (on 127.0.0.1). `None`: `http://127.0.0.1:<a free port>/`. To use the page from another
    /// machine, give a fixed port and forward it (e.g. `ssh -L 8765:127.0.0.1:8765`).
    pub page_url: Option<Url>,
    /// What Element Call may do on the account. `None`:
    /// [`CapabilityPolicy::element_call`] for the client's user and device.
    pub policy: Option<CapabilityPolicy>,
    /// Join without Element Call's lobby (where the camera and microphone can be checked first);
    /// `true` by default: whoever opens the page is in the call.
    pub skip_lobby: bool,
    /// Allow an `http` Element Call that is not on this machine.
    pub allow_insecure: bool,
}

impl HostOptions {
    /// Options for Element Call at `element_call_url`, everything else by default.
    pub fn new(element_call_url: Url) -> Self {
        Self {
            element_call_url,
            widget_id: DEFAULT_WIDGET_ID.to_owned(),
            page_url: None,
            policy: None,
            skip_lobby: true,
            allow_insecure: false,
        }
    }

    /// Element Call's URL as loaded (with `index.html` for a directory), checked.
    pub(crate) fn element_call_page(&self) -> Result<Url, HostError> {
        let mut url = self.element_call_url.clone();
        let secure = match url.scheme() {
            "https" => true,
            "http" => self.allow_insecure || is_loopback(&url),
            _ => {
                return Err(HostError::Config(format!(
                    "Element Call's URL must be http(s), not `{}:`",
                    url.scheme()
                )));
            }
        };
        if !secure {
            return Err(HostError::Config(
                "Element Call's URL is plain http on another machine: use https (or allow insecure http)"
                    .into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(HostError::Config(
                "Element Call's URL must have no query or fragment: the host adds the widget's parameters"
                    .into(),
            ));
        }
        if url.path().ends_with('/') {
            url.set_path(&format!("{}index.html", url.path()));
        }
        Ok(url)
    }

    /// The host page's address (checked), and the port to listen on (0: any).
    pub(crate) fn page_address(&self) -> Result<(Url, u16), HostError> {
        let Some(url) = &self.page_url else {
            return Ok(("http://127.0.0.1/".parse().expect("a valid URL"), 0));
        };
        // The page is served on 127.0.0.1; `localhost` reaches it too.
        let served_here = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
            Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            _ => false,
        };
        if url.scheme() != "http" || !served_here {
            return Err(HostError::Config(format!(
                "the host page's URL must be http://127.0.0.1:<port>/ (or localhost): it is only served on this \
                 machine; {} is not",
                url.origin().ascii_serialization()
            )));
        }
        if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
            return Err(HostError::Config(
                "the host page's URL is an origin (http://127.0.0.1:<port>/): no path, query or fragment".into(),
            ));
        }
        let Some(port) = url.port() else {
            return Err(HostError::Config(
                "the host page's URL needs an explicit port (http://127.0.0.1:<port>/)".into(),
            ));
        };
        Ok((url.clone(), port))
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> HostOptions {
        HostOptions::new(url.parse().unwrap())
    }

    #[test]
    fn element_call_opens_its_room_page() {
        let page = |url| options(url).element_call_page().unwrap().to_string();
        assert_eq!(page("https://call.element.io"), "https://call.element.io/index.html");
        assert_eq!(page("https://example.org/ec/"), "https://example.org/ec/index.html");
        assert_eq!(page("http://127.0.0.1:8080/room"), "http://127.0.0.1:8080/room");
        assert_eq!(page("http://localhost:8080/"), "http://localhost:8080/index.html");
    }

    #[test]
    fn element_call_must_be_safe_to_load() {
        let err = |url| options(url).element_call_page().unwrap_err().to_string();
        assert!(err("http://call.example.org/").contains("plain http"));
        assert!(err("ftp://127.0.0.1/").contains("http(s)"));
        assert!(err("https://call.element.io/#?widgetId=x").contains("no query"));
        let mut insecure = options("http://call.example.org/");
        insecure.allow_insecure = true;
        assert!(insecure.element_call_page().is_ok());
    }

    #[test]
    fn the_page_is_served_on_this_machine_only() {
        let mut o = options("https://call.element.io");
        assert_eq!(o.page_address().unwrap().1, 0);
        o.page_url = Some("http://127.0.0.1:8765/".parse().unwrap());
        assert_eq!(o.page_address().unwrap().1, 8765);
        o.page_url = Some("http://localhost:8765".parse().unwrap());
        assert_eq!(o.page_address().unwrap().1, 8765);
        for bad in [
            "https://127.0.0.1:8765/",
            "http://192.168.1.2:8765/",
            "http://127.0.0.1/",
            "http://127.0.0.1:1/x",
        ] {
            o.page_url = Some(bad.parse().unwrap());
            assert!(o.page_address().is_err(), "{bad}");
        }
    }
}
