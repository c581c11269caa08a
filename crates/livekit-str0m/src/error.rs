//! Errors.

use livekit_protocol::DisconnectReason;

/// Why a connection to a LiveKit server could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server URL is not usable.
    #[error("invalid LiveKit URL: {0}")]
    InvalidUrl(String),
    /// The WebSocket could not be opened (refused, TLS, DNS, timeout).
    #[error("cannot reach the LiveKit server: {0}")]
    Unreachable(String),
    /// The TLS handshake failed (a certificate this machine does not trust, a name mismatch, or
    /// a plain-text server behind a `wss://` URL).
    #[error("TLS with the LiveKit server failed: {0}")]
    Tls(String),
    /// The server refused the WebSocket upgrade with an HTTP status (401: bad token, 404: room
    /// does not exist, ...). `message` is the server's text, shortened.
    #[error("the LiveKit server refused the connection with HTTP {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// What the server said.
        message: String,
    },
    /// The server did not send its join response in time.
    #[error("no join response within {0:?}")]
    JoinTimeout(std::time::Duration),
    /// The server answered the join with a leave.
    #[error("the server refused the join: {0:?}")]
    Left(DisconnectReason),
    /// The server spoke something that is not the LiveKit protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The session broke before media was up (a peer connection failed, the server asked for
    /// a new join, the signalling connection closed).
    #[error("the connection was lost before it was up: {0}")]
    LostBeforeConnected(String),
    /// The peer connections did not connect in time.
    #[error("media connection timed out after {0:?}")]
    MediaTimeout(std::time::Duration),
    /// Local sockets could not be opened.
    #[error("cannot open local sockets: {0}")]
    Io(String),
}

/// Why a room connection ended.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectCause {
    /// We disconnected.
    #[error("disconnected by the client")]
    ClientInitiated,
    /// The server ended the session (removed, room deleted, duplicate identity, ...).
    #[error("the server ended the session: {0:?}")]
    Server(DisconnectReason),
    /// The connection was lost and every reconnect attempt failed; the last error.
    #[error("connection lost and reconnecting failed: {0}")]
    ReconnectFailed(ConnectError),
}

/// Why publishing a track failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The room is no longer connected.
    #[error("the room is disconnected")]
    Disconnected,
    /// The server did not confirm the track in time.
    #[error("the server did not confirm the track within {0:?}")]
    Timeout(std::time::Duration),
    /// The server refused the track (permissions, unsupported type, ...).
    #[error("the server refused the track: {0}")]
    Refused(String),
}

/// Why a frame could not be written to a local track.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// The track was unpublished or the room disconnected.
    #[error("the track is closed")]
    Closed,
    /// The connection task is behind; the frame was dropped (real-time media does not queue).
    #[error("the connection is busy; frame dropped")]
    Busy,
}
