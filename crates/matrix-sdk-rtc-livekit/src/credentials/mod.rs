//! LiveKit credentials: where the LiveKit server and a join token come from, fresh for every
//! connection.
//!
//! In the order the seed's program offers them:
//!
//! 1. an explicit `/sfu/get` URL ([`CredentialSource::SfuGet`]);
//! 2. a LiveKit server and a token minted elsewhere ([`CredentialSource::Static`]);
//! 3. the authorization service of our transport ([`CredentialSource::Transport`], found by
//!    transport discovery): `/sfu/get` for a state membership, `/get_token` for a sticky one,
//!    whose LiveKit identity the service derives from the membership id.
//!
//! Every request to a service carries a fresh OpenID token, as Element Call sends. The join
//! token never reaches a log line or an error message ([`Jwt`]).

mod jwt;
pub mod service;

use matrix_sdk::Client;
use matrix_sdk_rtc::DelayedLeave;
use url::Url;

pub use self::jwt::{Jwt, JwtClaims};
use self::service::{OpenIdToken, TokenEndpoint, request_token};
use crate::endpoint;
use crate::error::{Error, ErrorKind};

/// Where LiveKit credentials come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CredentialSource {
    /// The authorization service of our transport (the service URL the driver connects
    /// through and our membership advertises).
    Transport,
    /// This `/sfu/get` endpoint of an authorization service.
    SfuGet(Url),
    /// A LiveKit server and a join token minted elsewhere, used as they are for every
    /// connection (the token's identity and room must be what the call expects).
    Static {
        /// The LiveKit server.
        livekit_url: Url,
        /// The join token.
        token: Jwt,
    },
}

/// A LiveKit server and a join token for it.
#[derive(Clone)]
#[non_exhaustive]
pub struct Credentials {
    /// The LiveKit server (`wss://…`).
    pub livekit_url: Url,
    /// The join token.
    pub token: Jwt,
}

impl Credentials {
    /// Credentials from a server URL and a token, checked as [`endpoint::livekit_url`] checks.
    pub fn new(livekit_url: &str, token: Jwt, allow_insecure: bool) -> Result<Self, Error> {
        Ok(Self { livekit_url: endpoint::livekit_url(livekit_url, allow_insecure)?, token })
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("livekit_url", &endpoint::display(&self.livekit_url))
            .field("claims", &self.token.claims())
            .finish()
    }
}

/// Who asks, for which room, and through which service.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// The Matrix client (our user and device, the OpenID token, the HTTP client).
    pub client: &'a Client,
    /// The Matrix room.
    pub room_id: &'a str,
    /// The authorization service.
    pub service_url: &'a str,
    /// The sticky membership id, if we are a sticky member (then `/get_token`).
    pub member_id: Option<&'a str>,
    /// Allow plain `http://` and `ws://` to other machines.
    pub allow_insecure: bool,
}

/// Credentials for our own (publishing) connection from `source`.
pub async fn fetch(
    source: &CredentialSource,
    request: TokenRequest<'_>,
) -> Result<Credentials, Error> {
    match own_source(source, request)? {
        OwnSource::Static(credentials) => Ok(credentials),
        OwnSource::Service(url, kind) => ask(request, &url, &kind, None).await,
    }
}

/// Hands `delayed_leave` to the authorization service our own connection's credentials come
/// from (MSC4195 delegation, as Element Call does it): the token request again, with the delay
/// fields; the token is not used.
pub async fn delegate_delayed_leave(
    source: &CredentialSource,
    request: TokenRequest<'_>,
    delayed_leave: &DelayedLeave,
) -> Result<(), Error> {
    match own_source(source, request)? {
        OwnSource::Static(_) => Err(Error::NoService),
        OwnSource::Service(url, kind) => {
            ask(request, &url, &kind, Some(delayed_leave)).await.map(drop)
        }
    }
}

/// Where our own connection's credentials come from.
enum OwnSource {
    /// Minted elsewhere.
    Static(Credentials),
    /// This token endpoint of an authorization service.
    Service(Url, TokenEndpoint),
}

