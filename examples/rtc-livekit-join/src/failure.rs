//! Why the program stops: one line that names the cause and what to do, and an exit code per
//! kind of failure.

use matrix_sdk::ruma::api::error::ErrorKind as ApiErrorKind;
use matrix_sdk::ruma::api::error::{Error as ApiError, ErrorBody};
use matrix_sdk::{ClientBuildError, HttpError};
use matrix_sdk_rtc::RtcError;
use matrix_sdk_rtc_livekit::livekit_str0m::ConnectError;
use matrix_sdk_rtc_livekit::{ErrorKind, error_chain as chain};

use crate::config::Config;

/// What kind of failure ended the program; each has its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// 1: a bug or something unforeseen.
    Internal = 1,
    /// 2: the configuration is wrong (also an unknown room, a homeserver without transport).
    Config = 2,
    /// 3: a password or a token was refused.
    Auth = 3,
    /// 4: a server could not be reached (network, TLS, timeouts).
    Network = 4,
    /// 5: the camera or the encoder failed.
    Media = 5,
}

/// The reason the program stops.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: Kind,
    pub(crate) message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The `errcode`-like name, status and message of a Matrix API error.
fn api_details(error: &ApiError) -> (u16, String, String) {
    let (errcode, message) = match &error.body {
        ErrorBody::Standard(body) => (body.kind.errcode().to_string(), body.message.clone()),
        ErrorBody::Json(json) => ("?".to_owned(), json.to_string()),
        ErrorBody::NotJson { .. } => ("?".to_owned(), "not a Matrix answer".to_owned()),
    };
    let message: String = message.chars().filter(|c| !c.is_control()).take(200).collect();
    (error.status_code.as_u16(), errcode, message)
}

/// Whether an error's text says TLS went wrong.
fn looks_like_tls(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["certificate", "tls", "handshake", "invalidcontenttype", "corruptmessage", "ssl"]
        .iter()
        .any(|word| lower.contains(word))
}

