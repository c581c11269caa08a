//! The HTTP service: routes, CORS, body limits, the token handlers, delegation of delayed leaves
//! and LiveKit's webhooks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tracing::Instrument as _;

use crate::access_token::{Claims, JOIN_TOKEN_VALIDITY, VideoGrant};
use crate::config::Config;
use crate::delegation::homeserver::DelayedEvents;
use crate::delegation::{Delegation, Delegations};
use crate::error::ApiError;
use crate::identity::{ROOM_CALL_SLOT, hashed_identity, legacy_identity, livekit_room_alias};
use crate::limits::{ClientKey, Limits, client_address};
use crate::openid::cache::{CacheKey, Source, VerificationCache};
use crate::openid::{OpenIdError, OpenIdVerifier};
use crate::outbound::HomeserverHttp;
use crate::request::{
    DelayedLeave, DelegateDelayedLeaveRequest, LegacySfuRequest, OpenIdToken, SfuRequest,
};
use crate::room_service::RoomServiceClient;
use crate::webhook;

/// The answer to a successful token request.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SfuResponse {
    /// The LiveKit WebSocket URL.
    pub url: String,
    /// The LiveKit access token.
    pub jwt: String,
}

/// Shared state of the handlers.
#[derive(Debug)]
struct AppState {
    config: Config,
    openid: OpenIdVerifier,
    rooms: RoomServiceClient,
    /// `None` when delegation is turned off.
    delegations: Option<Delegations>,
    limits: Limits,
    verified: VerificationCache,
}

/// Could not build the HTTP clients of the service.
#[derive(Debug, thiserror::Error)]
#[error("cannot initialise the HTTP client: {0}")]
#[non_exhaustive]
pub struct ServiceInitError(String);

/// Builds the service's router for `config`.
pub fn router(config: Config) -> Result<Router, ServiceInitError> {
    // One client (one connection pool) for every request to homeservers.
    let homeservers =
        HomeserverHttp::new(config.outbound_timeout, config.accept_invalid_certs, &config.outbound)
            .map_err(|e| ServiceInitError(e.to_string()))?;
    let openid = OpenIdVerifier::new(
        homeservers.clone(),
        config.outbound_timeout,
        config.federation_overrides.clone(),
    );
    let livekit_url =
        url::Url::parse(&config.livekit_url).map_err(|e| ServiceInitError(e.to_string()))?;
    let rooms = RoomServiceClient::new(
        &livekit_url,
        config.livekit_key.clone(),
        config.livekit_secret.clone(),
        config.outbound_timeout,
    )
    .map_err(|e| ServiceInitError(e.to_string()))?;
    let delegations = if config.delegation {
        let homeserver = DelayedEvents::new(homeservers, config.cs_api_url_overrides.clone());
        Some(Delegations::new(homeserver, rooms.clone(), config.sanity_check_interval))
    } else {
        None
    };
    let max_body = config.max_body_bytes;
    let delegation = delegations.is_some();
    let limits = Limits::new(&config.limits);
    let verified = VerificationCache::new(
        config.limits.verification_cache_ttl,
        crate::openid::cache::DEFAULT_CAPACITY,
    );
    let state = Arc::new(AppState { config, openid, rooms, delegations, limits, verified });

    // The routes that verify OpenID tokens, behind the per-client limit.
    let mut verifying = Router::new()
        .route("/sfu/get", post(sfu_get).fallback(method_not_allowed))
        .route("/get_token", post(get_token).fallback(method_not_allowed));
    if delegation {
        verifying = verifying.route(
            "/delegate_delayed_leave",
            post(delegate_delayed_leave).fallback(method_not_allowed),
        );
    }
    let verifying =
        verifying.route_layer(middleware::from_fn_with_state(Arc::clone(&state), limit_clients));
    Ok(Router::new()
        .merge(verifying)
        .route("/sfu_webhook", post(sfu_webhook).fallback(method_not_allowed))
        .route("/healthz", get(healthz).head(healthz).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(cors))
        .with_state(state))
}

/// CORS exactly as lk-jwt-service answers browsers: every response carries the headers and a
/// preflight `OPTIONS` gets `200` without reaching a handler.
async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token",
        ),
    );
    response
}

/// The per-client limit, before the request is read. Without the peer's address (a router served
/// without `ConnectInfo`) requests are not limited per client.
async fn limit_clients(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(peer) = peer {
        let trusted = &state.config.limits.trusted_proxies;
        let client = ClientKey::new(client_address(peer, request.headers(), trusted));
        if let Err(retry_after) = state.limits.client(client) {
            tracing::info!(%client, ?retry_after, path = request.uri().path(), "client over its rate limit");
            return ApiError::limit_exceeded(retry_after).into_response();
        }
    }
    next.run(request).await
}

