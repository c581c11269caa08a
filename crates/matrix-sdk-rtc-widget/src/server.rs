//! The host's HTTP server on this machine: the page (`/`) and its WebSocket (`/ws`).
//!
//! Both want the per-run secret in their query and the page's own `Host`; the WebSocket also
//! wants the page's own `Origin` (any web page in the same browser could otherwise open it and
//! speak for the account). One page at a time is in the call: a second one is told so (close
//! code 4409) and may try again once the first has ended.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::routing::get;
use futures_util::SinkExt as _;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode,
};

use crate::host::Shared;
use crate::page::{self, PageConfig};
use crate::secret::Secret;
use crate::session;
use crate::widget_url::element_call_url;

/// The largest message a page may send (Element Call's are a few KiB).
const MAX_MESSAGE: usize = 1 << 20;
/// Close code: another page is in the call.
pub(crate) const CLOSE_BUSY: u16 = 4409;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/ws", get(socket))
        .fallback(|| async { plain(StatusCode::NOT_FOUND, "not found") })
        .with_state(shared)
}

/// Why a request is refused (said in the response body, and logged without the query).
fn check(
    shared: &Shared,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(), Box<Response<Body>>> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if host != Some(shared.authority.as_str()) {
        tracing::warn!(host = ?host, "a request for the host page under another name was refused");
        return Err(Box::new(plain(
            StatusCode::MISDIRECTED_REQUEST,
            &format!("open the page as {}", shared.page_origin),
        )));
    }
    if !has_secret(&shared.secret, query) {
        tracing::warn!("a request for the host page without its secret was refused");
        return Err(Box::new(plain(
            StatusCode::FORBIDDEN,
            "this page needs the URL the program printed",
        )));
    }
    Ok(())
}

fn has_secret(secret: &Secret, query: Option<&str>) -> bool {
    let given = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "secret")
        .map(|(_, value)| value.into_owned());
    given.is_some_and(|given| secret.matches(&given))
}

async fn page(State(shared): State<Arc<Shared>>, request: Request) -> Response<Body> {
    if let Err(refusal) = check(&shared, request.headers(), request.uri().query()) {
        return *refusal;
    }
    let url = match element_call_url(&shared.room, &shared.widget_url).await {
        Ok(url) => url,
        Err(error) => {
            tracing::warn!(%error, "Element Call's URL could not be made");
            return plain(StatusCode::BAD_GATEWAY, &error.to_string());
        }
    };
    let element_call_origin = url.origin().ascii_serialization();
    let socket_path = format!("/ws?secret={}", shared.secret.expose());
    let config = PageConfig {
        element_call_url: url.as_str(),
        element_call_origin: &element_call_origin,
        socket_path: &socket_path,
        widget_id: &shared.widget_url.widget_id,
    };
    let nonce = match Secret::random() {
        Ok(nonce) => nonce,
        Err(error) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    };
    let socket_origin = shared.page_origin.replacen("http", "ws", 1);
    let policy =
        page::content_security_policy(nonce.expose(), &element_call_origin, &socket_origin);
    let mut response = Response::new(Body::from(page::render(&config, nonce.expose())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    secure_headers(headers);
    response
}

async fn socket(State(shared): State<Arc<Shared>>, mut request: Request) -> Response<Body> {
    if let Err(refusal) = check(&shared, request.headers(), request.uri().query()) {
        return *refusal;
    }
    let headers = request.headers();
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if origin != Some(shared.page_origin.as_str()) {
        tracing::warn!(origin = ?origin, "a WebSocket from another origin was refused");
        return plain(StatusCode::FORBIDDEN, "only the host page may open this WebSocket");
    }
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|u| u.to_str().ok())
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let version = headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| upgrade && version) else {
        return plain(StatusCode::BAD_REQUEST, "a WebSocket (version 13) is expected here");
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::warn!(%error, "the page's WebSocket upgrade failed");
                return;
            }
        };
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(MAX_MESSAGE);
        config.max_frame_size = Some(MAX_MESSAGE);
        let mut socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        match shared.slot.clone().try_acquire_owned() {
            Ok(permit) => session::run(socket, shared, permit).await,
            Err(_) => {
                tracing::info!("a second page was turned away: one page at a time is in the call");
                let frame = CloseFrame {
                    code: CloseCode::from(CLOSE_BUSY),
                    reason: "Another page is in the call as this account; close it first.".into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
            }
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("{text}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    secure_headers(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_read_from_the_query() {
        let secret = Secret::random().unwrap();
        let good = format!("a=1&secret={}", secret.expose());
        assert!(has_secret(&secret, Some(&good)));
        assert!(!has_secret(&secret, None));
        assert!(!has_secret(&secret, Some("secret=")));
        assert!(!has_secret(&secret, Some(&format!("secret={}x", secret.expose()))));
    }
}
