//! Element Call as a widget hosted by a Rust program, as Element X hosts it: matrix-sdk's widget
//! driver executes Element Call's requests on the program's Matrix account, and a local page
//! embeds Element Call and relays its widget API messages to the driver.
//!
//! ```text
//!  browser: host page (http://127.0.0.1:<port>/?secret=…)        this program
//!  ┌──────────────────────────────────────────────┐   WebSocket   ┌───────────────────────┐
//!  │ relay script ◀── postMessage ──▶ <iframe>     │ ◀──────────▶ │ session: Relay ──▶     │
//!  │ (checks source window and origin)  Element Call│  (secret,    │ WidgetDriver (matrix-  │
//!  └──────────────────────────────────────────────┘   origin)     │ sdk) ─▶ homeserver    │
//!                                                                 └───────────────────────┘
//! ```
//!
//! * [`ElementCallHost`] serves the page on 127.0.0.1 and runs one widget driver per page load;
//! * [`CapabilityPolicy`] decides what Element Call may do (its own call membership, delayed
//!   events, media keys over encrypted to-device, ...); everything else is refused;
//! * [`HostOptions`] says where Element Call is and where the page is served;
//! * [`relay`]: the sans-IO relay between a widget and the driver, for other transports.
//!
//! Element Call then does everything a call needs itself: membership with delayed leave, media
//! keys, LiveKit. When its page goes away without leaving, the host sends the delayed leave
//! Element Call scheduled, so the account does not stay in the call.

mod capabilities;
mod error;
mod host;
mod options;
mod page;
pub mod relay;
mod secret;
mod server;
mod session;
mod widget_url;

pub use capabilities::{CapabilityPolicy, Grant};
pub use error::HostError;
pub use host::{ElementCallHost, HostEvent, SessionEnd};
pub use options::{DEFAULT_WIDGET_ID, HostOptions};