async fn healthz() -> StatusCode {
    StatusCode::OK
}

async fn not_found() -> ApiError {
    ApiError::unrecognized()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

fn body_or_error(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else {
            ApiError::not_json()
        }
    })
}

async fn sfu_get(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<SfuResponse>, ApiError> {
    let request = LegacySfuRequest::parse(&body_or_error(body, state.config.max_body_bytes)?)?;
    let span = tracing::info_span!("sfu_get", room = %request.room, device = %request.device_id);
    async move {
        let user_id = state.verify(&request.openid_token, None).await?;
        let identity = legacy_identity(&user_id, &request.device_id);
        let alias = livekit_room_alias(&request.room, ROOM_CALL_SLOT);
        state
            .issue(&request.openid_token, &user_id, identity, alias, request.delayed_leave.as_ref())
            .await
    }
    .instrument(span)
    .await
}

async fn get_token(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<SfuResponse>, ApiError> {
    let request = SfuRequest::parse(&body_or_error(body, state.config.max_body_bytes)?)?;
    let span = tracing::info_span!(
        "get_token",
        room = %request.room_id,
        slot = %request.slot_id,
        device = %request.member.claimed_device_id,
    );
    async move {
        let user_id =
            state.verify(&request.openid_token, Some(&request.member.claimed_user_id)).await?;
        let identity =
            hashed_identity(&user_id, &request.member.claimed_device_id, &request.member.id);
        let alias = livekit_room_alias(&request.room_id, &request.slot_id);
        state
            .issue(&request.openid_token, &user_id, identity, alias, request.delayed_leave.as_ref())
            .await
    }
    .instrument(span)
    .await
}

async fn delegate_delayed_leave(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let request =
        DelegateDelayedLeaveRequest::parse(&body_or_error(body, state.config.max_body_bytes)?)?;
    let span = tracing::info_span!(
        "delegate_delayed_leave",
        room = %request.room_id,
        slot = %request.slot_id,
        device = %request.member.claimed_device_id,
    );
    async move {
        let user_id =
            state.verify(&request.openid_token, Some(&request.member.claimed_user_id)).await?;
        if !state.config.full_access.allows(&request.openid_token.matrix_server_name) {
            return Err(ApiError::forbidden(NOT_FULL_ACCESS));
        }
        let identity =
            hashed_identity(&user_id, &request.member.claimed_device_id, &request.member.id);
        let alias = livekit_room_alias(&request.room_id, &request.slot_id);
        let delegation = state
            .prepare_delegation(
                &request.openid_token,
                &user_id,
                &identity,
                &alias,
                &request.delayed_leave,
            )
            .await?;
        state.delegate(delegation)?;
        Ok(axum::Json(serde_json::json!({})))
    }
    .instrument(span)
    .await
}

/// LiveKit's webhooks: participants joining and leaving, for delegated delayed leaves.
async fn sfu_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let body = body_or_error(body, state.config.max_body_bytes)?;
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let config = &state.config;
    if let Err(error) = webhook::verify(
        authorization,
        &body,
        &config.livekit_key,
        &config.livekit_secret,
        SystemTime::now(),
    ) {
        tracing::warn!(%error, "LiveKit webhook refused");
        return Err(ApiError::unauthorized());
    }
    match webhook::parse(&body) {
        Ok(Some(event)) => {
            tracing::debug!(lk_room = %event.room, lk_identity = %event.identity, change = ?event.change, "LiveKit participant event");
            if let Some(delegations) = &state.delegations {
                delegations.participant_event(event);
            }
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%error, "LiveKit webhook not understood");
            return Err(ApiError::bad_json("Not a LiveKit webhook event"));
        }
    }
    Ok(axum::Json(serde_json::json!({})))
}

/// The answer to a delegation from a user whose homeserver has no full access.
const NOT_FULL_ACCESS: &str =
    "Delegation of delayed events is only supported for full access users";

impl AppState {
    /// Checks that a delegation can be taken over: the homeserver's client-server API is known.
    async fn prepare_delegation(
        &self,
        token: &OpenIdToken,
        user_id: &str,
        identity: &str,
        alias: &str,
        delayed_leave: &DelayedLeave,
    ) -> Result<Delegation, ApiError> {
        let Some(delegations) = &self.delegations else {
            return Err(ApiError::unrecognized());
        };
        let homeserver =
            delegations.homeserver().base_url(&token.matrix_server_name).await.map_err(|error| {
                tracing::warn!(server_name = %token.matrix_server_name, %error, "cannot find the homeserver's client-server API");
                ApiError::bad_json("Unable to resolve client-server API")
            })?;
        Ok(Delegation::new(
            alias,
            identity,
            user_id,
            delayed_leave.delay_id.clone(),
            Duration::from_millis(delayed_leave.delay_timeout_ms),
            homeserver,
        ))
    }

