//! Plain JSON requests to the homeserver for endpoints that ruma cannot parse as servers answer
//! them (Synapse's `{}` from `rtc/transports`, the delayed-events listing, sticky events).
//!
//! They go through the Matrix client's own HTTP client: one connection pool per process, and
//! the TLS stack the application chose for it. URLs are built with the `url` API, so every path
//! segment (room ids, transaction ids) and query value is percent-encoded.

use std::time::Duration;

use serde_json::Value;
use url::Url;

use crate::error::RtcError;

const TIMEOUT: Duration = Duration::from_secs(10);

/// `base` with `segments` appended as path segments (each percent-encoded: a `/`, `?` or `#`
/// in a room id stays inside its segment) and `query` appended as query pairs.
///
/// A base with a path (`https://example.org/matrix/`) keeps it. Fails only for a base that
/// cannot have a path (`mailto:…`).
pub(crate) fn endpoint(
    base: &Url,
    segments: &[&str],
    query: &[(&str, &str)],
) -> Result<Url, RtcError> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| RtcError::Http("the homeserver URL cannot have a path".to_owned()))?
        .pop_if_empty()
        .extend(segments);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

/// `https://{server_name}/` for a server name as it appears in a user id (`host[:port]`).
pub(crate) fn server_name_url(server_name: &matrix_sdk::ruma::ServerName) -> Result<Url, RtcError> {
    let invalid = || RtcError::Http(format!("the server name {server_name} is not a URL host"));
    let mut url = Url::parse("https://localhost/").map_err(|_| invalid())?;
    url.set_host(Some(server_name.host())).map_err(|_| invalid())?;
    url.set_port(server_name.port()).map_err(|()| invalid())?;
    Ok(url)
}

/// `GET {homeserver}/{segments…}` with the client's access token; the JSON answer, or an error
/// naming the status.
pub(crate) async fn get_json(
    client: &matrix_sdk::Client,
    segments: &[&str],
) -> Result<Value, RtcError> {
    let url = endpoint(&client.homeserver(), segments, &[])?;
    let mut request = client.http_client().get(url).timeout(TIMEOUT);
    if let Some(token) = client.access_token() {
        request = request.bearer_auth(token);
    }
    send(request).await
}

/// `GET url` without authentication.
pub(crate) async fn get_public_json(
    client: &matrix_sdk::Client,
    url: &Url,
) -> Result<Value, RtcError> {
    send(client.http_client().get(url.clone()).timeout(TIMEOUT)).await
}

async fn send(request: reqwest::RequestBuilder) -> Result<Value, RtcError> {
    let response = request.send().await.map_err(|e| RtcError::Http(e.without_url().to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(RtcError::Status(status.as_u16()));
    }
    let bytes = response.bytes().await.map_err(|e| RtcError::Http(e.without_url().to_string()))?;
    if bytes.len() > 1024 * 1024 {
        return Err(RtcError::Http("answer larger than 1 MiB".to_owned()));
    }
    serde_json::from_slice(&bytes).map_err(|e| RtcError::Http(format!("answer is not JSON: {e}")))
}

/// `PUT url` (a homeserver endpoint, see [`endpoint`]) with a JSON body and the client's access
/// token, within `timeout`.
pub(crate) async fn put_json(
    client: &matrix_sdk::Client,
    url: Url,
    body: &Value,
    timeout: Duration,
) -> Result<Value, RtcError> {
    let mut request = client.http_client().put(url).timeout(timeout).json(body);
    if let Some(token) = client.access_token() {
        request = request.bearer_auth(token);
    }
    send(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_query_values_are_percent_encoded() {
        let base = Url::parse("https://hs.example.org").unwrap();
        // A room id with every character that would break out of its segment, and a space.
        let url = endpoint(
            &base,
            &["_matrix", "client", "v3", "rooms", "!a/b?c#d e%f:example.org", "send", "t"],
            &[("q", "1&x=2"), ("delay", "10")],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://hs.example.org/_matrix/client/v3/rooms/!a%2Fb%3Fc%23d%20e%25f:example.org/send/t?q=1%26x%3D2&delay=10"
        );
        // The segment reads back as the room id, and the query as the values.
        assert_eq!(url.path_segments().unwrap().nth(4), Some("!a%2Fb%3Fc%23d%20e%25f:example.org"));
        let room = url.path_segments().unwrap().nth(4).unwrap();
        assert_eq!(
            percent_decode(room),
            "!a/b?c#d e%f:example.org",
            "the segment decodes to the room id"
        );
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(query, [("q".into(), "1&x=2".into()), ("delay".into(), "10".into())]);
    }

    #[test]
    fn a_homeserver_path_prefix_is_kept_and_its_query_dropped() {
        for base in ["https://example.org/matrix", "https://example.org/matrix/"] {
            let base = Url::parse(base).unwrap();
            let url = endpoint(&base, &[".well-known", "matrix", "client"], &[]).unwrap();
            assert_eq!(url.as_str(), "https://example.org/matrix/.well-known/matrix/client");
        }
        let base = Url::parse("https://example.org/?x=1#f").unwrap();
        assert_eq!(endpoint(&base, &["a"], &[]).unwrap().as_str(), "https://example.org/a");
    }

    #[test]
    fn server_names_become_https_origins() {
        let cases = [
            ("example.org", "https://example.org/"),
            ("example.org:8448", "https://example.org:8448/"),
            ("1.2.3.4:80", "https://1.2.3.4:80/"),
            ("[::1]:8008", "https://[::1]:8008/"),
        ];
        for (name, expected) in cases {
            let name = <&matrix_sdk::ruma::ServerName>::try_from(name).unwrap();
            assert_eq!(server_name_url(name).unwrap().as_str(), expected);
        }
    }

    fn percent_decode(s: &str) -> String {
        url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned()
    }
}
