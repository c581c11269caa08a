//! Signalling: the WebSocket to the server's `/rtc` endpoint carrying `SignalRequest` and
//! `SignalResponse` protobufs.

pub(crate) mod candidate_init;
mod link;
pub(crate) mod url;

use std::time::Duration;

use futures_util::StreamExt as _;
use livekit_protocol::{SignalResponse, signal_response};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, trace};

use crate::error::ConnectError;
pub(crate) use link::SignalLink;
pub(crate) use url::{NO_SUCH_ROOM, SignalParams, redacted, redacted_str, signal_url};

/// How long opening the WebSocket may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to send its join response after the upgrade.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

type WebSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A signalling connection just opened, until its first message (the join or reconnect
/// response); then it becomes a [`SignalLink`].
pub(crate) struct SignalConnection {
    ws: WebSocket,
}

/// With the `native-tls` feature the WebSocket's TLS goes through the platform's library
/// (tokio-tungstenite picks it whenever it is built in); otherwise through rustls with the
/// Mozilla roots.
pub(crate) const TLS_BACKEND: &str =
    if cfg!(feature = "native-tls") { "native-tls" } else { "rustls" };

/// Buffers sized for LiveKit's signalling (messages of a few KiB, a join response of a big room
/// some hundred) rather than tungstenite's defaults (128 KiB each way per connection), and a
/// bound on what a server may make us hold for one message.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_SIGNAL_MESSAGE))
        .max_frame_size(Some(MAX_SIGNAL_MESSAGE))
}

/// The largest signalling message we accept (LiveKit limits what it reads from clients to
/// 2 MiB; what it sends is smaller than a client's offers in practice).
const MAX_SIGNAL_MESSAGE: usize = 8 << 20;

/// What arrived on the WebSocket.
// Moved once from the socket to the engine; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Incoming {
    /// A decoded message.
    Message(signal_response::Message),
    /// The connection ended (with a reason for logs).
    Closed(String),
}

impl SignalConnection {
    /// Opens the WebSocket. The token travels in the URL (`access_token`) and in the
    /// `Authorization` header, as the official clients do between them.
    pub(crate) async fn open(
        base: &str,
        token: &str,
        params: &SignalParams,
    ) -> Result<Self, ConnectError> {
        let url = signal_url(base, token, params)?;
        debug!(url = %redacted(&url), "opening signal connection");
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ConnectError::InvalidUrl(e.to_string()))?;
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ConnectError::InvalidUrl("the token is not a valid header value".into())
        })?;
        request.headers_mut().insert("Authorization", bearer);
        // Without TCP_NODELAY a request written right after another waits for the server's
        // delayed acknowledgement (~40 ms a publish, measured).
        let connect =
            tokio_tungstenite::connect_async_with_config(request, Some(ws_config()), true);
        let (ws, _) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Err(_) => {
                return Err(ConnectError::Unreachable(format!(
                    "no WebSocket within {CONNECT_TIMEOUT:?}"
                )));
            }
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let body =
                    response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                // LiveKit quotes a rejected token back ("invalid token: <jwt>"): never pass it on.
                // One line, whatever the body (an HTML error page spans many).
                let message: String = body
                    .replace(token, "[redacted]")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .chars()
                    .take(200)
                    .collect();
                return Err(ConnectError::Refused { status, message });
            }
            Ok(Err(tungstenite::Error::Tls(error))) => {
                return Err(ConnectError::Tls(format!(
                    "{} ({TLS_BACKEND})",
                    error.to_string().replace(token, "[redacted]")
                )));
            }
            Ok(Err(tungstenite::Error::Io(error)))
                if error.kind() == std::io::ErrorKind::InvalidData
                    || error.to_string().contains("certificate") =>
            {
                return Err(ConnectError::Tls(format!("{error} ({TLS_BACKEND})")));
            }
            Ok(Err(error)) => {
                return Err(ConnectError::Unreachable(
                    error.to_string().replace(token, "[redacted]"),
                ));
            }
            Ok(Ok(connected)) => connected,
        };
        Ok(Self { ws })
    }

    /// Whether the server is reached over loopback (it runs on this machine).
    pub(crate) fn peer_is_loopback(&self) -> bool {
        let stream = match self.ws.get_ref() {
            MaybeTlsStream::Plain(stream) => stream,
            #[cfg(not(feature = "native-tls"))]
            MaybeTlsStream::Rustls(tls) => tls.get_ref().0,
            #[cfg(feature = "native-tls")]
            MaybeTlsStream::NativeTls(tls) => tls.get_ref().get_ref().get_ref(),
            _ => return false,
        };
        stream.peer_addr().is_ok_and(|addr| addr.ip().is_loopback())
    }

    /// Waits for the join response (`join`), or a `reconnect` response for a resume.
    pub(crate) async fn first_message(&mut self) -> Result<signal_response::Message, ConnectError> {
        let first = async {
            loop {
                match self.recv().await {
                    Incoming::Message(signal_response::Message::Leave(leave)) => {
                        let reason = livekit_protocol::DisconnectReason::try_from(leave.reason)
                            .unwrap_or(livekit_protocol::DisconnectReason::UnknownReason);
                        return Err(ConnectError::Left(reason));
                    }
                    Incoming::Message(
                        m @ (signal_response::Message::Join(_)
                        | signal_response::Message::Reconnect(_)),
                    ) => return Ok(m),
                    Incoming::Message(other) => {
                        trace!(message = ?std::mem::discriminant(&other), "message before join ignored");
                    }
                    Incoming::Closed(reason) => {
                        return Err(ConnectError::Protocol(format!(
                            "closed before the join response: {reason}"
                        )));
                    }
                }
            }
        };
        tokio::time::timeout(JOIN_TIMEOUT, first)
            .await
            .map_err(|_| ConnectError::JoinTimeout(JOIN_TIMEOUT))?
    }

    /// The next message. Undecodable frames are skipped with a log line.
    pub(crate) async fn recv(&mut self) -> Incoming {
        loop {
            if let Some(incoming) = decode(self.ws.next().await) {
                return incoming;
            }
        }
    }

    /// Hands the connection over to its reader and writer.
    pub(crate) fn into_link(self) -> SignalLink {
        SignalLink::new(self.ws)
    }
}

/// What one WebSocket frame (or the end of the stream) says; `None` for frames to skip.
fn decode(frame: Option<Result<Message, tungstenite::Error>>) -> Option<Incoming> {
    let frame = match frame {
        None => return Some(Incoming::Closed("end of stream".into())),
        Some(Err(error)) => return Some(Incoming::Closed(error.to_string())),
        Some(Ok(frame)) => frame,
    };
    let bytes = match frame {
        Message::Binary(bytes) => bytes,
        Message::Close(close) => {
            return Some(Incoming::Closed(
                close.map_or("close frame".into(), |c| format!("close frame {}", c.code)),
            ));
        }
        Message::Text(_) => {
            debug!("text signal frame ignored (we asked for protobuf)");
            return None;
        }
        _ => return None,
    };
    match SignalResponse::decode(bytes.as_ref()) {
        Ok(SignalResponse { message: Some(message) }) => Some(Incoming::Message(message)),
        Ok(_) => {
            trace!("empty signal response");
            None
        }
        Err(error) => {
            debug!(%error, "undecodable signal response ignored");
            None
        }
    }
}
