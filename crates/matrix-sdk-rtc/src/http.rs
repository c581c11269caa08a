//! Plain JSON requests to the homeserver for endpoints that ruma cannot parse as servers answer
//! them (Synapse's `{}` from `rtc/transports`, the delayed-events listing).

use std::time::Duration;

use serde_json::Value;

use crate::error::RtcError;

const TIMEOUT: Duration = Duration::from_secs(10);

fn http() -> Result<reqwest::Client, RtcError> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| RtcError::Http(e.to_string()))
}

/// `GET {homeserver}{path}` with the client's access token; the JSON answer, or an error naming
/// the status.
pub(crate) async fn get_json(client: &matrix_sdk::Client, path: &str) -> Result<Value, RtcError> {
    let url = format!("{}{}", client.homeserver().as_str().trim_end_matches('/'), path);
    let mut request = http()?.get(&url);
    if let Some(token) = client.access_token() {
        request = request.bearer_auth(token);
    }
    send(request).await
}

/// `GET url` without authentication.
pub(crate) async fn get_public_json(url: &str) -> Result<Value, RtcError> {
    send(http()?.get(url)).await
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
    let mut request = http()?.put(&url).timeout(timeout).json(body);
    if let Some(token) = client.access_token() {
        request = request.bearer_auth(token);
    }
    send(request).await
}

/// Percent-encodes a path segment.
pub(crate) fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>().replace('+', "%20")
}