    fn delegate(&self, delegation: Delegation) -> Result<(), ApiError> {
        let Some(delegations) = &self.delegations else {
            return Err(ApiError::unrecognized());
        };
        delegations.delegate(delegation).map_err(|error| {
            tracing::error!(%error, "cannot take the delayed leave over");
            ApiError::unavailable("The service cannot take more delayed leaves now")
        })
    }

    /// Verifies the OpenID token and, when given, that it belongs to `claimed_user_id`: from the
    /// verification cache, else at the homeserver (under the per-homeserver limit and the cap on
    /// concurrent verifications).
    async fn verify(
        &self,
        token: &OpenIdToken,
        claimed_user_id: Option<&str>,
    ) -> Result<String, ApiError> {
        let (user_id, source) = self
            .verified
            .get_or_verify(CacheKey::new(token), || self.verify_at_homeserver(token))
            .await?;
        if source == Source::Cache {
            tracing::debug!(%user_id, "OpenID token verified before");
        }
        if let Some(claimed) = claimed_user_id.filter(|claimed| *claimed != user_id) {
            tracing::warn!(%user_id, claimed_user_id = %claimed, "claimed user id does not match the OpenID token");
            return Err(ApiError::unauthorized());
        }
        Ok(user_id)
    }

    async fn verify_at_homeserver(&self, token: &OpenIdToken) -> Result<String, ApiError> {
        let server_name = &token.matrix_server_name;
        if let Err(retry_after) = self.limits.homeserver(server_name) {
            tracing::info!(%server_name, ?retry_after, "homeserver over its verification rate limit");
            return Err(ApiError::limit_exceeded(retry_after));
        }
        let Ok(_slot) = self.limits.verification_slot().await else {
            tracing::warn!(%server_name, "too many OpenID verifications at once");
            return Err(ApiError::busy(Duration::from_secs(1)));
        };
        self.openid.verify(token).await.map_err(|error| {
            match &error {
                OpenIdError::Refused(_) => tracing::warn!(%server_name, %error, "OpenID verification refused by the outbound policy"),
                _ => tracing::warn!(%server_name, %error, "OpenID verification failed"),
            }
            match error {
                OpenIdError::Unreachable(_) | OpenIdError::HomeserverError(_) => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "M_UNKNOWN",
                    "The homeserver could not verify the OpenID token",
                ),
                OpenIdError::Timeout(_) => ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "M_UNKNOWN",
                    "The homeserver did not answer in time",
                ),
                // A refusal answers as any other failed verification: the client learns
                // nothing about the service's network.
                _ => ApiError::unauthorized(),
            }
        })
    }

    /// Creates the LiveKit room for full-access users and mints the join token.
    async fn issue(
        &self,
        token: &OpenIdToken,
        user_id: &str,
        identity: String,
        alias: String,
        delayed_leave: Option<&DelayedLeave>,
    ) -> Result<axum::Json<SfuResponse>, ApiError> {
        let full_access = self.config.full_access.allows(&token.matrix_server_name);
        let delegation = match delayed_leave {
            Some(_) if self.delegations.is_none() => {
                tracing::debug!("delegated delayed leave requested; delegation is off, ignored");
                None
            }
            // Element Call's legacy client asks again without the delay fields on this answer.
            Some(_) if !full_access => return Err(ApiError::bad_json(NOT_FULL_ACCESS)),
            Some(delayed_leave) => Some(
                self.prepare_delegation(token, user_id, &identity, &alias, delayed_leave).await?,
            ),
            None => None,
        };
        if full_access {
            match self.rooms.create_room(&alias).await {
                Ok(room) => tracing::debug!(room = %alias, sid = %room.sid, "LiveKit room ready"),
                Err(error) => {
                    tracing::error!(room = %alias, %error, "cannot create the LiveKit room");
                    return Err(ApiError::internal("Unable to create room on SFU"));
                }
            }
        }
        let jwt = Claims::new(
            self.config.livekit_key.clone(),
            identity.clone(),
            VideoGrant::participant(alias.clone()),
            SystemTime::now(),
            JOIN_TOKEN_VALIDITY,
        )
        .sign(&self.config.livekit_secret)
        .map_err(|error| {
            tracing::error!(%error, "cannot sign the LiveKit token");
            ApiError::internal("Unable to issue a token")
        })?;
        if let Some(delegation) = delegation {
            self.delegate(delegation)?;
        }
        tracing::info!(%user_id, lk_identity = %identity, lk_room = %alias, full_access, "issued LiveKit token");
        Ok(axum::Json(SfuResponse { url: self.config.livekit_url.clone(), jwt }))
    }
}
