//! Helpers shared by the service's outbound HTTP clients.

use url::Url;

use crate::server_name::ServerName;

/// The builder of the HTTP clients of outbound requests to homeservers: every request times out
/// after `timeout`, follows no redirect, and says who it is; with `accept_invalid_certs` TLS
/// certificates are not checked (tests only).
pub(crate) fn client_builder(
    timeout: std::time::Duration,
    accept_invalid_certs: bool,
) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(accept_invalid_certs)
        .user_agent(concat!("matrixrtc-auth/", env!("CARGO_PKG_VERSION")))
}

/// Reads at most `limit` bytes of `response`'s body: `Ok(None)` when it is longer.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// `https://{host}[:{port}]/` of a server name (its host has passed the server-name grammar;
/// the URL API writes it, brackets for IPv6 included).
pub(crate) fn https_url(server_name: &ServerName, port: Option<u16>) -> Option<Url> {
    let mut url = Url::parse("https://localhost/").ok()?;
    url.set_host(Some(&server_name.host_for_url())).ok()?;
    url.set_port(port).ok()?;
    Some(url)
}

/// `url` with a path that ends in `/`, so that joining a relative path keeps its last segment.
pub(crate) fn with_trailing_slash(mut url: Url) -> Url {
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push("");
    }
    url
}

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
