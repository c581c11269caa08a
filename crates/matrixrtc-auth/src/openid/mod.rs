//! OpenID token verification against the homeserver that issued the token.
//!
//! The service asks `GET {federation base}/_matrix/federation/v1/openid/userinfo?access_token=…` on
//! the server named in the token and accepts the answer only if the returned user belongs to that
//! server. The federation base URL comes from, in order:
//!
//! 1. an explicit override (`server_name=base_url`), which is how loopback test stacks and
//!    private deployments are reached;
//! 2. the server name itself when it is an IP literal or carries a port (`https://host:port`,
//!    port 8448 by default);
//! 3. `https://{server_name}/.well-known/matrix/server` delegation (`m.server`);
//! 4. `https://{server_name}:8448`.
//!
//! (SRV records are not consulted; use an override for deployments that rely on them.)
//!
//! Every outbound request has a timeout, follows no redirect, goes only where the
//! [outbound policy](crate::outbound) allows (checked on each hop: the `.well-known` lookup, the
//! delegated server, the override) and reads at most [`MAX_RESPONSE_BYTES`] of the answer. The
//! access token is never logged: errors are built from `reqwest` errors with their URL removed.
//!
//! [`cache`] keeps successful verifications for a short while, so that a burst of requests from
//! one member costs its homeserver one request.

pub mod cache;

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use crate::http::{error_chain, read_limited, with_trailing_slash};
use crate::outbound::{HomeserverHttp, Refused, refusal};
use crate::request::OpenIdToken;
use crate::server_name::ServerName;

/// The most bytes read from a homeserver answer.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why an OpenID token could not be verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenIdError {
    /// `matrix_server_name` does not follow the Matrix server-name grammar.
    #[error("matrix_server_name is not a valid Matrix server name")]
    InvalidServerName,
    /// The homeserver refused the token (unknown or expired).
    #[error("the homeserver rejected the OpenID token (HTTP {0})")]
    Rejected(StatusCode),
    /// The homeserver answered with a server error or an unexpected status.
    #[error("the homeserver answered HTTP {0}")]
    HomeserverError(StatusCode),
    /// The homeserver could not be reached.
    #[error("the homeserver could not be reached: {0}")]
    Unreachable(String),
    /// The homeserver did not answer in time.
    #[error("the homeserver did not answer within {0:?}")]
    Timeout(Duration),
    /// The answer was not a userinfo object with a user id.
    #[error("the homeserver's answer is not a valid userinfo response")]
    InvalidResponse,
    /// The outbound policy refused the homeserver's address.
    #[error("{0}")]
    Refused(Refused),
    /// The homeserver vouched for a user of another server.
    #[error("the homeserver vouched for {user_id}, which is not a user of {server_name}")]
    ForeignUser {
        /// The user id returned.
        user_id: String,
        /// The server the token claimed to come from.
        server_name: String,
    },
}

/// Verifies OpenID tokens; cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenIdVerifier {
    http: HomeserverHttp,
    overrides: HashMap<String, Url>,
    timeout: Duration,
}

#[derive(Deserialize)]
struct UserInfo {
    sub: String,
}

#[derive(Deserialize)]
struct WellKnownServer {
    #[serde(rename = "m.server")]
    server: String,
}

impl OpenIdVerifier {
    /// A verifier sending its requests with `http` (whose timeout is `timeout`), with federation
    /// base URL overrides keyed by server name.
    pub fn new(http: HomeserverHttp, timeout: Duration, overrides: HashMap<String, Url>) -> Self {
        Self { http, overrides, timeout }
    }

    /// Verifies `token` and returns the Matrix user id it belongs to.
    pub async fn verify(&self, token: &OpenIdToken) -> Result<String, OpenIdError> {
        let server_name: ServerName =
            token.matrix_server_name.parse().map_err(|_| OpenIdError::InvalidServerName)?;
        let base = self.federation_base(&token.matrix_server_name, &server_name).await?;
        let url = userinfo_url(&base, token.access_token.expose())?;

        let request = self.http.get(url).map_err(OpenIdError::Refused)?;
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
        ) {
            return Err(OpenIdError::Rejected(status));
        }
        if !status.is_success() {
            return Err(OpenIdError::HomeserverError(status));
        }
        let body = self.read_limited(response).await?;
        let info: UserInfo =
            serde_json::from_slice(&body).map_err(|_| OpenIdError::InvalidResponse)?;
        match info.sub.strip_prefix('@').and_then(|rest| rest.split_once(':')) {
            Some((local, server)) if !local.is_empty() && server == token.matrix_server_name => {
                Ok(info.sub)
            }
            Some(_) => Err(OpenIdError::ForeignUser {
                user_id: info.sub,
                server_name: token.matrix_server_name.clone(),
            }),
            None => Err(OpenIdError::InvalidResponse),
        }
    }

    /// The base URL of the federation API of `server_name` (with a trailing slash).
    async fn federation_base(
        &self,
        raw: &str,
        server_name: &ServerName,
    ) -> Result<Url, OpenIdError> {
        if let Some(base) = self.overrides.get(raw) {
            return Ok(with_trailing_slash(base.clone()));
        }
        if server_name.is_ip_literal() || server_name.port().is_some() {
            return https_url(server_name, Some(server_name.port().unwrap_or(8448)));
        }
        if let Some(delegated) = self.well_known_delegation(server_name).await {
            return https_url(&delegated, Some(delegated.port().unwrap_or(8448)));
        }
        https_url(server_name, Some(8448))
    }

    async fn well_known_delegation(&self, server_name: &ServerName) -> Option<ServerName> {
        let url = well_known_url(server_name).ok()?;
        let request = match self.http.get(url) {
            Ok(request) => request,
            Err(refused) => {
                tracing::debug!(%server_name, %refused, "no .well-known/matrix/server");
                return None;
            }
        };
        let response = match request.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                tracing::debug!(%server_name, status = %r.status(), "no .well-known/matrix/server");
                return None;
            }
            Err(e) => {
                tracing::debug!(%server_name, error = %e.without_url(), "no .well-known/matrix/server");
                return None;
            }
        };
        let body = self.read_limited(response).await.ok()?;
        let delegated = serde_json::from_slice::<WellKnownServer>(&body).ok()?.server.parse().ok();
        if delegated.is_none() {
            tracing::debug!(%server_name, "invalid m.server in .well-known/matrix/server");
        }
        delegated
    }

    async fn read_limited(&self, response: reqwest::Response) -> Result<Vec<u8>, OpenIdError> {
        read_limited(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| self.transport_error(e))?
            .ok_or(OpenIdError::InvalidResponse)
    }

    fn transport_error(&self, error: reqwest::Error) -> OpenIdError {
        if let Some(refused) = refusal(&error) {
            OpenIdError::Refused(refused)
        } else if error.is_timeout() {
            OpenIdError::Timeout(self.timeout)
        } else {
            // The URL carries the access token: never let it into the message.
            OpenIdError::Unreachable(error_chain(&error.without_url()))
        }
    }
}