fn own_source(source: &CredentialSource, request: TokenRequest<'_>) -> Result<OwnSource, Error> {
    match source {
        CredentialSource::Static { livekit_url, token } => Ok(OwnSource::Static(Credentials {
            livekit_url: livekit_url.clone(),
            token: token.clone(),
        })),
        CredentialSource::SfuGet(url) => {
            let url = endpoint::http_url(url.as_str(), "an OpenID token", request.allow_insecure)?;
            Ok(OwnSource::Service(
                url,
                TokenEndpoint::SfuGet { device_id: device_id(request.client)? },
            ))
        }
        CredentialSource::Transport => {
            let service =
                endpoint::http_url(request.service_url, "an OpenID token", request.allow_insecure)?;
            let kind = match request.member_id {
                Some(member_id) => TokenEndpoint::GetToken {
                    user_id: user_id(request.client)?,
                    device_id: device_id(request.client)?,
                    member_id: member_id.to_owned(),
                },
                None => TokenEndpoint::SfuGet { device_id: device_id(request.client)? },
            };
            Ok(OwnSource::Service(endpoint::join(&service, kind.path()), kind))
        }
    }
}

/// Credentials for a subscribe-only connection to another member's SFU: `/get_token` first,
/// `/sfu/get` when the service does not have it, as Element Call asks remote services. Our
/// identity there does not matter (we publish nothing), so the membership id is ours when we
/// have one and a fresh one otherwise.
pub async fn fetch_for_subscribing(request: TokenRequest<'_>) -> Result<Credentials, Error> {
    let service =
        endpoint::http_url(request.service_url, "an OpenID token", request.allow_insecure)?;
    let get_token = TokenEndpoint::GetToken {
        user_id: user_id(request.client)?,
        device_id: device_id(request.client)?,
        member_id: request
            .member_id
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned),
    };
    match ask(request, &endpoint::join(&service, get_token.path()), &get_token, None).await {
        Err(Error::ServiceRefused { status: 404 | 405, .. }) => {
            tracing::debug!(service = %endpoint::display(&service), "no /get_token; asking /sfu/get");
            let sfu_get = TokenEndpoint::SfuGet { device_id: device_id(request.client)? };
            ask(request, &endpoint::join(&service, sfu_get.path()), &sfu_get, None).await
        }
        other => other,
    }
}

async fn ask(
    request: TokenRequest<'_>,
    url: &Url,
    kind: &TokenEndpoint,
    delayed_leave: Option<&DelayedLeave>,
) -> Result<Credentials, Error> {
    let openid = openid_token(request.client).await?;
    let http = request.client.http_client();
    let (livekit_url, token) =
        request_token(http, url, kind, request.room_id, &openid, delayed_leave).await?;
    let credentials =
        Credentials::new(&livekit_url, token, request.allow_insecure).map_err(|error| {
            match error.kind() {
                // Name the service that handed out the unusable URL.
                ErrorKind::Configuration => Error::BadServiceAnswer {
                    endpoint: endpoint::display(url),
                    reason: error.to_string(),
                },
                _ => error,
            }
        })?;
    tracing::debug!(
        endpoint = %endpoint::display(url),
        livekit = %endpoint::display(&credentials.livekit_url),
        identity = credentials.token.claims().and_then(|c| c.identity).as_deref().unwrap_or("?"),
        "LiveKit credentials issued"
    );
    Ok(credentials)
}

/// A fresh OpenID token of the client's user.
async fn openid_token(client: &Client) -> Result<OpenIdToken, Error> {
    let response = client
        .account()
        .request_openid_token()
        .await
        .map_err(|e| Error::OpenId(crate::error::error_chain(&e)))?;
    Ok(OpenIdToken {
        access_token: response.access_token,
        matrix_server_name: response.matrix_server_name.to_string(),
        expires_in: response.expires_in.as_secs(),
    })
}

fn user_id(client: &Client) -> Result<String, Error> {
    client.user_id().map(ToString::to_string).ok_or_else(not_logged_in)
}

fn device_id(client: &Client) -> Result<String, Error> {
    client.device_id().map(ToString::to_string).ok_or_else(not_logged_in)
}

fn not_logged_in() -> Error {
    Error::OpenId("the Matrix client is not logged in".into())
}
