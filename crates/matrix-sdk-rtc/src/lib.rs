//! MatrixRTC calls on matrix-sdk, as Element Call sees them.
//!
//! * [`membership`]: every membership dialect (per-device state events, the old memberships
//!   array, sticky `rtc.member` events) parsed into one model, and a serializer per dialect;
//! * [`CallSession`]: who is in a room's call, its foci and expiry (sans-IO), and
//!   [`RoomCallObserver`], which keeps one up to date from a [`matrix_sdk::Room`];
//! * [`OwnMembership`]: our own membership with a delayed leave (MSC4140) restarted every few
//!   seconds, so that a crash leaves no ghost in the call;
//! * [`discover_transports`] / [`livekit_service_url`]: which authorization service the
//!   homeserver advertises;
//! * [`LiveKitRoomDriver`]: joins and leaves the call as it starts and ends ([`Presence`]) and
//!   keeps a [`LiveKitConnector`]'s connection up while we are in it.
//!
//! This crate knows nothing of LiveKit's wire protocol; `matrix-sdk-rtc-livekit` implements the
//! connector.

pub mod backoff;
pub mod call_session;
mod clock;
pub mod driver;
pub mod error;
mod http;
pub mod media_keys;
pub mod membership;
pub mod own_membership;
pub mod room_call;
pub mod transports;

pub use call_session::{CallMember, CallSession, CallState};
pub use driver::{
    ConnectRequest, DelegationFuture, DriverOptions, DriverStatus, LiveKitConnection,
    LiveKitConnector, LiveKitRoomDriver, Presence,
};
pub use error::RtcError;
pub use own_membership::{
    DelayedLeave, JoinOptions, MembershipStatus, MembershipTimings, OwnMembership, SendDialect,
};
pub use room_call::RoomCallObserver;
pub use transports::{
    DiscoveredTransports, TransportSource, discover_transports, livekit_service_url,
    select_livekit_service_url,
};
