//! Errors of the crate.

/// Errors of MatrixRTC operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtcError {
    /// The client has no user or device: log in first.
    #[error("the Matrix client is not logged in")]
    NotLoggedIn,
    /// The homeserver advertises no LiveKit transport, in either place clients look.
    #[error(
        "the homeserver advertises no LiveKit transport: neither GET /_matrix/client/unstable/org.matrix.msc4143/rtc/transports \
         (Synapse: experimental_features.msc4143_enabled and matrix_rtc.transports) nor org.matrix.msc4143.rtc_foci in \
         /.well-known/matrix/client (Synapse: extra_well_known_client_content) lists one; configure the server or pass \
         the authorization service URL explicitly"
    )]
    MissingLiveKitTransport,
    /// A request to the homeserver failed.
    #[error("request failed: {0}")]
    Http(String),
    /// The homeserver answered with an error status.
    #[error("the homeserver answered HTTP {0}")]
    Status(u16),
    /// A Matrix SDK operation failed.
    #[error(transparent)]
    Matrix(#[from] matrix_sdk::Error),
    /// The homeserver lacks a feature this operation needs.
    #[error("the homeserver does not support {0}")]
    Unsupported(&'static str),
    /// An operation did not finish in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The background task stopped.
    #[error("the background task stopped")]
    Stopped,
    /// The LiveKit connector failed.
    #[error("LiveKit connector: {0}")]
    Connector(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RtcError {
    /// Wraps a connector's error.
    pub fn connector(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Connector(error.into())
    }
}
