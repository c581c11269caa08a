//! Errors, each saying what failed and where; [`Error::kind`] sorts them for the caller (a
//! program's exit code, whether retrying can help).

use livekit_str0m::{ConnectError, PublishError};

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Something is configured wrongly (a URL that is not what it should be, a service that
    /// is not there): retrying the same thing will not help.
    Configuration,
    /// Somebody refused who we are (the authorization service, the LiveKit server).
    Authentication,
    /// The network or a server failed in a way that may pass (unreachable, timeouts, TLS, 5xx).
    Network,
    /// Local media failed (a camera, an encoder).
    Media,
}

/// Failures of credentials, connections and media.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A URL cannot be used for what it is meant for.
    #[error("invalid {what} URL `{url}`: {reason}")]
    InvalidUrl {
        /// What the URL is for.
        what: &'static str,
        /// The URL, without query and credentials.
        url: String,
        /// Why.
        reason: String,
    },
    /// A secret would travel in clear text to another machine.
    #[error(
        "refusing to send {what} over plain {scheme}:// to {host}, which is not this machine: use https:// or wss://"
    )]
    InsecureUrl {
        /// What would be sent.
        what: &'static str,
        /// `http` or `ws`.
        scheme: String,
        /// The host.
        host: String,
    },
    /// The homeserver did not give us an OpenID token (the authorization service needs one).
    #[error("the homeserver did not issue an OpenID token: {0}")]
    OpenId(String),
    /// The authorization service answered with an error status.
    #[error(
        "the MatrixRTC authorization service refused {endpoint}: HTTP {status} {errcode}: {message}"
    )]
    ServiceRefused {
        /// The endpoint URL (`…/sfu/get`, `…/get_token`).
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The Matrix error code of the answer, if any.
        errcode: String,
        /// The service's message, shortened.
        message: String,
    },
    /// The authorization service could not be reached.
    #[error("cannot reach the MatrixRTC authorization service at {endpoint}: {reason}")]
    ServiceUnreachable {
        /// The endpoint URL.
        endpoint: String,
        /// What happened.
        reason: String,
    },
    /// TLS with the authorization service failed.
    #[error("TLS with the MatrixRTC authorization service at {endpoint} failed: {reason}")]
    ServiceTls {
        /// The endpoint URL.
        endpoint: String,
        /// What happened.
        reason: String,
    },
    /// The authorization service answered, but not with a LiveKit URL and token.
    #[error("{endpoint} did not answer with a LiveKit URL and token: {reason}")]
    BadServiceAnswer {
        /// The endpoint URL.
        endpoint: String,
        /// What is wrong with the answer.
        reason: String,
    },
    /// Static LiveKit credentials (a server and a token minted elsewhere) come from no
    /// authorization service, so there is none to hand the delayed leave to.
    #[error(
        "static LiveKit credentials have no authorization service to hand the delayed leave to"
    )]
    NoService,
    /// Connecting to the LiveKit server failed.
    #[error("LiveKit at {url}: {source}")]
    LiveKit {
        /// The LiveKit server (without the token).
        url: String,
        /// What failed.
        #[source]
        source: ConnectError,
    },
    /// The LiveKit server did not accept our track.
    #[error("publishing on LiveKit failed: {0}")]
    Publish(#[from] PublishError),
    /// A video source or codec failed.
    #[error("media: {0}")]
    Media(String),
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidUrl { .. }
            | Self::InsecureUrl { .. }
            | Self::BadServiceAnswer { .. }
            | Self::NoService => ErrorKind::Configuration,
            Self::OpenId(_) => ErrorKind::Authentication,
            Self::ServiceRefused { status: 401 | 403, .. } => ErrorKind::Authentication,
            Self::ServiceRefused { status: 429 | 500.., .. } => ErrorKind::Network,
            Self::ServiceRefused { .. } => ErrorKind::Configuration,
            Self::ServiceUnreachable { .. } | Self::ServiceTls { .. } => ErrorKind::Network,
            Self::LiveKit { source, .. } => match source {
                ConnectError::InvalidUrl(_) => ErrorKind::Configuration,
                ConnectError::Refused { status: 401 | 403, .. } => ErrorKind::Authentication,
                ConnectError::Refused { status: 429 | 500.., .. } => ErrorKind::Network,
                ConnectError::Refused { .. } => ErrorKind::Configuration,
                _ => ErrorKind::Network,
            },
            Self::Publish(_) => ErrorKind::Network,
            Self::Media(_) => ErrorKind::Media,
        }
    }

    /// Whether trying again later can help (network trouble), as opposed to a configuration
    /// or a refusal that stays until somebody changes something.
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Network
    }
}

/// An error and its causes on one line (`a: b: c`), each cause once.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let refused = |status| Error::ServiceRefused {
            endpoint: "https://a/sfu/get".into(),
            status,
            errcode: "M_X".into(),
            message: String::new(),
        };
        assert_eq!(refused(401).kind(), ErrorKind::Authentication);
        assert_eq!(refused(404).kind(), ErrorKind::Configuration);
        assert_eq!(refused(502).kind(), ErrorKind::Network);
        assert!(refused(503).is_transient());
        let livekit = |source| Error::LiveKit { url: "wss://lk".into(), source };
        assert_eq!(
            livekit(ConnectError::Refused { status: 404, message: String::new() }).kind(),
            ErrorKind::Configuration
        );
        assert_eq!(livekit(ConnectError::Tls("bad certificate".into())).kind(), ErrorKind::Network);
        assert_eq!(
            livekit(ConnectError::Refused { status: 401, message: String::new() }).kind(),
            ErrorKind::Authentication
        );
    }
}
