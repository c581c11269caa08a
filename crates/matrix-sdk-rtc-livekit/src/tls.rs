//! The TLS stack: rustls unless the `native-tls` feature chooses the platform's library. It
//! applies to the LiveKit WebSocket and to the HTTP client that [`http_client`] builds, which a
//! program hands to matrix-sdk (`ClientBuilder::http_client`) so that the homeserver, transport
//! discovery and the authorization service go through it too.

#[cfg(all(feature = "native-tls", feature = "rustls-tls"))]
compile_error!(
    "matrix-sdk-rtc-livekit: the features `native-tls` and `rustls-tls` exclude each other; \
     enable one of them (or neither, for rustls)"
);

use std::time::Duration;

/// The TLS stack in use: `native-tls` or `rustls`.
pub const BACKEND: &str = if cfg!(feature = "native-tls") { "native-tls" } else { "rustls" };

/// An HTTP client on the chosen TLS stack, with a connect timeout.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    #[cfg(feature = "native-tls")]
    let builder = builder.tls_backend_native();
    #[cfg(not(feature = "native-tls"))]
    let builder = builder.tls_backend_rustls();
    builder.build()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_chosen_stack_builds_a_client() {
        super::http_client().unwrap();
        assert_eq!(
            super::BACKEND,
            if cfg!(feature = "native-tls") { "native-tls" } else { "rustls" }
        );
    }
}
