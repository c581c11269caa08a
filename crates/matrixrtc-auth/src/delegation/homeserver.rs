//! The homeserver side of delegation: finding a homeserver's client-server API and restarting or
//! sending a delayed event there (MSC4140).
//!
//! The client-server API of a server name comes from an explicit override
//! (`LIVEKIT_CS_API_URL_OVERRIDES`), else from `https://{server_name}/.well-known/matrix/client`
//! (`m.homeserver.base_url`), cached for [`DISCOVERY_TTL`]. The URL a client suggests
//! (`delay_cs_api_url`) is never used: it would let anyone point the service at any address.
//!
//! Restart and send need no access token: the delay id is the capability. It is therefore as
//! secret as a token and never logged; request errors are logged without their URL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use super::job::HomeserverAnswer;
use crate::http::{error_chain, https_url, read_limited, with_trailing_slash};
use crate::outbound::HomeserverHttp;
use crate::secret::Secret;
use crate::server_name::ServerName;

/// How long a discovered client-server API URL is kept.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(4 * 3600);
/// The most bytes read from a homeserver's answer.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What to do with a delayed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayedEventAction {
    /// Start its timer over.
    Restart,
    /// Send it now.
    Send,
}

impl DelayedEventAction {
    fn path(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Send => "send",
        }
    }
}

/// The client-server API of a homeserver could not be found.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The server name is not a valid Matrix server name.
    #[error("not a valid Matrix server name")]
    InvalidServerName,
    /// `.well-known/matrix/client` could not be fetched or read.
    #[error("no usable .well-known/matrix/client: {0}")]
    Discovery(String),
}

#[derive(Deserialize)]
struct WellKnownClient {
    #[serde(rename = "m.homeserver")]
    homeserver: WellKnownHomeserver,
}

#[derive(Deserialize)]
struct WellKnownHomeserver {
    base_url: String,
}

#[derive(Deserialize)]
struct RateLimited {
    retry_after_ms: Option<u64>,
}

/// A client of homeservers' delayed-event API.
#[derive(Debug)]
pub struct DelayedEvents {
    http: HomeserverHttp,
    overrides: HashMap<String, Url>,
    discovered: Mutex<HashMap<String, (Url, Instant)>>,
}

impl DelayedEvents {
    /// A client sending its requests with `http`, with client-server API URL overrides keyed by
    /// server name.
    pub fn new(http: HomeserverHttp, overrides: HashMap<String, Url>) -> Self {
        Self { http, overrides, discovered: Mutex::new(HashMap::new()) }
    }

    /// The base URL (ending in `/`) of the client-server API of `server_name`.
    pub async fn base_url(&self, server_name: &str) -> Result<Url, ResolveError> {
        if let Some(base) = self.overrides.get(server_name) {
            return Ok(with_trailing_slash(base.clone()));
        }
        let parsed: ServerName =
            server_name.parse().map_err(|_| ResolveError::InvalidServerName)?;
        if let Some((url, at)) = self.cache().get(server_name)
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(url.clone());
        }
        let base = self.discover(&parsed).await?;
        let mut cache = self.cache();
        cache.retain(|_, (_, at)| at.elapsed() < DISCOVERY_TTL);
        cache.insert(server_name.to_owned(), (base.clone(), Instant::now()));
        Ok(base)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Url, Instant)>> {
        self.discovered.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn discover(&self, server_name: &ServerName) -> Result<Url, ResolveError> {
        let url = https_url(server_name, server_name.port())
            .and_then(|base| base.join(".well-known/matrix/client").ok())
            .ok_or(ResolveError::InvalidServerName)?;
        let failed = |reason: String| ResolveError::Discovery(reason);
        let request = self.http.get(url).map_err(|refused| failed(refused.to_string()))?;
        let response = request.send().await.map_err(|e| failed(error_chain(&e.without_url())))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let body = read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| failed(error_chain(&e.without_url())))?
            .ok_or_else(|| failed("the answer is too long".into()))?;
        let known: WellKnownClient =
            serde_json::from_slice(&body).map_err(|_| failed("not a client discovery".into()))?;
        let base = Url::parse(known.homeserver.base_url.trim())
            .map_err(|_| failed("m.homeserver.base_url is not a URL".into()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(failed("m.homeserver.base_url is not an http(s) URL".into()));
        }
        self.http
            .check_url(&base)
            .map_err(|refused| failed(format!("m.homeserver.base_url: {refused}")))?;
        Ok(with_trailing_slash(base))
    }

    /// Restarts or sends the delayed event `delay_id` on the homeserver at `base`.
    pub async fn act(
        &self,
        base: &Url,
        delay_id: &Secret,
        action: DelayedEventAction,
    ) -> HomeserverAnswer {
        let mut url = base.clone();
        match url.path_segments_mut() {
            Ok(mut segments) => {
                segments.pop_if_empty().extend([
                    "_matrix",
                    "client",
                    "unstable",
                    "org.matrix.msc4140",
                    "delayed_events",
                    delay_id.expose(),
                    action.path(),
                ]);
            }
            Err(()) => return HomeserverAnswer::RetryLater(None),
        }
        let request = match self.http.post(url) {
            Ok(request) => request,
            Err(refused) => {
                // m.homeserver.base_url named a refused address: nothing to retry.
                tracing::warn!(action = action.path(), %refused, "delayed event request refused");
                return HomeserverAnswer::NotFound;
            }
        };
        let response = match request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => {
                if let Some(refused) = crate::outbound::refusal(&error) {
                    // The base URL's name resolved to a refused address: nothing to retry.
                    tracing::warn!(action = action.path(), %refused, "delayed event request refused");
                    return HomeserverAnswer::NotFound;
                }
                tracing::warn!(
                    action = action.path(),
                    error = %error_chain(&error.without_url()),
                    "delayed event request failed"
                );
                return HomeserverAnswer::RetryLater(None);
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let answer = match status {
            s if s.is_success() => HomeserverAnswer::Done,
            StatusCode::NOT_FOUND => HomeserverAnswer::NotFound,
            StatusCode::TOO_MANY_REQUESTS => {
                let from_body = match read_limited(response, MAX_ANSWER_BYTES).await {
                    Ok(Some(body)) => serde_json::from_slice::<RateLimited>(&body)
                        .ok()
                        .and_then(|r| r.retry_after_ms)
                        .map(Duration::from_millis),
                    _ => None,
                };
                HomeserverAnswer::RetryLater(retry_after.or(from_body))
            }
            _ => HomeserverAnswer::RetryLater(None),
        };
        if !matches!(answer, HomeserverAnswer::Done) {
            tracing::debug!(action = action.path(), %status, "delayed event request answered");
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overrides_win_and_hostile_names_are_refused_before_any_request() {
        let overrides =
            [("localhost".to_owned(), Url::parse("http://127.0.0.1:8008/prefix").unwrap())].into();
        let outbound =
            crate::outbound::Outbound::new(crate::outbound::OutboundPolicy::public_only());
        let http = HomeserverHttp::new(Duration::from_secs(1), false, &outbound).unwrap();
        let client = DelayedEvents::new(http, overrides);
        assert_eq!(
            client.base_url("localhost").await.unwrap().as_str(),
            "http://127.0.0.1:8008/prefix/"
        );
        for name in ["evil.org/x?", "a@b", "", "h:0x1"] {
            assert!(
                matches!(client.base_url(name).await, Err(ResolveError::InvalidServerName)),
                "{name}"
            );
        }
    }
}
