//! The signalling URL: `http(s)`/`ws(s)` base → `ws(s)://…/rtc?access_token=…&…`.

use url::Url;

use crate::error::ConnectError;

/// The LiveKit protocol version we speak: dual peer connections, subscriber-primary, no packet
/// trailers (those come with 17).
pub(crate) const PROTOCOL_VERSION: i32 = 16;

/// Query parameters of one signalling connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct SignalParams {
    /// Subscribe to every published track automatically.
    pub(crate) auto_subscribe: bool,
    /// `Some(participant sid)` to resume that session instead of joining.
    pub(crate) resume_sid: Option<String>,
}

/// Builds the WebSocket URL of the dual peer-connection endpoint.
///
/// `base` may use `http`, `https`, `ws` or `wss`; a path is kept (the server may sit behind a
/// prefix) and `/rtc` appended to it. The token goes into `access_token` unless the base URL
/// already carries one.
pub(crate) fn signal_url(
    base: &str,
    token: &str,
    params: &SignalParams,
) -> Result<Url, ConnectError> {
    let mut url = Url::parse(base).map_err(|e| ConnectError::InvalidUrl(e.to_string()))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => return Err(ConnectError::InvalidUrl(format!("unsupported scheme `{other}`"))),
    };
    url.set_scheme(scheme).map_err(|()| ConnectError::InvalidUrl("cannot set scheme".into()))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConnectError::InvalidUrl("no host".into()));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    if !path.ends_with("/rtc") {
        url.set_path(&format!("{path}/rtc"));
    }
    let has_token = url.query_pairs().any(|(key, _)| key == "access_token");
    {
        let mut query = url.query_pairs_mut();
        if !has_token {
            query.append_pair("access_token", token);
        }
        query
            .append_pair("protocol", &PROTOCOL_VERSION.to_string())
            .append_pair("sdk", "rust")
            .append_pair("version", env!("CARGO_PKG_VERSION"))
            .append_pair("os", std::env::consts::OS)
            .append_pair("auto_subscribe", if params.auto_subscribe { "1" } else { "0" })
            .append_pair("adaptive_stream", "0");
        if let Some(sid) = &params.resume_sid {
            query.append_pair("reconnect", "1").append_pair("sid", sid);
        }
    }
    Ok(url)
}

/// The URL without its query, for logs (the query carries the token).
pub(crate) fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// A server URL as the application gave it, fit for logs: without query, fragment or user
/// information (any may carry a token); `[not a URL]` when it does not parse.
pub(crate) fn redacted_str(url: &str) -> String {
    Url::parse(url.trim()).map_or_else(|_| "[not a URL]".to_owned(), |url| redacted(&url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(url: &Url, key: &str) -> Vec<String> {
        url.query_pairs().filter(|(k, _)| k == key).map(|(_, v)| v.into_owned()).collect()
    }

    #[test]
    fn urls_in_logs_carry_no_token() {
        let shown = redacted_str("wss://user:pass@sfu.example.org/?access_token=SECRET#frag");
        assert_eq!(shown, "wss://sfu.example.org/");
        assert!(!redacted_str("ws://127.0.0.1:7880?access_token=SECRET").contains("SECRET"));
        assert_eq!(redacted_str("not a url SECRET"), "[not a URL]");
    }

    #[test]
    fn http_becomes_ws_and_rtc_is_appended() {
        let url = signal_url("http://127.0.0.1:7880", "tok", &SignalParams::default()).unwrap();
        assert_eq!(url.scheme(), "ws");
        assert_eq!(url.path(), "/rtc");
        assert_eq!(query(&url, "access_token"), ["tok"]);
        assert_eq!(query(&url, "protocol"), ["16"]);
        assert_eq!(query(&url, "auto_subscribe"), ["0"]);
        assert!(query(&url, "reconnect").is_empty());
    }

    #[test]
    fn https_with_prefix_keeps_the_prefix() {
        let url = signal_url("https://sfu.example.org/livekit/sfu/", "t", &SignalParams::default())
            .unwrap();
        assert_eq!(
            url.as_str().split('?').next().unwrap(),
            "wss://sfu.example.org/livekit/sfu/rtc"
        );
    }

    #[test]
    fn an_existing_rtc_path_and_token_are_kept() {
        let url =
            signal_url("wss://h/rtc?access_token=abc", "other", &SignalParams::default()).unwrap();
        assert_eq!(url.path(), "/rtc");
        assert_eq!(query(&url, "access_token"), ["abc"]);
    }

    #[test]
    fn resume_adds_reconnect_and_sid() {
        let params = SignalParams { auto_subscribe: true, resume_sid: Some("PA_x".into()) };
        let url = signal_url("ws://h:1", "t", &params).unwrap();
        assert_eq!(query(&url, "reconnect"), ["1"]);
        assert_eq!(query(&url, "sid"), ["PA_x"]);
        assert_eq!(query(&url, "auto_subscribe"), ["1"]);
    }

    #[test]
    fn bad_urls_are_errors() {
        for bad in ["ftp://h", "not a url", "http://"] {
            assert!(signal_url(bad, "t", &SignalParams::default()).is_err(), "{bad}");
        }
    }

    #[test]
    fn redaction_drops_the_query() {
        let url = signal_url("ws://h:1", "secret-token", &SignalParams::default()).unwrap();
        assert!(!redacted(&url).contains("secret-token"));
    }
}
