//! The signalling URL: `http(s)`/`ws(s)` base → `ws(s)://…/rtc?access_token=…&…` (two peer
//! connections, settings in the query) or `ws(s)://…/rtc/v1?access_token=…&join_request=…`
//! (one peer connection, settings in a protobuf `JoinRequest`).

use base64::Engine as _;
use livekit_protocol as proto;
use prost::Message as _;
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
    /// One peer connection for publishing and subscribing (`/rtc/v1`), instead of two (`/rtc`).
    pub(crate) single_pc: bool,
}

/// What a server without the single peer-connection endpoint says when asked for a room that
/// does not exist (a 404 that must not make us fall back to `/rtc`).
pub(crate) const NO_SUCH_ROOM: &str = "requested room does not exist";

/// Builds the WebSocket URL of the signalling endpoint.
///
/// `base` may use `http`, `https`, `ws` or `wss`; a path is kept (the server may sit behind a
/// prefix) and `/rtc` or `/rtc/v1` appended to it. The token goes into `access_token` unless
/// the base URL already carries one.
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
    let path = url.path().trim_end_matches('/');
    let prefix = path
        .strip_suffix("/rtc/v1")
        .or_else(|| path.strip_suffix("/rtc"))
        .unwrap_or(path)
        .to_owned();
    url.set_path(&prefix);
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| ConnectError::InvalidUrl("the URL cannot have a path".into()))?;
        segments.pop_if_empty().push("rtc");
        if params.single_pc {
            segments.push("v1");
        }
    }
    let has_token = url.query_pairs().any(|(key, _)| key == "access_token");
    {
        let mut query = url.query_pairs_mut();
        if !has_token {
            query.append_pair("access_token", token);
        }
        if params.single_pc {
            query.append_pair("join_request", &join_request(params));
            drop(query);
            return Ok(url);
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

/// The `join_request` parameter of `/rtc/v1`: a `WrappedJoinRequest` (uncompressed: ours is a
/// few dozen bytes) in URL-safe base64 with padding, as the server decodes it.
fn join_request(params: &SignalParams) -> String {
    let request = proto::JoinRequest {
        client_info: Some(proto::ClientInfo {
            sdk: proto::client_info::Sdk::Rust as i32,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol: PROTOCOL_VERSION,
            os: std::env::consts::OS.to_owned(),
            ..Default::default()
        }),
        // Explicit: without it the server does not subscribe automatically.
        connection_settings: Some(proto::ConnectionSettings {
            auto_subscribe: params.auto_subscribe,
            adaptive_stream: false,
            ..Default::default()
        }),
        reconnect: params.resume_sid.is_some(),
        participant_sid: params.resume_sid.clone().unwrap_or_default(),
        ..Default::default()
    };
    let wrapped = proto::WrappedJoinRequest {
        compression: proto::wrapped_join_request::Compression::None as i32,
        join_request: request.encode_to_vec(),
    };
    base64::engine::general_purpose::URL_SAFE.encode(wrapped.encode_to_vec())
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
        let params = SignalParams {
            auto_subscribe: true,
            resume_sid: Some("PA_x".into()),
            single_pc: false,
        };
        let url = signal_url("ws://h:1", "t", &params).unwrap();
        assert_eq!(query(&url, "reconnect"), ["1"]);
        assert_eq!(query(&url, "sid"), ["PA_x"]);
        assert_eq!(query(&url, "auto_subscribe"), ["1"]);
    }

    fn decoded_join_request(url: &Url) -> proto::JoinRequest {
        let encoded = query(url, "join_request");
        assert_eq!(encoded.len(), 1, "{url}");
        let bytes = base64::engine::general_purpose::URL_SAFE.decode(&encoded[0]).expect("base64");
        let wrapped = proto::WrappedJoinRequest::decode(bytes.as_slice()).expect("wrapped");
        assert_eq!(wrapped.compression, 0, "uncompressed");
        proto::JoinRequest::decode(wrapped.join_request.as_slice()).expect("join request")
    }

    #[test]
    fn single_pc_goes_to_rtc_v1_with_a_join_request() {
        let params = SignalParams { auto_subscribe: true, resume_sid: None, single_pc: true };
        for base in ["http://h:7880", "ws://h:7880/", "ws://h:7880/rtc", "ws://h:7880/rtc/v1/"] {
            let url = signal_url(base, "tok", &params).unwrap();
            assert_eq!(url.path(), "/rtc/v1", "{base}");
            assert_eq!(query(&url, "access_token"), ["tok"]);
            assert!(query(&url, "protocol").is_empty(), "settings travel in the join request");
            let join = decoded_join_request(&url);
            assert!(join.connection_settings.expect("settings").auto_subscribe);
            let client = join.client_info.expect("client info");
            assert_eq!(client.protocol, PROTOCOL_VERSION);
            assert_eq!(client.sdk, proto::client_info::Sdk::Rust as i32);
            assert!(!join.reconnect);
        }
        let prefixed = signal_url("https://sfu.example.org/livekit/sfu/", "t", &params).unwrap();
        assert_eq!(prefixed.path(), "/livekit/sfu/rtc/v1");
    }

    #[test]
    fn a_single_pc_resume_names_the_participant_in_the_join_request() {
        let params = SignalParams {
            auto_subscribe: false,
            resume_sid: Some("PA_x".into()),
            single_pc: true,
        };
        let url = signal_url("wss://h", "t", &params).unwrap();
        let join = decoded_join_request(&url);
        assert!(join.reconnect);
        assert_eq!(join.participant_sid, "PA_x");
        assert!(!join.connection_settings.expect("settings").auto_subscribe);
        // The padding the server's decoder needs survives the query encoding.
        let raw = url.query().unwrap();
        assert!(raw.contains("join_request="), "{raw}");
    }

    #[test]
    fn a_dual_pc_url_on_a_v1_base_goes_back_to_rtc() {
        let url = signal_url("ws://h/rtc/v1", "t", &SignalParams::default()).unwrap();
        assert_eq!(url.path(), "/rtc");
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
