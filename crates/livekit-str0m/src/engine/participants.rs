//! Remote participants as `ParticipantUpdate`s describe them, and what changed with each update.

use std::collections::HashMap;

use livekit_protocol::{ParticipantInfo, participant_info};

use crate::track::RemoteTrackInfo;

/// A change the application hears about.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ParticipantChange {
    /// Someone joined (or was there when we joined).
    Connected(ParticipantSummary),
    /// Someone left.
    Disconnected(ParticipantSummary),
    /// A remote track appeared.
    TrackPublished(RemoteTrackInfo),
    /// A remote track went away.
    TrackUnpublished(RemoteTrackInfo),
    /// A remote track's mute state changed.
    TrackMuted(RemoteTrackInfo),
    /// Speaking levels changed (only the participants whose level changed).
    Speakers(Vec<Speaker>),
}

/// A participant's speaking level.
#[derive(Debug, Clone, PartialEq)]
pub struct Speaker {
    /// The participant sid.
    pub sid: String,
    /// Their identity, when known.
    pub identity: Option<String>,
    /// Audio level, 0.0 (silent) to 1.0.
    pub level: f32,
    /// Whether they count as speaking.
    pub active: bool,
}

/// Who a participant is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantSummary {
    /// The participant sid (`PA_…`).
    pub sid: String,
    /// The identity from the access token.
    pub identity: String,
    /// The display name.
    pub name: String,
    /// The metadata string.
    pub metadata: String,
}

impl ParticipantSummary {
    fn of(info: &ParticipantInfo) -> Self {
        Self {
            sid: info.sid.clone(),
            identity: info.identity.clone(),
            name: info.name.clone(),
            metadata: info.metadata.clone(),
        }
    }
}

/// The remote participants of a session.
#[derive(Debug)]
pub(crate) struct Participants {
    own_sid: String,
    by_sid: HashMap<String, ParticipantInfo>,
}

impl Participants {
    pub(crate) fn new(own_sid: String) -> Self {
        Self { own_sid, by_sid: HashMap::new() }
    }

    /// Speaker updates with identities filled in (our own sid included).
    pub(crate) fn speakers(&self, speakers: Vec<livekit_protocol::SpeakerInfo>) -> Vec<Speaker> {
        speakers
            .into_iter()
            .filter(|s| !s.sid.is_empty())
            .map(|s| Speaker {
                identity: self.by_sid.get(&s.sid).map(|p| p.identity.clone()),
                level: if s.level.is_finite() { s.level.clamp(0.0, 1.0) } else { 0.0 },
                active: s.active,
                sid: s.sid,
            })
            .collect()
    }

    /// The published track with this sid.
    pub(crate) fn track(&self, track_sid: &str) -> Option<RemoteTrackInfo> {
        self.by_sid.values().find_map(|p| {
            p.tracks.iter().find(|t| t.sid == track_sid).map(|t| RemoteTrackInfo::from_proto(p, t))
        })
    }

    /// Applies infos (from a join response or a `ParticipantUpdate`) and lists what changed.
    /// Older versions of a known participant and our own info are ignored.
    pub(crate) fn update(&mut self, infos: Vec<ParticipantInfo>) -> Vec<ParticipantChange> {
        let mut changes = Vec::new();
        for info in infos {
            if info.sid.is_empty() || info.sid == self.own_sid {
                continue;
            }
            let gone = info.state == participant_info::State::Disconnected as i32;
            let previous = self.by_sid.get(&info.sid);
            if previous.is_some_and(|p| info.version != 0 && info.version < p.version) {
                continue;
            }
            let tracks = |p: &ParticipantInfo| {
                p.tracks.iter().map(|t| RemoteTrackInfo::from_proto(p, t)).collect::<Vec<_>>()
            };
            let before = previous.map(tracks).unwrap_or_default();
            let after = if gone { Vec::new() } else { tracks(&info) };
            if previous.is_none() && !gone {
                changes.push(ParticipantChange::Connected(ParticipantSummary::of(&info)));
            }
            for track in &before {
                if !after.iter().any(|t| t.track_sid == track.track_sid) {
                    changes.push(ParticipantChange::TrackUnpublished(track.clone()));
                }
            }
            for track in &after {
                match before.iter().find(|t| t.track_sid == track.track_sid) {
                    None => changes.push(ParticipantChange::TrackPublished(track.clone())),
                    Some(old) if old.muted != track.muted => {
                        changes.push(ParticipantChange::TrackMuted(track.clone()));
                    }
                    Some(_) => {}
                }
            }
            if gone {
                if let Some(previous) = self.by_sid.remove(&info.sid) {
                    changes
                        .push(ParticipantChange::Disconnected(ParticipantSummary::of(&previous)));
                }
            } else {
                self.by_sid.insert(info.sid.clone(), info);
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use livekit_protocol::TrackInfo;

    use super::*;

    fn info(
        sid: &str,
        version: u32,
        tracks: &[(&str, bool)],
        state: participant_info::State,
    ) -> ParticipantInfo {
        ParticipantInfo {
            sid: sid.into(),
            identity: format!("id-{sid}"),
            version,
            state: state as i32,
            tracks: tracks
                .iter()
                .map(|(t, muted)| TrackInfo {
                    sid: (*t).into(),
                    muted: *muted,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    use participant_info::State::{Active, Disconnected};

    #[test]
    fn join_publish_mute_unpublish_leave() {
        let mut p = Participants::new("PA_me".into());
        let c = p.update(vec![info("PA_a", 1, &[], Active), info("PA_me", 1, &[], Active)]);
        assert!(matches!(&c[..], [ParticipantChange::Connected(s)] if s.sid == "PA_a"));
        let c = p.update(vec![info("PA_a", 2, &[("TR_1", false)], Active)]);
        assert!(
            matches!(&c[..], [ParticipantChange::TrackPublished(t)] if t.track_sid == "TR_1" && t.participant_identity == "id-PA_a")
        );
        assert_eq!(p.track("TR_1").unwrap().participant_sid, "PA_a");
        let c = p.update(vec![info("PA_a", 3, &[("TR_1", true)], Active)]);
        assert!(matches!(&c[..], [ParticipantChange::TrackMuted(t)] if t.muted));
        let c = p.update(vec![info("PA_a", 4, &[], Active)]);
        assert!(matches!(&c[..], [ParticipantChange::TrackUnpublished(_)]));
        p.update(vec![info("PA_a", 5, &[("TR_2", false)], Active)]);
        let c = p.update(vec![info("PA_a", 6, &[("TR_2", false)], Disconnected)]);
        assert!(matches!(
            &c[..],
            [ParticipantChange::TrackUnpublished(_), ParticipantChange::Disconnected(_)]
        ));
        assert!(p.track("TR_2").is_none());
    }

    #[test]
    fn stale_versions_are_ignored() {
        let mut p = Participants::new("PA_me".into());
        p.update(vec![info("PA_a", 5, &[("TR_1", false)], Active)]);
        assert!(p.update(vec![info("PA_a", 4, &[], Active)]).is_empty());
        assert!(p.track("TR_1").is_some());
    }

    #[test]
    fn unknown_disconnected_participants_are_nothing() {
        let mut p = Participants::new("PA_me".into());
        assert!(p.update(vec![info("PA_x", 1, &[], Disconnected)]).is_empty());
        assert!(p.update(vec![info("", 1, &[], Active)]).is_empty());
    }
}
