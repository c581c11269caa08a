//! What can go wrong when hosting Element Call.

/// An error of the widget host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The options do not make a usable host (the message says which and why).
    #[error("{0}")]
    Config(String),
    /// The host page's port could not be listened on.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address asked for.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The system's random number generator failed (no secret for the page).
    #[error("no random secret for the host page: {0}")]
    Random(String),
    /// Element Call's URL could not be made for the room.
    #[error("cannot make Element Call's widget URL: {0}")]
    WidgetUrl(String),
}
