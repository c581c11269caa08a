//! Discovery of the homeserver's RTC transports: which authorization service (and so which
//! LiveKit SFU) this user publishes through.
//!
//! In the order Element Call and Element X use: `GET
//! /_matrix/client/unstable/org.matrix.msc4143/rtc/transports` (an answer without
//! `rtc_transports`, as Synapse gives when none is configured, counts as none), then
//! `org.matrix.msc4143.rtc_foci` in the client `.well-known` (at the homeserver URL, then at the
//! server name). An explicit override skips discovery.

use serde_json::Value;

use crate::error::RtcError;
use crate::http;
use crate::membership::Transport;

/// Where a transport list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportSource {
    /// Given by the caller.
    Override,
    /// `GET …/rtc/transports`.
    RtcTransportsEndpoint,
    /// `.well-known/matrix/client` `org.matrix.msc4143.rtc_foci`.
    WellKnown,
}

/// The homeserver's transports, and where they were found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveredTransports {
    /// The transports, in the server's order of preference.
    pub transports: Vec<Transport>,
    /// Where they came from.
    pub source: TransportSource,
}

/// Discovers the RTC transports of `client`'s homeserver; `override_url` (a LiveKit
/// authorization service URL) skips discovery. Fails with [`RtcError::MissingLiveKitTransport`]
/// when nothing is advertised.
pub async fn discover_transports(
    client: &matrix_sdk::Client,
    override_url: Option<&str>,
) -> Result<DiscoveredTransports, RtcError> {
    if let Some(url) = override_url {
        return Ok(DiscoveredTransports {
            transports: vec![Transport::livekit(url)],
            source: TransportSource::Override,
        });
    }
    match http::get_json(
        client,
        &["_matrix", "client", "unstable", "org.matrix.msc4143", "rtc", "transports"],
    )
    .await
    {
        Ok(answer) => {
            let transports = parse_list(answer.get("rtc_transports"));
            if !transports.is_empty() {
                return Ok(DiscoveredTransports {
                    transports,
                    source: TransportSource::RtcTransportsEndpoint,
                });
            }
            tracing::debug!("rtc/transports lists no transport");
        }
        Err(error) => tracing::debug!(%error, "rtc/transports unavailable"),
    }
    const WELL_KNOWN: [&str; 3] = [".well-known", "matrix", "client"];
    let mut well_known_urls = vec![http::endpoint(&client.homeserver(), &WELL_KNOWN, &[])];
    if let Some(user_id) = client.user_id() {
        well_known_urls.push(
            http::server_name_url(user_id.server_name())
                .and_then(|origin| http::endpoint(&origin, &WELL_KNOWN, &[])),
        );
    }
    for url in well_known_urls {
        let url = match url {
            Ok(url) => url,
            Err(error) => {
                tracing::debug!(%error, "no client well-known URL");
                continue;
            }
        };
        match http::get_public_json(client, &url).await {
            Ok(answer) => {
                let transports = parse_list(answer.get("org.matrix.msc4143.rtc_foci"));
                if !transports.is_empty() {
                    return Ok(DiscoveredTransports {
                        transports,
                        source: TransportSource::WellKnown,
                    });
                }
            }
            Err(error) => tracing::debug!(%url, %error, "no client well-known"),
        }
    }
    Err(RtcError::MissingLiveKitTransport)
}

fn parse_list(value: Option<&Value>) -> Vec<Transport> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    let kind = item.get("type")?.as_str()?;
                    let url = item.get("livekit_service_url").and_then(Value::as_str);
                    Some(Transport {
                        kind: kind.to_owned(),
                        livekit_service_url: url.map(str::to_owned),
                        livekit_alias: None,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The service URL of the first LiveKit transport, without a trailing slash (clients append
/// `/sfu/get` and compare URLs as strings).
///
/// ```
/// use matrix_sdk_rtc::membership::Transport;
/// use matrix_sdk_rtc::select_livekit_service_url;
/// let transports = [Transport::livekit("https://rtc.example.org/livekit/jwt/")];
/// assert_eq!(select_livekit_service_url(&transports).as_deref(), Some("https://rtc.example.org/livekit/jwt"));
/// ```
pub fn select_livekit_service_url(transports: &[Transport]) -> Option<String> {
    transports
        .iter()
        .find_map(Transport::livekit_service_url)
        .map(|url| url.trim_end_matches('/').to_owned())
}

/// The LiveKit authorization service URL the homeserver of `client` advertises.
pub async fn livekit_service_url(client: &matrix_sdk::Client) -> Result<String, RtcError> {
    let discovered = discover_transports(client, None).await?;
    select_livekit_service_url(&discovered.transports).ok_or(RtcError::MissingLiveKitTransport)
}
