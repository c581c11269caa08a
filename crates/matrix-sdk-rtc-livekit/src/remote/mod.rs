//! Other members' media: their video decoded into pictures ([`RemoteVideo`]), their audio as
//! Opus packets or decoded into paced PCM ([`RemoteAudio`]). Each knows the call member behind
//! it.

mod audio;
mod video;

use livekit_str0m::RemoteTrackInfo;
use matrix_sdk_rtc::{CallMember, CallState};
use tokio::sync::watch;

pub use audio::{DecodedAudio, RemoteAudio, RemoteAudioStats};
pub(crate) use video::spawn_decoder;
pub use video::{RemoteVideo, RemoteVideoStats};

/// Where a remote track comes from: its metadata, its LiveKit server, and the call to find its
/// member in.
#[derive(Debug, Clone)]
pub(crate) struct TrackOrigin {
    pub(crate) info: RemoteTrackInfo,
    pub(crate) livekit_url: String,
    pub(crate) call: watch::Receiver<CallState>,
}

impl TrackOrigin {
    /// The call member behind the track, as the call is now.
    pub(crate) fn member(&self) -> Option<CallMember> {
        member_of(&self.call.borrow(), &self.info.participant_identity)
    }
}

/// The member whose LiveKit identity is `identity`.
pub(crate) fn member_of(state: &CallState, identity: &str) -> Option<CallMember> {
    state.members.iter().find(|m| m.livekit_identity() == identity).cloned()
}