impl Failure {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self { kind: Kind::Config, message: message.into() }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self { kind: Kind::Internal, message: message.into() }
    }

    pub(crate) fn media(message: impl Into<String>) -> Self {
        Self { kind: Kind::Media, message: message.into() }
    }

    /// The homeserver could not be reached, or answered with an error, while doing `what`.
    pub(crate) fn from_http(config: &Config, what: &str, error: &HttpError) -> Self {
        let homeserver = config.homeserver_url.as_str();
        if let Some(api) = error.as_client_api_error() {
            let (status, errcode, message) = api_details(api);
            return Self {
                kind: if status >= 500 { Kind::Network } else { Kind::Internal },
                message: format!(
                    "{what}: the homeserver answered HTTP {status} {errcode}: {message}"
                ),
            };
        }
        let text = chain(error);
        if looks_like_tls(&text) {
            return Self {
                kind: Kind::Network,
                message: format!(
                    "{what}: TLS with the homeserver at {homeserver} failed ({text}); check that HOMESERVER_URL \
                     has the right scheme (https:// or http://) and that the server's certificate is trusted here ({})",
                    matrix_sdk_rtc_livekit::tls::BACKEND
                ),
            };
        }
        match error {
            HttpError::Reqwest(_) => Self {
                kind: Kind::Network,
                message: format!(
                    "{what}: cannot reach the homeserver at {homeserver} ({text}); check HOMESERVER_URL and that \
                     the server runs and is reachable from here"
                ),
            },
            _ => Self {
                kind: Kind::Network,
                message: format!(
                    "{what}: the homeserver at {homeserver} did not answer as a Matrix homeserver ({text}); check HOMESERVER_URL"
                ),
            },
        }
    }

    pub(crate) fn from_sdk(config: &Config, what: &str, error: &matrix_sdk::Error) -> Self {
        match error {
            matrix_sdk::Error::Http(http) => Self::from_http(config, what, http),
            other => Self::internal(format!("{what}: {}", chain(other))),
        }
    }

    pub(crate) fn from_client_build(config: &Config, error: &ClientBuildError) -> Self {
        match error {
            ClientBuildError::Http(http) => {
                Self::from_http(config, "connecting to the homeserver", http)
            }
            ClientBuildError::Url(e) => Self::config(format!("HOMESERVER_URL: {e}")),
            other => Self::config(format!(
                "cannot open the Matrix client or its store ({}); check MATRIX_STORE_DIR",
                chain(other)
            )),
        }
    }

    pub(crate) fn from_login(config: &Config, error: &matrix_sdk::Error) -> Self {
        match error.client_api_error_kind() {
            Some(ApiErrorKind::Forbidden) => Self {
                kind: Kind::Auth,
                message: format!(
                    "the homeserver refused the login of `{}`: wrong MATRIX_USERNAME or MATRIX_PASSWORD",
                    config.username
                ),
            },
            Some(ApiErrorKind::UserDeactivated) => Self {
                kind: Kind::Auth,
                message: format!("the account `{}` is deactivated", config.username),
            },
            Some(ApiErrorKind::LimitExceeded(_)) => Self {
                kind: Kind::Network,
                message: "the homeserver rate-limits logins; try again in a while".to_owned(),
            },
            _ => Self::from_sdk(config, "logging in", error),
        }
    }

    pub(crate) fn from_alias(config: &Config, error: &HttpError) -> Self {
        match error.client_api_error_kind() {
            Some(ApiErrorKind::NotFound) => Self::config(format!(
                "the room alias {} is unknown to the homeserver; check ROOM_ID (and VIA_SERVERS for an alias of another server)",
                config.room
            )),
            _ => Self::from_http(config, "resolving the room alias", error),
        }
    }

    pub(crate) fn from_join(config: &Config, error: &matrix_sdk::Error) -> Self {
        let Some(api) = error.as_client_api_error() else {
            return Self::from_sdk(config, "joining the room", error);
        };
        let (status, errcode, message) = api_details(api);
        match error.client_api_error_kind() {
            Some(ApiErrorKind::Forbidden | ApiErrorKind::NotFound | ApiErrorKind::Unknown)
            | None => Self::config(format!(
                "cannot join the room {} ({errcode}: {message}); check ROOM_ID, invite the bot or make the room \
                 public, and set VIA_SERVERS for a room of another server",
                config.room
            )),
            _ => Self {
                kind: if status >= 500 { Kind::Network } else { Kind::Config },
                message: format!(
                    "cannot join the room {}: HTTP {status} {errcode}: {message}",
                    config.room
                ),
            },
        }
    }

    /// A failure of the driver or the connector: why we could not get into the call's media.
    pub(crate) fn from_rtc(error: &RtcError) -> Self {
        let RtcError::Connector(inner) = error else {
            return match error {
                RtcError::MissingLiveKitTransport => Self::config(format!(
                    "{error}; or set LIVEKIT_SFU_GET_URL to an authorization service's /sfu/get URL"
                )),
                RtcError::Unsupported(what) => Self::config(format!(
                    "the homeserver does not support {what}; use MATRIXRTC_MEMBERSHIP=state"
                )),
                other => Self { kind: Kind::Network, message: chain(other) },
            };
        };
        let Some(error) = inner.downcast_ref::<matrix_sdk_rtc_livekit::Error>() else {
            return Self::internal(chain(inner.as_ref()));
        };
        use matrix_sdk_rtc_livekit::Error as E;
        let hint = match error {
            E::ServiceRefused { status: 401 | 403, .. } => {
                " (the service did not accept our OpenID token: it must reach the homeserver's federation \
                 or openid API, and the homeserver must be one it serves)"
            }
            E::ServiceRefused { status: 404 | 405, .. } => {
                " (no MatrixRTC authorization service answers there: check LIVEKIT_SFU_GET_URL, or the \
                 transport the homeserver advertises)"
            }
            E::ServiceUnreachable { .. } => {
                " (check the authorization service URL and that it runs)"
            }
            E::ServiceTls { .. } | E::LiveKit { source: ConnectError::Tls(_), .. } => {
                " (check the URL's scheme and that the server's certificate is trusted here)"
            }
            E::LiveKit { source: ConnectError::Refused { status: 404, .. }, .. } => {
                " (no LiveKit signal endpoint (/rtc) there, or the LiveKit room does not exist: the URL must be \
                 the LiveKit server's, as the authorization service hands it out, not the homeserver's or the \
                 authorization service's)"
            }
            E::LiveKit { source: ConnectError::Refused { status: 401 | 403, .. }, .. } => {
                " (LiveKit refused the token: check LIVEKIT_TOKEN, its expiry and its room)"
            }
            E::LiveKit { source: ConnectError::Unreachable(_), .. } => {
                " (check that the LiveKit server runs and is reachable from here)"
            }
            E::BadServiceAnswer { .. } => " (is that URL a MatrixRTC authorization service?)",
            _ => "",
        };
        let kind = match error.kind() {
            ErrorKind::Configuration => Kind::Config,
            ErrorKind::Authentication => Kind::Auth,
            ErrorKind::Network => Kind::Network,
            ErrorKind::Media => Kind::Media,
            _ => Kind::Internal,
        };
        Self { kind, message: format!("{error}{hint}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_errors_keep_their_kind_and_get_a_hint() {
        let error = RtcError::connector(matrix_sdk_rtc_livekit::Error::LiveKit {
            url: "ws://127.0.0.1:1".into(),
            source: ConnectError::Refused { status: 404, message: "404 page not found".into() },
        });
        let failure = Failure::from_rtc(&error);
        assert_eq!(failure.kind, Kind::Config);
        assert!(failure.message.contains("/rtc"), "{failure}");
        let failure = Failure::from_rtc(&RtcError::MissingLiveKitTransport);
        assert_eq!(failure.kind, Kind::Config);
        assert!(failure.message.contains("LIVEKIT_SFU_GET_URL"));
        assert!(looks_like_tls("received corrupt message of type InvalidContentType"));
        assert!(!looks_like_tls("connection refused"));
    }
}
