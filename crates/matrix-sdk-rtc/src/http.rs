//! Plain JSON requests to the homeserver for endpoints that ruma cannot parse as servers answer
//! them (Synapse's `{}` from `rtc/transports`, the delayed-events listing).
//!
//! They go through the Matrix client's own HTTP client: one connection pool per process, and
//! the TLS stack the application chose for it.

use std::time::Duration;

use serde_json::Value;

use crate::error::RtcError;

const TIMEOUT: Duration = Duration::from_secs(10);

/// `GET {homeserver}{path}` with the client's access token; the JSON answer, or an error naming
/// the status.
pub(crate) async fn get_json(client: &matrix_sdk::Client, path: &str) -> Result<Value, RtcError> {
    let url = format!("{}{}", client.homeserver().as_str().trim_end_matches('/'), path);
    let mut request = client.http_client().get(&url).timeout(TIMEOUT);
    if let Some(token) = client.access_token() {
        request = request.bearer_auth(token);
    }
    send(request).await
}

/// `GET url` without authentication.
pub(crate) async fn get_public_json(
    client: &matrix_sdk::Client,
    url: &str,
) -> Result<Value, RtcError> {
    send(client.http_client().get(url).timeout(TIMEOUT)).await
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

/// `PUT {homeserver}{path}` with a JSON body and the client's access token, within `timeout`.
pub(crate) async fn put_json(
    client: &matrix_sdk::Client,
    path: &str,
    body: &Value,
    timeout: Duration,
) -> Result<Value, RtcError> {
    let url = format!("{}{}", client.homeserver().as_str().trim_end_matches('/'), path);
    let mut request = client.http_client().put(&url).timeout(timeout).json(body);
    if let Some(token) = client.access_token() {
        request = request.bearer_auth(token);
    }
    send(request).await
}

/// Percent-encodes a path segment.
pub(crate) fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>().replace('+', "%20")
}