fn https_url(server_name: &ServerName, port: Option<u16>) -> Result<Url, OpenIdError> {
    crate::http::https_url(server_name, port).ok_or(OpenIdError::InvalidServerName)
}

/// `https://{host}/.well-known/matrix/server` (delegation is looked up on the default port).
fn well_known_url(server_name: &ServerName) -> Result<Url, OpenIdError> {
    https_url(server_name, None)?
        .join(".well-known/matrix/server")
        .map_err(|_| OpenIdError::InvalidServerName)
}

/// `{base}_matrix/federation/v1/openid/userinfo?access_token=…` (`base` ends in `/`).
fn userinfo_url(base: &Url, access_token: &str) -> Result<Url, OpenIdError> {
    let mut url = base
        .join("_matrix/federation/v1/openid/userinfo")
        .map_err(|_| OpenIdError::InvalidServerName)?;
    url.query_pairs_mut().append_pair("access_token", access_token);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(overrides: &[(&str, &str)]) -> OpenIdVerifier {
        let overrides =
            overrides.iter().map(|(k, v)| ((*k).to_owned(), Url::parse(v).unwrap())).collect();
        let outbound =
            crate::outbound::Outbound::new(crate::outbound::OutboundPolicy::public_only());
        let timeout = Duration::from_secs(1);
        let http = HomeserverHttp::new(timeout, false, &outbound).unwrap();
        OpenIdVerifier::new(http, timeout, overrides)
    }

    async fn base(v: &OpenIdVerifier, name: &str) -> String {
        v.federation_base(name, &name.parse().unwrap()).await.unwrap().to_string()
    }

    #[tokio::test]
    async fn resolves_overrides_ports_and_ip_literals_without_network() {
        let v = verifier(&[("localhost", "http://127.0.0.1:8008"), ("a.org", "http://x/prefix")]);
        assert_eq!(base(&v, "localhost").await, "http://127.0.0.1:8008/");
        assert_eq!(base(&v, "a.org").await, "http://x/prefix/");
        assert_eq!(base(&v, "example.org:1234").await, "https://example.org:1234/");
        assert_eq!(base(&v, "10.1.2.3").await, "https://10.1.2.3:8448/");
        assert_eq!(base(&v, "[::1]:99").await, "https://[::1]:99/");
    }

    #[test]
    fn well_known_urls_use_the_host_alone() {
        let url = |name: &str| well_known_url(&name.parse().unwrap()).unwrap().to_string();
        assert_eq!(url("Example.ORG"), "https://example.org/.well-known/matrix/server");
        assert_eq!(url("[::1]"), "https://[::1]/.well-known/matrix/server");
        assert_eq!(url("1.2.3.4"), "https://1.2.3.4/.well-known/matrix/server");
    }

    #[test]
    fn the_userinfo_url_escapes_the_access_token() {
        let base = with_trailing_slash(Url::parse("http://hs.example/prefix").unwrap());
        let url = userinfo_url(&base, "a&b=c d/e?").unwrap();
        assert_eq!(
            url.as_str(),
            "http://hs.example/prefix/_matrix/federation/v1/openid/userinfo?access_token=a%26b%3Dc+d%2Fe%3F"
        );
    }

    #[tokio::test]
    async fn refuses_hostile_server_names_before_any_request() {
        let v = verifier(&[]);
        for name in ["evil.org/x?", "a@b", "", "h:0x1"] {
            let token = OpenIdToken::new(crate::secret::Secret::new("t"), name);
            assert!(
                matches!(v.verify(&token).await, Err(OpenIdError::InvalidServerName)),
                "{name}"
            );
        }
    }
}
